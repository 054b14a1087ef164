"""Candidate generation: several retrieval sources unioned per user, each candidate carrying who found it.

Sources (names in `SOURCES`, column order of `Candidates.scores`):
- `collaborative`: a dense item-item model's scores (EASE by default);
- `embedding`: a factor model's user vector searched in a Faiss inner-product index (ALS by default);
- `covisit`: item-to-item co-visitation from the user's recent history. Two items taken up by one user at
  most `covisit_window` steps apart add `exp(-Δt / covisit_hours) / steps` to their link, so "watched one
  right after the other" counts more than "both, months apart"; the user's recent items vote with weights
  halving every `recency_half_life` steps back, and the item that voted most is the candidate's anchor
  ("because you watched <anchor>");
- `content`: cosine between the TF-IDF vectors (`recstack.models.tfidf`) of the candidate and a profile of
  the user's recent items; its anchor is the recent item most similar to the candidate;
- `sequential`: a sequence-aware model's scores (`sequence_ease` by default; any catalogue name, e.g. a deep
  sequential model once it is registered);
- `trending`: popularity decayed by `trending_half_life_days` before the reference time;
- `new`: items created within `new_days` before the reference time (needs `created_at` in the items).

Every source excludes the user's history. Sources are fitted on the events they are given and nothing else,
so a generator fitted on the events before a cut-off sees nothing after it (the ranker's training relies on
that). Sub-models are ordinary `Recommender`s saved in their own directories; nothing is pickled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recstack.errors import ConfigurationError
from recstack.models.base import Recommender

__all__ = ["SOURCES", "CandidateConfig", "CandidateGenerator", "Candidates", "UserHistory"]

logger = logging.getLogger(__name__)

SOURCES: Final = ("collaborative", "embedding", "covisit", "content", "sequential", "trending", "new")
_MS_PER_HOUR: Final = 3_600_000.0
_MS_PER_DAY: Final = 86_400_000.0
_BATCH: Final = 256


class CandidateConfig(BaseModel):
    """Which sources run and how deep; model sources name a catalogue model and its keywords (None: off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_source: int = Field(default=100, ge=1)
    collaborative: str | None = "ease"
    collaborative_params: dict[str, Any] = Field(default_factory=lambda: {"l2": 8.0, "l2_relative": True})
    embedding: str | None = "als"
    embedding_params: dict[str, Any] = Field(default_factory=lambda: {"factors": 64, "num_threads": 1})
    sequential: str | None = "sequence_ease"
    sequential_params: dict[str, Any] = Field(default_factory=dict)
    content: bool = True
    recent: int = Field(default=20, ge=1)
    covisit_window: int = Field(default=5, ge=1)
    covisit_hours: float = Field(default=24.0, gt=0.0)
    recency_half_life: float = Field(default=5.0, gt=0.0)
    trending_half_life_days: float = Field(default=7.0, gt=0.0)
    new_days: float = Field(default=14.0, gt=0.0)


@dataclass(frozen=True)
class UserHistory:
    """Each user's events in time order (CSR-like over the users): item indices, epoch ms, strengths."""

    indptr: np.ndarray
    items: np.ndarray
    times: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_events(cls, events: pd.DataFrame, n_users: int) -> UserHistory:
        """From a frame with `user_idx`, `item_idx`, `timestamp` (ms) and `weight`."""
        users = events["user_idx"].to_numpy(np.int64)
        times = events["timestamp"].to_numpy(np.int64)
        order = np.lexsort((times, users))
        counts = np.bincount(users, minlength=n_users)
        return cls(
            indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            items=events["item_idx"].to_numpy(np.int64)[order],
            times=times[order],
            weights=events["weight"].to_numpy(np.float64)[order],
        )

    def items_of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def recent(self, user: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's last `n` distinct positively-weighted items (newest last) and their recency weights."""
        lo, hi = self.indptr[user], self.indptr[user + 1]
        items = self.items[lo:hi][self.weights[lo:hi] > 0]
        reversed_unique, first = np.unique(items[::-1], return_index=True)
        newest_first = reversed_unique[np.argsort(first)][:n]
        return newest_first[::-1], np.arange(len(newest_first))[::-1].astype(np.float64)


@dataclass(frozen=True)
class Candidates:
    """The union of every source's top items for a set of users, one row per (user, item).

    `scores[:, s]` / `ranks[:, s]` are source `SOURCES[s]`'s score and 1-based rank (NaN where the source did
    not find the item); `anchor` is the history item behind a `covisit` or `content` candidate (-1: none).
    Rows of one user are contiguous.
    """

    user: np.ndarray
    item: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    anchor: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def sources_of(self, row: int) -> list[str]:
        """The names of the sources that found candidate `row`, best rank first."""
        found = np.flatnonzero(~np.isnan(self.ranks[row]))
        return [SOURCES[s] for s in found[np.argsort(self.ranks[row, found], kind="stable")]]


class CandidateGenerator:
    """Fitted sources over one item vocabulary (the hybrid's); see the module docstring."""

    def __init__(self, config: CandidateConfig | None = None) -> None:
        self.config = config or CandidateConfig()
        self.models: dict[str, Recommender[Any]] = {}
        self.user_map: dict[str, np.ndarray] = {}
        self.item_map: dict[str, np.ndarray] = {}
        self.covisit: sp.csr_matrix | None = None
        self.content: sp.csr_matrix | None = None
        self.created_ms: np.ndarray | None = None
        self.n_items = 0
        self._index: Any = None
        self._trending: tuple[int, np.ndarray] | None = None

    # ---- fitting ------------------------------------------------------------------------------------

    def fit(
        self,
        events: pd.DataFrame,
        history: UserHistory,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        items: pd.DataFrame | None,
    ) -> CandidateGenerator:
        """Fit every enabled source on `events` (`user_id`, `item_id`, `user_idx`, `item_idx`, `timestamp`,
        `weight`) whose indices follow `user_ids` / `item_ids`; `items` is the metadata aligned to
        `item_ids` (index = item id) or None."""
        cfg = self.config
        self.n_items = len(item_ids)
        frame = events[["user_id", "item_id", "timestamp", "weight"]]
        item_frame = None if items is None else items.reset_index()
        for source, name, params in (
            ("collaborative", cfg.collaborative, cfg.collaborative_params),
            ("embedding", cfg.embedding, cfg.embedding_params),
            ("sequential", cfg.sequential, cfg.sequential_params),
        ):
            if name is None:
                continue
            from recstack.models.catalog import create

            model = create(name, **params).fit(frame, items=item_frame)
            if source == "embedding" and model.item_embeddings() is None:
                raise ConfigurationError(f"candidate source 'embedding' needs a model with embeddings, not {name!r}")
            self._attach(source, model, user_ids, item_ids)
        self.covisit = _covisitation(history, self.n_items, cfg.covisit_window, cfg.covisit_hours * _MS_PER_HOUR)
        if cfg.content and item_frame is not None:
            self.content = _content_vectors(frame, item_frame, item_ids)
        self.created_ms = _created_ms(items)
        return self

    def _attach(self, source: str, model: Recommender[Any], user_ids: np.ndarray, item_ids: np.ndarray) -> None:
        self.models[source] = model
        self.user_map[source] = model.users.index(user_ids)
        self.item_map[source] = model.items.index(item_ids)
        self._index = None

    # ---- generation ---------------------------------------------------------------------------------

    def generate(self, users: np.ndarray, history: UserHistory, as_of: int) -> Candidates:
        """Candidates for each user in `users` (hybrid user indices; unknown = -1 gets trending and new only),
        from `history` up to `as_of` (epoch ms) — the caller passes a history that ends before `as_of`."""
        users = np.asarray(users, dtype=np.int64)
        trending = self._trending_scores(history, as_of)
        new = self._new_scores(as_of)
        parts: list[Candidates] = []
        for lo in range(0, len(users), _BATCH):
            batch = users[lo : lo + _BATCH]
            dense: dict[str, np.ndarray] = {
                s: self._dense(s, batch) for s in ("collaborative", "sequential") if s in self.models
            }
            found = self._embedding(batch, history)
            for row, user in enumerate(batch):
                per_source = self._per_user(user, row, dense, found, history, trending, new)
                parts.append(_union(user, per_source, self.config.per_source))
        return _concat(parts)

    def _per_user(
        self,
        user: int,
        row: int,
        dense: dict[str, np.ndarray],
        found: dict[int, tuple[np.ndarray, np.ndarray]],
        history: UserHistory,
        trending: np.ndarray,
        new: np.ndarray | None,
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        n = self.config.per_source
        seen = history.items_of(user) if user >= 0 else np.empty(0, dtype=np.int64)
        out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        for source, block in dense.items():
            scores = block[row].copy()
            scores[seen] = -np.inf
            idx, top = _top(scores, n)
            out[source] = (idx, top, None)
        if row in found:
            idx, top = found[row]
            keep = ~np.isin(idx, seen)
            out["embedding"] = (idx[keep][:n], top[keep][:n], None)
        if user >= 0:
            recent, age = history.recent(user, self.config.recent)
            if len(recent):
                weights = np.power(0.5, age / self.config.recency_half_life)
                out.update(self._from_recent(recent, weights, seen, n))
        for source, base in (("trending", trending), ("new", new)):
            if base is None:
                continue
            scores = base.copy()
            scores[seen] = -np.inf
            idx, top = _top(scores, n)
            out[source] = (idx, top, None)
        return out

    def _from_recent(
        self, recent: np.ndarray, weights: np.ndarray, seen: np.ndarray, n: int
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        if self.covisit is not None:
            votes = self.covisit[recent].toarray() * weights[:, None]
            scores = votes.sum(axis=0)
            scores[seen] = -np.inf
            scores[scores <= 0] = -np.inf
            idx, top = _top(scores, n)
            out["covisit"] = (idx, top, recent[np.argmax(votes[:, idx], axis=0)] if len(idx) else idx)
        if self.content is not None:
            profile = sp.csr_matrix(weights[None, :]) @ self.content[recent]
            scores = np.asarray((self.content @ profile.T).toarray()).ravel()
            norm = float(np.sqrt(profile.multiply(profile).sum()))
            scores = scores / norm if norm > 0 else scores
            scores[seen] = -np.inf
            scores[scores <= 0] = -np.inf
            idx, top = _top(scores, n)
            if len(idx):
                sims = (self.content[recent] @ self.content[idx].T).toarray()
                out["content"] = (idx, top, recent[np.argmax(sims, axis=0)])
        return out

    def _dense(self, source: str, users: np.ndarray) -> np.ndarray:
        """A model source's scores for `users` in hybrid item order (-inf: unknown user or item)."""
        model, cols = self.models[source], self.item_map[source]
        rows = self.user_map[source][np.maximum(users, 0)]
        known = (users >= 0) & (rows >= 0)
        out = np.full((len(users), self.n_items), -np.inf, dtype=np.float32)
        if known.any():
            scores = np.asarray(model.score(rows[known]), dtype=np.float32)
            valid = cols >= 0
            block = np.full((int(known.sum()), self.n_items), -np.inf, dtype=np.float32)
            block[:, valid] = scores[:, cols[valid]]
            out[known] = block
        return out

    def _embedding(self, users: np.ndarray, history: UserHistory) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The `embedding` source through Faiss: per batch row, (hybrid item indices, scores), best first."""
        model = self.models.get("embedding")
        if model is None:
            return {}
        index, user_vectors = self._faiss(model)
        rows = self.user_map["embedding"][np.maximum(users, 0)]
        known = np.flatnonzero((users >= 0) & (rows >= 0))
        if not len(known):
            return {}
        depth = self.config.per_source + int(max(len(history.items_of(int(u))) for u in users[known]))
        ids, scores = index.search_many(user_vectors[rows[known]], depth)
        return {int(r): (ids[i][ids[i] >= 0], scores[i][ids[i] >= 0]) for i, r in enumerate(known)}

    def _faiss(self, model: Recommender[Any]) -> tuple[Any, np.ndarray]:
        if self._index is None:
            from recstack.serving.retrieval import ItemIndex

            vectors = model.item_embeddings()
            users = model.user_embeddings()
            assert vectors is not None and users is not None
            cols = self.item_map["embedding"]
            aligned = np.zeros((self.n_items, vectors.shape[1]), dtype=np.float32)
            aligned[cols >= 0] = vectors[cols[cols >= 0]]
            self._index = (ItemIndex(aligned, queries=users), np.ascontiguousarray(users, dtype=np.float32))
        return self._index  # type: ignore[no-any-return]

    def _trending_scores(self, history: UserHistory, as_of: int) -> np.ndarray:
        cached = self._trending
        if cached is not None and cached[0] == as_of and len(cached[1]) == self.n_items:
            return cached[1]
        before = (history.times < as_of) & (history.weights > 0)
        age = (as_of - history.times[before]) / _MS_PER_DAY
        decay = np.power(0.5, age / self.config.trending_half_life_days)
        scores = np.bincount(history.items[before], weights=decay, minlength=self.n_items).astype(np.float32)
        scores[scores <= 0] = -np.inf
        self._trending = (as_of, scores)
        return scores

    def _new_scores(self, as_of: int) -> np.ndarray | None:
        if self.created_ms is None:
            return None
        age = (as_of - self.created_ms) / _MS_PER_DAY
        fresh = (age >= 0) & (age <= self.config.new_days)
        if not fresh.any():
            return None
        return np.where(fresh, -age, -np.inf).astype(np.float32)

    # ---- persistence --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Arrays for the owner's `state.npz` (prefixed `candidates.`)."""
        state: dict[str, Any] = {"candidates.n_items": np.asarray(self.n_items)}
        if self.covisit is not None:
            state["candidates.covisit"] = self.covisit
        if self.content is not None:
            state["candidates.content"] = self.content
        if self.created_ms is not None:
            state["candidates.created_ms"] = self.created_ms
        for source in self.models:
            state[f"candidates.user_map.{source}"] = self.user_map[source]
            state[f"candidates.item_map.{source}"] = self.item_map[source]
        return state

    def save_models(self, directory: Path) -> None:
        """Each model source under `directory/<source>/` (its own json + npz)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "sources.json").write_text(json.dumps(sorted(self.models)), encoding="utf-8")
        for source, model in self.models.items():
            model.save(directory / source)

    @classmethod
    def restore(cls, config: CandidateConfig, state: dict[str, Any], directory: Path) -> CandidateGenerator:
        """Inverse of `state` + `save_models`."""
        generator = cls(config)
        generator.n_items = int(state["candidates.n_items"])
        generator.covisit = state.get("candidates.covisit")
        generator.content = state.get("candidates.content")
        generator.created_ms = state.get("candidates.created_ms")
        for source in json.loads((directory / "sources.json").read_text(encoding="utf-8")):
            generator.models[source] = Recommender.load(directory / source)
            generator.user_map[source] = state[f"candidates.user_map.{source}"]
            generator.item_map[source] = state[f"candidates.item_map.{source}"]
        return generator


def _top(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) > n:
        part = np.argpartition(-scores[finite], n - 1)[:n]
        finite = finite[part]
    order = finite[np.lexsort((finite, -scores[finite]))]
    return order.astype(np.int64), scores[order].astype(np.float32)


def _union(
    user: int, per_source: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]], depth: int
) -> Candidates:
    n_sources = len(SOURCES)
    items = [p[0] for p in per_source.values()]
    if not items:
        empty = np.empty(0, dtype=np.int64)
        nothing = np.empty((0, n_sources), np.float32)
        return Candidates(empty, empty, nothing, nothing.copy(), empty)
    unique, inverse = np.unique(np.concatenate(items), return_inverse=True)
    scores = np.full((len(unique), n_sources), np.nan, dtype=np.float32)
    ranks = np.full((len(unique), n_sources), np.nan, dtype=np.float32)
    anchor = np.full(len(unique), -1, dtype=np.int64)
    start = 0
    for source, (idx, top, anchors) in per_source.items():
        rows = inverse[start : start + len(idx)]
        start += len(idx)
        column = SOURCES.index(source)
        scores[rows, column] = top
        ranks[rows, column] = np.arange(1, len(idx) + 1, dtype=np.float32)
        if anchors is not None:
            # The co-visitation anchor wins over the content one: it is what the user actually did next.
            free = (anchor[rows] < 0) | (source == "covisit")
            anchor[rows[free]] = anchors[free]
    return Candidates(np.full(len(unique), user, dtype=np.int64), unique.astype(np.int64), scores, ranks, anchor)


def _concat(parts: list[Candidates]) -> Candidates:
    n_sources = len(SOURCES)
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        nothing = np.empty((0, n_sources), np.float32)
        return Candidates(empty, empty, nothing, nothing.copy(), empty)
    return Candidates(
        np.concatenate([p.user for p in parts]),
        np.concatenate([p.item for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.ranks for p in parts]),
        np.concatenate([p.anchor for p in parts]),
    )


def _covisitation(history: UserHistory, n_items: int, window: int, scale_ms: float) -> sp.csr_matrix:
    """Symmetric co-visitation links between positively-weighted events of one user ≤ `window` steps apart,
    each adding `exp(-Δt / scale) / steps`; rows and columns normalised by the square roots of their sums."""
    positive = history.weights > 0
    items, times = history.items[positive], history.times[positive]
    owner = np.repeat(np.arange(len(history.indptr) - 1), np.diff(history.indptr))[positive]
    rows, cols, vals = [], [], []
    for lag in range(1, window + 1):
        same = owner[lag:] == owner[:-lag]
        a, b = items[:-lag][same], items[lag:][same]
        gap = np.abs(times[lag:][same] - times[:-lag][same]).astype(np.float64)
        weight = np.exp(-gap / scale_ms) / lag
        distinct = a != b
        rows += [a[distinct], b[distinct]]
        cols += [b[distinct], a[distinct]]
        vals += [weight[distinct], weight[distinct]]
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
    )
    matrix.sum_duplicates()
    degree = np.asarray(matrix.sum(axis=1)).ravel()
    inv = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    return sp.csr_matrix(sp.diags(inv) @ matrix @ sp.diags(inv), dtype=np.float32)


def _content_vectors(frame: pd.DataFrame, items: pd.DataFrame, item_ids: np.ndarray) -> sp.csr_matrix | None:
    """TF-IDF item vectors (unit rows) in the hybrid's item order; None when the items carry no text."""
    from recstack.models.tfidf import TfidfRecommender

    try:
        tfidf = TfidfRecommender().fit(frame, items=items)
    except ConfigurationError as exc:
        logger.info("content candidates off: %s", exc)
        return None
    cols = tfidf.items.index(item_ids)
    vectors = tfidf.item_vectors_[np.maximum(cols, 0)]
    return sp.csr_matrix(sp.diags((cols >= 0).astype(np.float32)) @ vectors, dtype=np.float32)


def _created_ms(items: pd.DataFrame | None) -> np.ndarray | None:
    if items is None or "created_at" not in items:
        return None
    from recstack.processing.features import epoch_ms

    values = epoch_ms(items["created_at"])
    return None if np.isnan(values).all() else values
