"""Per-user plans: each known user's retrieval done in batch when a champion is prepared (as Gorse does).

For every user the champion knows, the preparation reads the user's stored history exactly as a request
reads it, builds the query a request would build from it (the user vector moved by the same feedback
signals), searches the index for all users at once and keeps the best `size` candidates that are neither
seen in training nor in that history, plus the liked items the content mix starts from. A champion without
embeddings (no index: `auto`'s blend, EASE, neighbourhood models) is planned the same way from its own
batch `score`, in user batches, each user's row shifted by the same feedback signals through the same item
neighbours (`neighbours.ItemNeighbours`) as a live request's.

A request for such a user still reads the history from the store (the source of truth every worker shares)
and uses the plan only when the rows are the same, compared by fingerprint: then the live path's signals,
query adjustment and index search would produce exactly the plan's ranking. Request-time filters
(availability, `exclude`, and the history items again, so a hard filter never rests on a hash) are applied
to the plan's candidates. When the history changed (a posted event), a category is asked, fewer than k
candidates survive or the catalogue changed an item of the history, the request takes the live path.

Plans also record the store's row watermark when they were made (`watermark`; SQLite stores): where a
`ChangeFeed` says the user has no row past it, the history is the planned one and the request needs no
history read at all (`UserPlans.held`); the history items the champion does not know are kept with the
plan (`unknown`), the only ones the content mix could otherwise return.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import faiss
import numpy as np

from recstack.models._topk import top_k
from recstack.serving.data import Catalog, History, HistoryReader, row_watermark
from recstack.serving.feedback import FeedbackConfig, Signal, adjust_query, signals
from recstack.serving.new_items import MIN_SIMILARITY, NewItems, NovelItems, Ranked

if TYPE_CHECKING:
    from recstack.serving.recommender_service import ServingModel

__all__ = ["FreshPlan", "Plan", "UserPlans", "build_plans", "liked_items", "refresh_plans"]

logger = logging.getLogger(__name__)

# Items of a user's history that shape the content mix when the history holds no positive signal.
CONTENT_PROFILE_ITEMS = 20
_CHUNK = 2048
# Dense score cells per batch of users planned by a champion without an index (16 MiB of float32).
_SCORE_CELLS = 1 << 22
# The closest novel items (new since training, known by content) kept per user for the content mix.
NOVEL_DEPTH = 16


def liked_items(taste: list[Signal], history: History) -> tuple[list[str], list[float]]:
    """What the content mix starts from: the positive signals (ids, weights), or else the newest history
    items at weight 1."""
    positive = [(sig.item_id, sig.weight) for sig in taste if sig.weight > 0]
    if positive:
        return [i for i, _ in positive], [w for _, w in positive]
    recent = history.item_ids[:CONTENT_PROFILE_ITEMS]
    return recent, [1.0] * len(recent)


@dataclass(frozen=True)
class Plan:
    """One user's precomputed candidates (model item indices, best first), content-mix profile items and,
    when prepared, the novel items closest to that profile."""

    candidates: np.ndarray
    scores: np.ndarray
    liked: list[str]
    weights: list[float]
    novel: Ranked | None
    unknown: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class UserPlans:
    """Plans of every user of one champion, as flat arrays indexed by the model's user index."""

    model: ServingModel
    catalog: Catalog
    fingerprints: np.ndarray
    planned: np.ndarray
    candidates: np.ndarray
    scores: np.ndarray
    liked_ptr: np.ndarray
    liked_ids: np.ndarray
    liked_weights: np.ndarray
    novel: _NovelRanks | None
    build_seconds: float
    # Items whose duration changed between planning and opening the stored plans in this process.
    stale_items: frozenset[str] = frozenset()
    # The store's row watermark the histories were read at (-1: unknown), and per user the history items
    # the model does not know (CSR: `unknown_ptr` into `unknown_ids`).
    watermark: int = -1
    unknown_ptr: np.ndarray | None = None
    unknown_ids: np.ndarray | None = None
    _changed: list[tuple[Catalog, frozenset[str]]] = field(default_factory=list, repr=False)
    # Novel ranks made in this process for plans opened without them (`attach_novel`).
    _attached: list[_NovelRanks] = field(default_factory=list, repr=False)

    @property
    def size(self) -> int:
        return int(self.candidates.shape[1])

    def get(self, uidx: int, history: History, catalog: Catalog) -> Plan | None:
        """The plan of model user `uidx` when it still holds for `history` and `catalog`, else None."""
        if uidx < 0 or not self.planned[uidx] or int(self.fingerprints[uidx]) != history.fingerprint:
            return None
        if self.stale_items and not self.stale_items.isdisjoint(history.item_ids):
            return None
        if catalog.duration_s is not self.catalog.duration_s:
            changed = self._changed_items(catalog)
            if changed and not changed.isdisjoint(history.item_ids):
                return None
        return self._plan(uidx)

    def held(self, uidx: int, catalog: Catalog) -> Plan | None:
        """The plan of model user `uidx` for a history known (by the caller's change feed) to be the one
        planned at `watermark`, when nothing else needs that history: None when no plan was made, or
        when the catalogue changed the duration of some item since (the caller then checks `get`)."""
        if uidx < 0 or self.unknown_ptr is None or not self.planned[uidx] or self.stale_items:
            return None
        if catalog.duration_s is not self.catalog.duration_s and self._changed_items(catalog):
            return None
        return self._plan(uidx)

    def _plan(self, uidx: int) -> Plan:
        start, end = int(self.liked_ptr[uidx]), int(self.liked_ptr[uidx + 1])
        unknown: list[str] = []
        if self.unknown_ptr is not None and self.unknown_ids is not None:
            low, high = int(self.unknown_ptr[uidx]), int(self.unknown_ptr[uidx + 1])
            if high > low:
                unknown = self.unknown_ids[low:high].tolist()
        novel = self.novel if self.novel is not None else (self._attached[0] if self._attached else None)
        return Plan(
            self.candidates[uidx], self.scores[uidx], self.liked_ids[start:end].tolist(),
            self.liked_weights[start:end].tolist(), novel.of(uidx) if novel is not None else None, unknown,
        )

    def novel_content(self) -> object | None:
        """The content index the plans' novel ranks were made with (None: no ranks)."""
        novel = self.novel if self.novel is not None else (self._attached[0] if self._attached else None)
        return novel.novel.content if novel is not None else None

    def attach_novel(self, new_items: NewItems, chunk: int = 65536) -> bool:
        """Rank every user's novel items for the current content index (plans opened from an artefact have
        none: the novel items are whatever this process's content index lacks in the champion), so a
        request's content mix is a lookup rather than a search. Users in chunks, so the profiles never
        take more than `chunk` rows of memory. False when there is nothing to rank."""
        ptr, n_users = self.liked_ptr, len(self.liked_ptr) - 1
        parts = []
        for start in range(0, n_users, chunk):
            end = min(start + chunk, n_users)
            a, b = int(ptr[start]), int(ptr[end])
            part = (ptr[start : end + 1] - a, self.liked_ids[a:b], self.liked_weights[a:b])
            parts.append(_novel_ranks(self.model, new_items, part, NOVEL_DEPTH))
        if not parts or any(part is None for part in parts):
            return False
        ranks = [part for part in parts if part is not None]
        depth = max(r.rows.shape[1] for r in ranks)
        if any(r.rows.shape[1] != depth for r in ranks):
            return False
        self._attached[:] = [_NovelRanks(
            ranks[0].novel, np.concatenate([r.rows for r in ranks]), np.concatenate([r.sims for r in ranks]),
            np.concatenate([r.counts for r in ranks]), np.concatenate([r.complete for r in ranks]),
        )]
        return True

    def _changed_items(self, catalog: Catalog) -> frozenset[str]:
        """Items whose duration (which decides a watch event's polarity) differs from the planned one's."""
        if self._changed and self._changed[0][0] is catalog:
            return self._changed[0][1]
        planned = self.catalog
        pos = planned.positions(catalog.ids)
        before = np.where(pos >= 0, planned.duration_s[np.maximum(pos, 0)], np.nan) if len(pos) else np.empty(0)
        after = catalog.duration_s
        differs = ~((before == after) | (np.isnan(before) & np.isnan(after)))
        gone = catalog.positions(planned.ids) < 0
        gone &= ~np.isnan(planned.duration_s)
        changed = frozenset(str(i) for i in [*catalog.ids[differs].tolist(), *planned.ids[gone].tolist()])
        self._changed[:] = [(catalog, changed)]
        return changed


@dataclass(frozen=True)
class _NovelRanks:
    """Per user, the novel rows closest to the content profile (-1 padded) and whether that is all of them."""

    novel: NovelItems
    rows: np.ndarray
    sims: np.ndarray
    counts: np.ndarray
    complete: np.ndarray

    def of(self, uidx: int) -> Ranked:
        n = int(self.counts[uidx])
        return Ranked(self.novel, self.rows[uidx, :n], self.sims[uidx, :n], bool(self.complete[uidx]))


def _novel_ranks(
    model: ServingModel, new_items: NewItems, liked: tuple[np.ndarray, np.ndarray, np.ndarray], depth: int
) -> _NovelRanks | None:
    """`NewItems.rank` of every user's content profile (`liked`: CSR pointers, item ids, weights), in batch
    (None without content or novel items)."""
    content = new_items.content
    if content is None:
        return None
    novel = new_items.novel_for(model, model.item_pos, content)
    if not novel.ids:
        return None
    n_users = len(liked[0]) - 1
    profiles, has = content.profiles(*liked)
    depth = min(depth, len(novel.ids))
    # Faiss's exact inner-product search keeps the best depth + 1 in a heap, five times faster than a numpy
    # partition of every user's row; one more than kept says whether more than `depth` are close enough.
    sims, top = faiss.knn(profiles, np.ascontiguousarray(novel.vectors, dtype=np.float32),
                          min(depth + 1, len(novel.ids)), metric=faiss.METRIC_INNER_PRODUCT)
    sims[~has] = -np.inf
    complete = sims[:, depth] < MIN_SIMILARITY if sims.shape[1] > depth else np.ones(n_users, dtype=bool)
    sims, top = sims[:, :depth], top[:, :depth]
    # Best first, ties by row as `NewItems.rank` orders them.
    order = np.lexsort((top, -sims), axis=1)
    top, sims = np.take_along_axis(top, order, axis=1), np.take_along_axis(sims, order, axis=1)
    close = sims >= MIN_SIMILARITY
    out_rows = np.where(close, top, -1).astype(np.int32)
    out_sims = np.where(close, sims, 0.0).astype(np.float32)
    return _NovelRanks(novel, out_rows, out_sims, (out_rows >= 0).sum(axis=1).astype(np.int32), complete)


def _user_inputs(
    model: ServingModel, history: History, catalog: Catalog, cfg: FeedbackConfig
) -> tuple[list[tuple[int, float]], list[str], list[float], np.ndarray]:
    """What a request would derive from one known user's history: the feedback signals on items the model
    knows (model index, weight), the content-mix profile items and the history's model item indices."""
    taste = signals(history, catalog, cfg)
    usable = [(model.item_pos[s.item_id], s.weight) for s in taste if s.item_id in model.item_pos]
    liked_ids, weights = liked_items(taste, history)
    return usable, liked_ids, weights, model.item_positions(dict.fromkeys(history.item_ids))


def _query(model: ServingModel, uidx: int, usable: list[tuple[int, float]], cfg: FeedbackConfig) -> np.ndarray:
    """The query a request would search with: the user vector moved by the feedback signals."""
    assert model.user_vectors is not None and model.unit_items is not None
    query = adjust_query(
        model.user_vectors[uidx], model.unit_items, [i for i, _ in usable], [w for _, w in usable], cfg
    )
    assert query is not None  # a known user always has a query
    return query


def _scored(
    model: ServingModel, users: np.ndarray, usable: list[list[tuple[int, float]]], history_rows: list[np.ndarray],
    size: int, cfg: FeedbackConfig, progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(planned, candidates, scores) of `users` for a champion without an index: the model's own dense
    `score` in user batches, shifted by each user's feedback signals as the live path shifts them, the
    first `size` items of that ranking less the blocked ones."""
    n_items = len(model.item_ids)
    block = max(1, min(4096, min(model.model.block_cells, _SCORE_CELLS) // max(n_items, 1)))
    candidates = np.full((len(users), size), -1, dtype=np.int32)
    scores = np.full((len(users), size), -np.inf, dtype=np.float32)
    blocked = _blocked_rows(model, users, history_rows)
    neighbours = model.neighbours
    for start in range(0, len(users), block):
        rows = users[start : start + block]
        dense = np.array(model.model.score(rows), dtype=np.float32, copy=True)
        if neighbours is not None:
            for r in range(len(rows)):
                neighbours.shift(dense[r], usable[start + r], cfg.strength)
        cells = blocked[start : start + block]
        dense[np.repeat(np.arange(len(rows)), [len(c) for c in cells]), np.concatenate(cells)] = -np.inf
        found, found_scores = top_k(dense, size)
        width = found.shape[1]
        candidates[start : start + len(rows), :width] = found
        scores[start : start + len(rows), :width] = found_scores
        if progress is not None:
            progress(len(rows))
    return np.ones(len(users), dtype=bool), candidates, scores


def _search(
    model: ServingModel, users: np.ndarray, queries: np.ndarray, history_rows: list[np.ndarray], size: int,
    share: float, workers: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(planned, candidates, scores) of `users` (model user indices; `queries` and `history_rows` aligned
    to them): the first `size` items of the same index search the live path runs, less the blocked ones."""
    assert model.index is not None
    n_items = len(model.item_ids)
    blocked = _blocked(model, users, history_rows, n_items)
    share = min(share, 0.9)
    # As many as the live path asks the index for, so that the plan's ranking is the one a request gets.
    want = ((size + blocked.counts) / (1.0 - share)).astype(np.int64) + 10
    planned = want <= n_items // 4
    candidates = np.full((len(users), size), -1, dtype=np.int32)
    scores = np.full((len(users), size), -np.inf, dtype=np.float32)
    rows = np.flatnonzero(planned)
    rows = rows[np.argsort(want[rows], kind="stable")]
    chunks = [rows[start : start + _CHUNK] for start in range(0, len(rows), _CHUNK)]
    index = model.index

    def search(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return index.search_many(queries[chunk], int(want[chunk].max()))

    # Faiss releases the GIL: chunks are searched on every core (one OpenMP thread each, as the server runs).
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recstack-plans") as pool:
        for chunk, (found, found_scores) in zip(chunks, pool.map(search, chunks), strict=True):
            keep = (found >= 0) & ~blocked.contains(chunk, found)
            # The first `size` kept per row, in rank order.
            order = np.argsort(~keep, axis=1, kind="stable")[:, :size]
            kept = np.take_along_axis(keep, order, axis=1)
            width = order.shape[1]
            candidates[chunk, :width] = np.where(kept, np.take_along_axis(found, order, axis=1), -1)
            scores[chunk, :width] = np.where(kept, np.take_along_axis(found_scores, order, axis=1), -np.inf)
    return planned, candidates, scores


def build_plans(
    model: ServingModel, reader: HistoryReader, catalog: Catalog, cfg: FeedbackConfig, size: int,
    unavailable_share: float, new_items: NewItems | None = None, progress: Callable[[int], None] | None = None,
) -> UserPlans | None:
    """Plans for every user of `model`: searched in its index when it has one, else ranked by its own
    `score` (None when it has an index but no user vectors). `progress(n)` is called as users are planned."""
    indexed = model.index is not None
    if size <= 0 or (indexed and (model.user_vectors is None or model.unit_items is None)):
        return None
    started = time.perf_counter()
    # Read before the scan: a row stored during it is past the watermark, so its user's plan is checked.
    watermark = row_watermark(reader.engine)
    n_users = len(model.users)
    empty = History()
    fingerprints = np.full(n_users, empty.fingerprint, dtype=np.int64)
    queries = np.array(model.user_vectors, dtype=np.float32, copy=True) if indexed else None
    usable: list[list[tuple[int, float]]] = [[]] * n_users
    liked: list[tuple[list[str], list[float]]] = [([], [])] * n_users
    history_rows: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * n_users
    unknown: dict[int, list[str]] = {}
    for user_id, rows in reader.scan():
        uidx = model.user_pos.get(user_id, -1)
        if uidx < 0:
            continue
        history = History.of(rows)
        fingerprints[uidx] = history.fingerprint
        usable[uidx], liked_ids, weights, history_rows[uidx] = _user_inputs(model, history, catalog, cfg)
        if queries is not None:
            queries[uidx] = _query(model, uidx, usable[uidx], cfg)
        liked[uidx] = (liked_ids, weights)
        foreign = [i for i in dict.fromkeys(history.item_ids) if i not in model.item_pos]
        if foreign:
            unknown[uidx] = foreign
    if queries is not None:
        planned, candidates, scores = _search(
            model, np.arange(n_users), queries, history_rows, size, unavailable_share, min(4, os.cpu_count() or 1)
        )
        if progress is not None:
            progress(n_users)
    else:
        planned, candidates, scores = _scored(model, np.arange(n_users), usable, history_rows, size, cfg, progress)
    counts = np.array([len(ids) for ids, _ in liked], dtype=np.int64)
    flat_ptr = np.concatenate([[0], np.cumsum(counts)])
    flat_ids = np.array([i for ids, _ in liked for i in ids], dtype=str)
    flat_weights = np.array([w for _, weights in liked for w in weights], dtype=np.float32)
    unknown_counts = np.zeros(n_users, dtype=np.int64)
    for uidx, ids in unknown.items():
        unknown_counts[uidx] = len(ids)
    plans = UserPlans(
        model=model,
        catalog=catalog,
        fingerprints=fingerprints,
        planned=planned,
        candidates=candidates,
        scores=scores,
        liked_ptr=flat_ptr,
        liked_ids=flat_ids,
        liked_weights=flat_weights,
        novel=(_novel_ranks(model, new_items, (flat_ptr, flat_ids, flat_weights), NOVEL_DEPTH)
               if new_items is not None else None),
        build_seconds=time.perf_counter() - started,
        watermark=-1 if watermark is None else watermark,
        unknown_ptr=np.concatenate([[0], np.cumsum(unknown_counts)]),
        unknown_ids=np.array([i for uidx in sorted(unknown) for i in unknown[uidx]], dtype=str),
    )
    logger.info("user plans: %d of %d users, %d candidates each, in %.1f s", int(planned.sum()), n_users, size,
                plans.build_seconds)
    return plans


@dataclass(frozen=True)
class FreshPlan:
    """A plan refreshed after the champion was prepared, for the history with `fingerprint`."""

    fingerprint: int
    plan: Plan
    catalog: Catalog
    # The user's change-feed version read before the history was (-1: none): equal later means unchanged.
    version: int = -1


def refresh_plans(
    model: ServingModel, histories: list[tuple[int, History, int]], catalog: Catalog, cfg: FeedbackConfig,
    size: int, unavailable_share: float,
) -> dict[int, FreshPlan]:
    """Plans of a few users (model index, current history, its change-feed version or -1) searched or
    scored in one batch: what the background refresh keeps for the active users, whose stored plan no
    longer matches their history."""
    if not histories or (model.index is not None and model.user_vectors is None):
        return {}
    users = np.array([u for u, _, _ in histories], dtype=np.int64)
    inputs = [_user_inputs(model, history, catalog, cfg) for _, history, _ in histories]
    rows = [r for _, _, _, r in inputs]
    if model.index is not None:
        queries = np.stack([_query(model, uidx, usable, cfg) for uidx, (usable, _, _, _) in
                            zip(users.tolist(), inputs, strict=True)]).astype(np.float32)
        planned, candidates, scores = _search(model, users, queries, rows, size, unavailable_share, 1)
    else:
        planned, candidates, scores = _scored(model, users, [u for u, _, _, _ in inputs], rows, size, cfg)
    out: dict[int, FreshPlan] = {}
    for row, (uidx, history, version) in enumerate(histories):
        if planned[row]:
            _, liked_ids, weights, _ = inputs[row]
            unknown = [i for i in dict.fromkeys(history.item_ids) if i not in model.item_pos]
            out[uidx] = FreshPlan(
                history.fingerprint, Plan(candidates[row], scores[row], liked_ids, weights, None, unknown), catalog,
                version,
            )
    return out


def _blocked_rows(model: ServingModel, users: np.ndarray, history_rows: list[np.ndarray]) -> list[np.ndarray]:
    """Per user, the model item indices never to return: seen in training or in the stored history."""
    seen = model.seen
    if seen is None:
        return history_rows
    return [
        np.concatenate([seen.indices[seen.indptr[u] : seen.indptr[u + 1]], row]).astype(np.int64)
        for u, row in zip(users.tolist(), history_rows, strict=True)
    ]


def _blocked(model: ServingModel, users: np.ndarray, history_rows: list[np.ndarray], n_items: int) -> _Rows:
    """`_blocked_rows` as membership keys."""
    return _Rows.of(_blocked_rows(model, users, history_rows), n_items)


@dataclass(frozen=True)
class _Rows:
    """Deduplicated int rows as one sorted array of keys `row * width + value` (membership by bisection)."""

    counts: np.ndarray
    keys: np.ndarray
    width: int

    @classmethod
    def of(cls, rows: list[np.ndarray], width: int) -> _Rows:
        uniq = [np.unique(r) for r in rows]
        counts = np.array([len(r) for r in uniq], dtype=np.int64)
        values = np.concatenate(uniq).astype(np.int64) if uniq else np.empty(0, dtype=np.int64)
        owners = np.repeat(np.arange(len(uniq), dtype=np.int64), counts)
        return cls(counts, owners * width + values, width)

    def contains(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(len(rows), m) bools: whether values[i, j] is in row rows[i] (negative values never are)."""
        if not len(self.keys):
            return np.zeros(values.shape, dtype=bool)
        wanted = rows[:, None].astype(np.int64) * self.width + values
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return (self.keys[at] == wanted) & (values >= 0)
