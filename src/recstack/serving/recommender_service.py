"""The request path: retrieve candidates → filter → order → explain → cache.

Candidates come from the champion's item embeddings through a Faiss index (`retrieval.ItemIndex`) or, for
a model without embeddings, from its own dense `score`. Filters are hard: an item the user has seen (in
training or in any stored event since), an unavailable item, another category than asked, or an item the
request excludes is never returned, even when fewer than k items remain. Without a champion, or for a user
nobody knows anything about, the answer is the catalogue's trending items (in the user's preferred
categories first when their preference document names some).

Items the champion cannot know (added since training) come in through their content (`new_items`); the
trending fill and top-k selection live in `picks`. A batch job's list for the champion's version, when the
cache holds one for the user, is served (through the same filters) instead of computing (`batch`).

The champion and the catalogue are immutable snapshots replaced by whole-reference assignment, so a request
that started on one champion finishes on it while a reload swaps in the next.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd
import scipy.sparse as sp

from recstack.errors import BackendUnavailable, ConfigurationError, NotFound
from recstack.models.base import Recommender
from recstack.processing.matrix import Vocabulary
from recstack.processing.online import OnlineState
from recstack.serving.batch import LoadedVersions, batch_key, choose, decode, model_label
from recstack.serving.data import Catalog, ChangeFeed, History, HistoryReader
from recstack.serving.feedback import FeedbackConfig, Signal, adjust_query, signals
from recstack.serving.impressions import ImpressionLog
from recstack.serving.metrics import Metrics
from recstack.serving.neighbours import ItemNeighbours
from recstack.serving.new_items import NewItems, Ranked
from recstack.serving.picks import Picked, top, with_trending
from recstack.serving.plans import FreshPlan, Plan, UserPlans, build_plans, liked_items, refresh_plans
from recstack.serving.retrieval import ItemIndex, RetrievalConfig
from recstack.storage import Store
from recstack.storage.cache import Cache, MemoryCache, invalidate_users

__all__ = ["Answer", "RecommendationService", "ServingModel"]

logger = logging.getLogger(__name__)

FALLBACK_HEADER: Final = "X-Recstack-Fallback"
MAX_REPLAN_QUEUE: Final = 10_000
MAX_FRESH_PLANS: Final = 200_000
# Requests look at the store's newest row at most this often: the lookup cost a fifth of a planned request,
# and an event reaches its user's answers within this bound, far inside the second the stream takes.
FEED_SYNC_S: Final = 0.005


@dataclass(frozen=True)
class ServingModel:
    """A champion ready to answer: the model, its vocabularies and, when it has embeddings, the index."""

    model: Recommender[Any]
    version: int | None
    kind: str
    users: Vocabulary
    items: Vocabulary
    item_ids: np.ndarray
    seen: sp.csr_matrix | None
    user_vectors: np.ndarray | None
    item_vectors: np.ndarray | None
    unit_items: np.ndarray | None
    index: ItemIndex | None
    user_pos: dict[str, int]
    item_pos: dict[str, int]
    # The item ids as str, by model index: a plan's candidates become ids without a numpy round trip.
    item_names: list[str]
    # Without embeddings: every item's neighbours, through which feedback signals shift the model's scores.
    neighbours: ItemNeighbours | None = None

    @classmethod
    def build(
        cls, model: Recommender[Any], version: int | None, retrieval: RetrievalConfig | None = None
    ) -> ServingModel:
        """Prepare `model` for serving: the Faiss index when the model has embeddings, else its item
        neighbours."""
        item_vectors = model.item_embeddings()
        user_vectors = model.user_embeddings()
        index = unit = None
        if item_vectors is not None and user_vectors is not None:
            item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
            user_vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
            unit = unit_vectors(item_vectors)
            index = ItemIndex(item_vectors, retrieval, queries=user_vectors)
        else:
            item_vectors = user_vectors = None
        neighbours = ItemNeighbours.of_model(model) if index is None else None
        return cls.assemble(model, version, user_vectors, item_vectors, unit, index, neighbours)

    @classmethod
    def assemble(
        cls, model: Recommender[Any], version: int | None, user_vectors: np.ndarray | None,
        item_vectors: np.ndarray | None, unit_items: np.ndarray | None, index: ItemIndex | None,
        neighbours: ItemNeighbours | None = None,
    ) -> ServingModel:
        """`model` with vectors and index prepared elsewhere (memory-mapped from the serving artefact)."""
        items = model.items
        names = [str(v) for v in items.ids.tolist()]
        return cls(
            model=model,
            version=version,
            kind=type(model).name or type(model).__name__,
            users=model.users,
            items=items,
            item_ids=items.ids,
            seen=model.seen_,
            user_vectors=user_vectors,
            item_vectors=item_vectors,
            unit_items=unit_items,
            index=index,
            user_pos={str(u): i for i, u in enumerate(model.users.ids.tolist())},
            item_pos={v: i for i, v in enumerate(names)},
            item_names=names,
            neighbours=neighbours,
        )

    def item_positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """Model indices of `item_ids`, dropping ids the model does not know."""
        lookup = self.item_pos
        found = [lookup.get(i, -1) for i in item_ids]
        return np.array([i for i in found if i >= 0], dtype=np.int64)

    @property
    def reason(self) -> str:
        """What an item is recommended for when the model's `explain` says nothing more: the model's own
        declaration (`Recommender.reason`)."""
        return self.model.reason


@dataclass(frozen=True)
class _Aligned:
    """Catalogue filter columns in the model's item order (-1 / True for items the catalogue lacks)."""

    model: ServingModel
    catalog: Catalog
    catalog_pos: np.ndarray
    category_code: np.ndarray
    available: np.ndarray
    unavailable_share: float
    # `available` as bytes: a request tests a few dozen items one at a time, where numpy's per-element
    # indexing costs more than the whole test.
    usable: bytes


@dataclass(frozen=True)
class Answer:
    """A response body (JSON bytes) and the headers that go with it."""

    body: bytes
    headers: dict[str, str]


class RecommendationService:
    """Answers recommendation and similar-item requests; holds the swappable champion and catalogue."""

    def __init__(
        self,
        store: Store,
        cache: Cache,
        metrics: Metrics,
        cache_ttl_s: float = 60.0,
        feedback: FeedbackConfig | None = None,
        retrieval: RetrievalConfig | None = None,
        history_limit: int = 500,
        plan_size: int = 32,
        online: OnlineState | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        # A process-local cache is not shared by the workers: its answers are keyed by the user's history.
        self.cache_shared = not isinstance(cache, MemoryCache)
        self.metrics = metrics
        self.cache_ttl_s = cache_ttl_s
        self.feedback = feedback or FeedbackConfig()
        self.retrieval = retrieval or RetrievalConfig()
        # Plans scan every user's stored history in one query; a request reads the online state, which the
        # stream keeps current for every worker.
        self.reader = HistoryReader(store, history_limit)
        self.online = online
        self.history: Callable[[str], History] = self._online_history if online is not None else self.reader
        # Versions of users' histories without reading them, where the history read is the store's own.
        self.feed = ChangeFeed.open(store) if online is None or online.url == "sql" else None
        self._feed_due = 0.0
        self._held: UserPlans | None = None
        self._ranked_for: tuple[UserPlans, object] | None = None
        self.online_ok = True
        self.plan_size = plan_size
        self.model: ServingModel | None = None
        self.plans: UserPlans | None = None
        # Plans refreshed in the background for users active since their plan was made (model user index →
        # plan), and the users waiting for one (id → index).
        self.fresh: dict[int, FreshPlan] = {}
        self._replan: dict[str, int] = {}
        self.catalog: Catalog | None = None
        self._aligned: _Aligned | None = None
        self.new_items = NewItems()
        self.cache_ok = True
        self.impressions: ImpressionLog | None = None
        self.batches = LoadedVersions()
        self._cache_hit, self._cache_miss = metrics.cache.labels("hit"), metrics.cache.labels("miss")
        self._answers = {source: metrics.answers.labels(source) for source in ("batch", "model", "trending")}

    # ---- snapshots --------------------------------------------------------------------------------

    def set_model(self, model: ServingModel | None, plans: UserPlans | None = None) -> None:
        """Serve `model` (with its user `plans`, when prepared). Plans are used only with the model they were
        built for, so a request that reads one reference before and one after this swap stays correct."""
        self.fresh = {}
        self._replan.clear()
        self._held = None
        feed = self.feed
        if plans is not None and feed is not None and plans.watermark >= 0:
            try:
                if feed.cover(plans.watermark):
                    self._held = plans
            except BackendUnavailable as exc:
                logger.warning("change feed unavailable, plans are checked against histories: %s", exc)
        self.plans = plans
        self.model = model
        self.metrics.set_model(model.kind if model else None, model.version if model else None)

    def refresh_plans(self, limit: int = 256) -> int:
        """Replan up to `limit` users whose plan no longer matched their history when they asked (the
        active ones), from their current history in the online state; their next request takes the fast
        path again. Runs on the background thread; returns how many were replanned."""
        model, plans, catalog = self.model, self.plans, self.catalog
        if not self._replan or model is None or plans is None or plans.model is not model or catalog is None:
            return 0
        feed = self.feed if self._held is plans else None
        if feed is not None:
            feed.sync()
        users: list[tuple[int, History, int]] = []
        while self._replan and len(users) < limit:
            user_id, uidx = self._replan.popitem()
            # The version before the history: a row stored in between makes the plan look older, never newer.
            version = feed.version(user_id) if feed is not None else -1
            users.append((uidx, self.history(user_id), version))
        fresh = refresh_plans(model, users, catalog, self.feedback, plans.size,
                              self._aligned_for(model, catalog).unavailable_share)
        if self.plans is plans:
            table = self.fresh
            while len(table) + len(fresh) > MAX_FRESH_PLANS:
                table.pop(next(iter(table)))
            table.update(fresh)
        return len(fresh)

    def rank_novel(self) -> bool:
        """Give the plans novel ranks for the current content index when they lack them (plans opened from
        an artefact, or a content index refitted since); runs on the background thread. True when done."""
        plans, content = self.plans, self.new_items.content
        if plans is None or content is None or plans.novel_content() is content or self._ranked_for == (plans, content):
            return False
        self._ranked_for = (plans, content)
        started = time.perf_counter()
        done = plans.attach_novel(self.new_items)
        logger.info("novel-item ranks for %d users in %.1f s", len(plans.planned), time.perf_counter() - started)
        return done

    def prepare(self, model: ServingModel) -> UserPlans | None:
        """Every known user's candidates for `model`, searched in batch (`plans`); run before the swap."""
        catalog = self.catalog
        if catalog is None or self.plan_size <= 0:
            return None
        share = _align(model, catalog).unavailable_share
        return build_plans(model, self.reader, catalog, self.feedback, self.plan_size, share, self.new_items)

    def set_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def _online_history(self, user_id: str) -> History:
        """The online state's history; the store's while it is unreachable (a stream batch is committed only
        once it is in both, and the store keeps it while Redis is down)."""
        assert self.online is not None
        try:
            history = self.online.history(user_id)
        except BackendUnavailable as exc:
            if self.online_ok:
                logger.warning("online state unavailable, reading history from the store: %s", exc)
            self.online_ok = False
            return self.reader(user_id)
        self.online_ok = True
        return history

    def apply_item(self, item_id: str, row: dict[str, Any]) -> None:
        """Take one item change into this worker's catalogue and content views (the store already has it, or
        is about to: the stream applies it there). `row` is the validated item record."""
        catalog = self.catalog
        available = bool(row.get("available", True))
        duration = row.get("duration_s")
        if catalog is not None:
            self.set_catalog(catalog.with_item(item_id, row.get("category"), available, duration))
        content = self.new_items.content
        if content is not None:
            text = {k: row.get(k) for k in ("title", "category", "tags", "description")}
            self.new_items.content = content.with_item(item_id, text)

    def _aligned_for(self, model: ServingModel, catalog: Catalog) -> _Aligned:
        aligned = self._aligned
        if aligned is not None and aligned.model is model and aligned.catalog is catalog:
            return aligned
        aligned = _align(model, catalog)
        self._aligned = aligned
        return aligned

    # ---- cache ------------------------------------------------------------------------------------

    def _cache_call(self, operation: Any, *args: Any) -> Any:
        try:
            result = operation(*args)
        except BackendUnavailable as exc:
            if self.cache_ok:
                logger.warning("result cache unavailable, answering uncached: %s", exc)
            self.cache_ok = False
            self.metrics.cache_up.set(0)
            self.metrics.cache.labels("error").inc()
            return None
        if not self.cache_ok:
            self.cache_ok = True
            self.metrics.cache_up.set(1)
        return result

    def _cache_get(self, key: str) -> bytes | None:
        value: bytes | None = self._cache_call(self.cache.get, key)
        return value

    def invalidate(self, user_ids: Iterable[str]) -> None:
        """Make every cached answer of these users unreachable (their epoch changes); the next request also
        looks at the store's newest row, so events this process stored count at once."""
        self._feed_due = 0.0
        self._cache_call(invalidate_users, self.cache, user_ids, self.cache_ttl_s)

    # ---- recommendations --------------------------------------------------------------------------

    def recommend(self, user_id: str, k: int, category: str | None, exclude: list[str]) -> Answer:
        model, catalog = self.model, self.catalog
        headers = {"X-Model-Version": str(model.version) if model and model.version is not None else "none"}
        if model is None:
            headers[FALLBACK_HEADER] = "popularity; no champion model"
        epoch = self._cache_call(self.cache.get, f"epoch:{user_id}")
        history: History | None = None
        version = self._version(user_id)
        if not self.cache_shared:
            # Each worker has its own memory cache, and an event taken by another worker cannot reach this
            # one's epochs: key the answer by the history it was computed from — its version in the change
            # feed, or else its fingerprint — which every worker reads from the same store, so any new
            # event makes a new key.
            if version >= 0:
                epoch = f"v{version:x}".encode() + (epoch or b"")
            else:
                history = self.history(user_id)
                epoch = f"h{history.fingerprint:x}".encode() + (epoch or b"")
        if epoch is not None or self.cache_ok:
            served = "none" if model is None else model_label(model.kind, model.version)
            # Hashed so that no user id or parameter value can make two requests share a key.
            request = orjson.dumps([user_id, k, category, sorted(exclude)])
            key = f"recs:{served}:{(epoch or b'0').decode()}:{hashlib.blake2b(request, digest_size=16).hexdigest()}"
            body = self._cache_call(self.cache.get, key)
            if body is not None:
                self._cache_hit.inc()
                if self.impressions is not None:
                    self.impressions.record(user_id, body, model.version if model else None)
                return Answer(body, {**headers, "X-Cache": "hit"})
            if self.cache_ok:
                self._cache_miss.inc()
        else:
            key = None
        body = self._compute(model, catalog, user_id, k, category, exclude, history, version)
        if key is not None:
            self._cache_call(self.cache.set, key, body, self.cache_ttl_s)
        if self.impressions is not None:
            self.impressions.record(user_id, body, model.version if model else None)
        return Answer(body, {**headers, "X-Cache": "miss"})

    def _version(self, user_id: str) -> int:
        """The user's history version in the change feed, brought up to the store's latest row first (an
        event another worker stored is seen); -1 without a feed or while the store cannot say."""
        feed = self.feed
        if feed is None:
            return -1
        now = time.monotonic()
        if now >= self._feed_due:
            try:
                feed.sync()
            except BackendUnavailable:
                return -1
            self._feed_due = now + FEED_SYNC_S
        return feed.version(user_id)

    def _compute(
        self, model: ServingModel | None, catalog: Catalog | None, user_id: str, k: int, category: str | None,
        exclude: list[str], history: History | None = None, version: int = -1,
    ) -> bytes:
        if catalog is None:
            raise BackendUnavailable("the catalogue is not loaded yet")
        source = "model"
        batched = self._batched(model, catalog, user_id, k, category, exclude, history) if model else None
        planned = None
        if batched is None and model is not None:
            planned = self._planned(model, catalog, user_id, k, category, exclude, history, version)
        ranked: Ranked | None = None
        liked: list[str] = []
        weights: list[float] | None = None
        if batched is not None:
            (picked, history), source = batched, "batch"
            seen = history.item_ids
            # The signals only shape the content mix: without content there is nothing to read them for.
            if self.new_items.content is not None:
                liked, weights = liked_items(signals(history, catalog, self.feedback), history)
        elif planned is not None:
            picked, plan, history = planned
            liked, weights, ranked = plan.liked, plan.weights, plan.novel
            # Without the history (the plan holds for it), the content mix can only return the items the
            # champion does not know: those of the history were kept with the plan.
            seen = history.item_ids if history is not None else plan.unknown
        else:
            if history is None:
                history = self.history(user_id)
            seen = history.item_ids
            taste = signals(history, catalog, self.feedback)
            from_model = None
            if model is not None:
                from_model = self._from_model(model, catalog, user_id, k, category, exclude, history, taste)
            if from_model is None:
                blocked = set(history.item_ids) | set(exclude)
                prefs = self._preferred_categories(user_id) if category is None else []
                from_model = with_trending(catalog, k, category, blocked, prefs, Picked([], [], []))
                source = "trending"
            picked = from_model
            liked, weights = liked_items(taste, history)
        picked = self.new_items.mix(
            model, model.item_pos if model else {}, catalog, picked, k, category, {*seen, *exclude},
            liked, weights, ranked,
        )
        payload = {
            "user_id": user_id,
            "model": model.kind if model else None,
            "model_version": model.version if model else None,
            "source": source,
            "items": [
                {"item_id": i, "score": round(s, 6), "reason": r}
                for i, s, r in zip(picked.item_ids, picked.scores, picked.reasons, strict=True)
            ],
        }
        self._answers[source].inc()
        return orjson.dumps(payload)

    def _preferred_categories(self, user_id: str) -> list[str]:
        doc = self.store.get_preferences(user_id) or {}
        raw = doc.get("categories", doc.get("preferred_categories", []))
        if isinstance(raw, str):
            raw = [raw]
        return [str(c) for c in raw] if isinstance(raw, list) else []

    def _batched(
        self, model: ServingModel, catalog: Catalog, user_id: str, k: int, category: str | None,
        exclude: list[str], history: History | None,
    ) -> tuple[Picked, History] | None:
        """Top-k from the batch job's list for this user and this champion version, through the live path's
        filters, with the reasons the model gives, and the history it was filtered by (read here when the
        caller had none); None when there is no list or fewer than k survive (the caller computes the
        answer)."""
        uidx = model.user_pos.get(user_id, -1)
        label = model_label(model.kind, model.version)
        if model.version is None or uidx < 0 or not self.batches.loaded(label, self._cache_get):
            return None
        body = self._cache_get(batch_key(label, user_id))
        answer = decode(body) if body is not None else None
        if answer is None:
            return None
        code = None
        if category is not None:
            code = catalog.codes.get(category)
            if code is None:
                return None
        if history is None:
            history = self.history(user_id)
        aligned = self._aligned_for(model, catalog)
        seen = None
        if model.seen is not None:
            seen = model.seen.indices[model.seen.indptr[uidx] : model.seen.indptr[uidx + 1]]
        chosen = choose(answer, k, {*history.item_ids, *exclude}, model.item_pos, aligned.available,
                        aligned.category_code, code, seen)
        if chosen is None:
            return None
        idx = np.asarray(chosen[0], dtype=np.int64)
        reasons = model.model.explain(uidx, idx) or [model.reason] * k
        return Picked([str(i) for i in model.item_ids[idx]], chosen[1], reasons), history

    def _planned(
        self, model: ServingModel, catalog: Catalog, user_id: str, k: int, category: str | None,
        exclude: list[str], history: History | None, version: int,
    ) -> tuple[Picked, Plan, History | None] | None:
        """Top-k from the user's plan, with the content-mix profile items and the history when it had to be
        read; None when no plan holds (the caller takes the live path, which would rank the same candidates
        the same way). With a change-feed `version` (>= 0) that says the history is the planned one, the
        history is not read at all."""
        plans = self.plans
        if plans is None or plans.model is not model or category is not None or k > plans.size:
            return None
        uidx = model.user_pos.get(user_id, -1)
        plan = None
        if version >= 0 and uidx >= 0 and self._held is plans:
            if version <= plans.watermark:
                plan = plans.held(uidx, catalog)
            else:
                fresh = self.fresh.get(uidx)
                if fresh is not None and fresh.version == version and fresh.catalog.duration_s is catalog.duration_s:
                    plan = fresh.plan
        if plan is None:
            if history is None:
                history = self.history(user_id)
            plan = plans.get(uidx, history, catalog)
            if plan is None and uidx >= 0:
                fresh = self.fresh.get(uidx)
                if (fresh is not None and fresh.fingerprint == history.fingerprint
                        and fresh.catalog.duration_s is catalog.duration_s):
                    plan = fresh.plan
                elif plans.planned[uidx] and len(self._replan) < MAX_REPLAN_QUEUE:
                    self._replan[user_id] = uidx
        if plan is None:
            return None
        usable, names = self._aligned_for(model, catalog).usable, model.item_names
        # The history items were left out when planning; a read history is checked again so the filter never
        # rests on a hash (the change feed's versions are exact).
        skip = {*history.item_ids, *exclude} if history is not None else set(exclude)
        positions: list[int] = []
        ids: list[str] = []
        scores: list[float] = []
        for position, score in zip(plan.candidates.tolist(), plan.scores.tolist(), strict=True):
            if position < 0:
                break
            if not usable[position] or names[position] in skip:
                continue
            positions.append(position)
            ids.append(names[position])
            scores.append(score)
            if len(ids) == k:
                break
        if len(ids) < k:
            return None
        explained = model.model.explain(uidx, np.asarray(positions, dtype=np.int64)) if uidx >= 0 else None
        return Picked(ids, scores, explained or [model.reason] * k), plan, history

    def _from_model(
        self, model: ServingModel, catalog: Catalog, user_id: str, k: int, category: str | None,
        exclude: list[str], history: History, taste: list[Signal],
    ) -> Picked | None:
        """Top-k from the champion, or None when it knows nothing of the user (the caller uses trending)."""
        aligned = self._aligned_for(model, catalog)
        uidx = model.user_pos.get(user_id, -1)
        allowed = aligned.available.copy()
        if category is not None:
            code = catalog.codes.get(category)
            if code is None:
                return Picked([], [], [])
            allowed &= aligned.category_code == code
        blocked = model.item_positions(dict.fromkeys([*history.item_ids, *exclude]))
        allowed[blocked] = False
        n_blocked = len(blocked)
        if uidx >= 0 and model.seen is not None:
            seen = model.seen.indices[model.seen.indptr[uidx] : model.seen.indptr[uidx + 1]]
            allowed[seen] = False
            n_blocked += len(seen)
        usable = [(model.item_pos[s.item_id], s.weight) for s in taste if s.item_id in model.item_pos]
        if model.index is not None:
            assert model.unit_items is not None and model.user_vectors is not None
            query = model.user_vectors[uidx] if uidx >= 0 else None
            query = adjust_query(
                query, model.unit_items, [i for i, _ in usable], [w for _, w in usable], self.feedback
            )
            if query is None:
                return None
            idx, scores = self._search(model, aligned, query, allowed, k, n_blocked, category is not None)
        else:
            if uidx < 0 and not any(w > 0 for _, w in usable):
                return None
            idx, scores = self._score(model, aligned, uidx, allowed, k, usable)
        reasons = (model.model.explain(uidx, idx) if uidx >= 0 else None) or [model.reason] * len(idx)
        picked = Picked([str(i) for i in model.item_ids[idx]], [float(s) for s in scores], reasons)
        if len(idx) < k:
            blocked_all = set(history.item_ids) | set(exclude) | set(picked.item_ids)
            if uidx >= 0 and model.seen is not None:
                row = model.seen.indices[model.seen.indptr[uidx] : model.seen.indptr[uidx + 1]]
                blocked_all |= set(model.item_ids[row].tolist())
            picked = with_trending(catalog, k, category, blocked_all, [], picked)
        return picked

    def _search(
        self, model: ServingModel, aligned: _Aligned, query: np.ndarray, allowed: np.ndarray, k: int,
        n_blocked: int, subset: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Faiss first, asking for enough extra items to survive the filters; exact over the allowed items
        when the filters are narrow (a category) or the index ran out before k survived."""
        assert model.index is not None and model.item_vectors is not None
        n_items = len(allowed)
        if not subset:
            share = min(aligned.unavailable_share, 0.9)
            want = int((k + n_blocked) / (1.0 - share)) + 10
            while want <= n_items // 4:
                idx, scores = model.index.search(query, want)
                keep = allowed[idx]
                if int(keep.sum()) >= k:
                    return idx[keep][:k], scores[keep][:k]
                want *= 4
        candidates = np.flatnonzero(allowed)
        if not len(candidates):
            return candidates, np.empty(0, dtype=np.float32)
        scores = model.item_vectors[candidates] @ query
        return top(candidates, scores, k)

    def _score(
        self, model: ServingModel, aligned: _Aligned, uidx: int, allowed: np.ndarray, k: int,
        usable: list[tuple[int, float]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dense scoring by the model itself; feedback shifts the scores of each signal's neighbours."""
        n_items = len(allowed)
        if uidx >= 0:
            scores = np.asarray(model.model.score(np.array([uidx])), dtype=np.float32)[0].copy()
        else:
            scores = np.zeros(n_items, dtype=np.float32)
        if model.neighbours is not None:
            model.neighbours.shift(scores, usable, self.feedback.strength)
        candidates = np.flatnonzero(allowed)
        if uidx < 0:
            candidates = candidates[scores[candidates] > 0]
        return top(candidates, scores[candidates], k)

    # ---- similar items ----------------------------------------------------------------------------

    def similar(self, item_id: str, k: int) -> Answer:
        model, catalog = self.model, self.catalog
        if catalog is None:
            raise BackendUnavailable("the catalogue is not loaded yet")
        headers = {"X-Model-Version": str(model.version) if model and model.version is not None else "none"}
        idx = model.item_pos.get(item_id, -1) if model is not None else -1
        if catalog.positions([item_id])[0] < 0 and idx < 0:
            raise NotFound(f"item_id '{item_id}' is not a known item")
        picked: Picked | None = None
        if model is not None and idx >= 0:
            aligned = self._aligned_for(model, catalog)
            allowed = aligned.available.copy()
            allowed[idx] = False
            if model.unit_items is not None:
                scores = model.unit_items @ model.unit_items[idx]
                top_idx, top_scores = top(np.flatnonzero(allowed), scores[allowed], k)
                picked = Picked(
                    [str(i) for i in model.item_ids[top_idx]], [float(s) for s in top_scores],
                    [model.reason] * len(top_idx),
                )
            else:
                picked = self._model_neighbours(model, item_id, allowed, k)
        if picked is None:
            picked = self.new_items.neighbours(catalog, item_id, k)
        else:
            known = model.item_pos if model else {}
            picked = self.new_items.mix(model, known, catalog, picked, k, None, {item_id}, [item_id], None)
        if picked is None:
            headers[FALLBACK_HEADER] = "popularity; " + ("no champion model" if model is None else "item unknown to it")
            pos = catalog.positions([item_id])[0]
            same = catalog.category[pos] if pos >= 0 else None
            picked = with_trending(catalog, k, same, {item_id}, [], Picked([], [], []))
        elif len(picked.item_ids) < k:
            picked = with_trending(catalog, k, None, {item_id}, [], picked)
        payload = {
            "item_id": item_id,
            "model": model.kind if model else None,
            "model_version": model.version if model else None,
            "items": [
                {"item_id": i, "score": round(s, 6), "reason": r}
                for i, s, r in zip(picked.item_ids, picked.scores, picked.reasons, strict=True)
            ],
        }
        return Answer(orjson.dumps(payload), headers)


    @staticmethod
    def _model_neighbours(model: ServingModel, item_id: str, allowed: np.ndarray, k: int) -> Picked | None:
        kept = model.neighbours.nearest(model.item_pos[item_id], allowed, k) if model.neighbours else None
        if kept is not None:
            return Picked([str(i) for i in model.item_ids[kept[0]]], kept[1].tolist(), [model.reason] * len(kept[0]))
        try:
            frame = model.model.similar_items(item_id, k=k + int((~allowed).sum()))
        except ConfigurationError:
            return None
        ids = model.items.index(frame["similar_item_id"].to_numpy(dtype=object))
        keep = allowed[ids]
        top_idx, top_scores = ids[keep][:k], frame["score"].to_numpy(np.float32)[keep][:k]
        return Picked(
            [str(i) for i in model.item_ids[top_idx]], [float(s) for s in top_scores], [model.reason] * len(top_idx)
        )


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): the item directions feedback moves a query along."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _align(model: ServingModel, catalog: Catalog) -> _Aligned:
    pos, code, available = catalog.attributes(model.item_ids, unknown_available=True)
    share = float(1.0 - available.mean()) if len(pos) else 0.0
    return _Aligned(model, catalog, pos, code, available, share, available.astype(bool).tobytes())


def frame_of(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Raw API records as a frame for the schema validators (one row per record, `_location` = index)."""
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame["_location"] = [f"record {i}" for i in range(len(records))]
    return frame
