"""The hybrid: candidate sources → point-in-time features → a LightGBM LambdaRank ranker, as one Recommender.

Training follows the question production asks (what will the user pick next?). Each user's training
events are cut at their own time T_u (`label_split="per_user"`: the user's `label_share` newest events lie
after it; `"global"`: one T for everyone at that quantile of all events). Candidate sources are fitted on
the events before the cuts, every user who engaged after theirs gets candidates and features as of T_u, and
the ranker learns which candidates the user actually took up after T_u (graded: share > like > long watch
> watch; skips, bounces and candidates left alone are 0). With `cutoffs` > 1 each user is asked again at
earlier cuts, each with its own sources, features and next window of events: more queries for the ranker.
The sources are then refitted on all training events; at scoring time a user's features are computed as of
just after their newest known event (the moment "what next?" is asked) — the same code on both sides.

`score` gives ranker scores to a user's candidates and a low floor (ordered by trending) to everything
else, so `recommend` returns ranked candidates first; `explain` names each item's source for the API:
`collaborative`, `because you watched <title>` (co-visitation or content, with the history item behind
it), `trending`, `new`.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from recstack.errors import ConfigurationError
from recstack.models.base import Recommender, RecommenderConfig, TrainingData
from recstack.processing.features import EventLog, ItemAttributes, build_features, epoch_ms, feature_names
from recstack.ranking.candidates import CandidateConfig, CandidateGenerator, Candidates, UserHistory
from recstack.ranking.ranker import LambdaRanker, RankerConfig, graded_labels

__all__ = ["HybridConfig", "HybridRecommender", "reason_of"]

logger = logging.getLogger(__name__)

_FLOOR = -1.0e3
_COLLABORATIVE = frozenset({"collaborative", "embedding", "sequential"})


class HybridConfig(RecommenderConfig):
    """`label_share`: the newest share of training events whose outcomes teach the ranker; at most
    `max_train_users` users (a seeded sample) form its queries at each of `cutoffs` moments (cut-off c
    labels the share of events between c and c + 1 label shares from the newest, with sources fitted on
    the events before it)."""

    candidates: CandidateConfig = Field(default_factory=CandidateConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    label_share: float = Field(default=0.25, gt=0.0, lt=1.0)
    label_split: Literal["per_user", "global"] = "per_user"
    cutoffs: int = Field(default=1, ge=1, le=4)
    max_train_users: int = Field(default=4000, ge=10)
    seed: int = 42


def reason_of(sources: list[str], anchor_title: str | None) -> str:
    """The API reason for a candidate found by `sources` (best first)."""
    if not sources:
        return "trending"
    best = sources[0]
    if best in _COLLABORATIVE:
        return "collaborative"
    if best in ("covisit", "content"):
        return f"because you watched {anchor_title}" if anchor_title else "collaborative"
    return best


class HybridRecommender(Recommender[HybridConfig]):
    """Sources → features → LambdaRank; needs timestamps (the ranker learns from what came next)."""

    name: ClassVar[str] = "hybrid"
    config_type: ClassVar[type[HybridConfig]] = HybridConfig
    catalog_items: ClassVar[bool] = True
    needs_timestamps: ClassVar[bool] = True
    forecasts: ClassVar[bool] = True

    generator_: CandidateGenerator
    watch_value_: np.ndarray
    candidate_recall_: float
    ranker_: LambdaRanker
    history_: UserHistory
    log_: EventLog
    as_of_: int
    titles_: list[str]

    def __init__(self, config: HybridConfig | None = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._last: tuple[int, Candidates, np.ndarray] | None = None
        self._lock = threading.Lock()

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_interactions: int) -> int:
        """Bytes at fit time, roughly: EASE's dense item-item solve dominates, then the event indexes."""
        return int(3 * 8 * n_items**2 + 400 * n_interactions + 8 * n_users * 64)

    # ---- training -----------------------------------------------------------------------------------

    def _fit(self, data: TrainingData) -> None:
        frame = data.interactions
        if "timestamp" not in frame:
            raise ConfigurationError("the hybrid needs a timestamp column: its ranker learns from what came next")
        stamps = epoch_ms(frame["timestamp"])
        if np.isnan(stamps).any():
            raise ConfigurationError("the hybrid needs a timestamp on every interaction")
        frame = frame.assign(timestamp=stamps.astype(np.int64))
        attributes = ItemAttributes.from_items(data.item_features, len(data.items))
        self._train_ranker(frame, data, attributes)
        self.history_ = UserHistory.from_events(frame, len(data.users))
        self.generator_ = CandidateGenerator(self.config.candidates).fit(
            frame, self.history_, data.users.ids, data.items.ids, data.item_features
        )
        order = np.lexsort((frame["timestamp"].to_numpy(np.int64), frame["user_idx"].to_numpy(np.int64)))
        watch = frame["event_type"].astype(str).to_numpy() == "watch" if "event_type" in frame else False
        value = pd.to_numeric(frame["value"], errors="coerce").to_numpy(np.float64) if "value" in frame else np.nan
        self.watch_value_ = np.broadcast_to(np.where(watch, value, np.nan), (len(frame),))[order].copy()
        self._attributes = attributes
        self.log_ = EventLog(self._history_frame(), len(data.users), attributes)
        self.as_of_ = int(stamps.max()) + 1
        features = data.item_features
        titles = features["title"] if features is not None and "title" in features else None
        self.titles_ = [
            str(t) if isinstance(t, str) and t else str(i)
            for i, t in zip(data.items.ids.tolist(), titles if titles is not None else data.items.ids, strict=True)
        ]

    def _train_ranker(self, frame: pd.DataFrame, data: TrainingData, attributes: ItemAttributes) -> None:
        cfg = self.config
        n_users = len(data.users)
        # Cut-off c (0 = newest) labels the user's events between cuts c and c - 1: each cut asks "what
        # next?" at an earlier moment, with sources fitted only on the events before it.
        cuts = [self._cuts(frame, n_users, (c + 1) * cfg.label_share) for c in range(cfg.cutoffs)]
        parts = []
        end = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
        for c, cut in enumerate(cuts):
            if c and (cut >= end).all():
                break
            part = self._examples(frame, data, attributes, cut, end, query_offset=c * n_users)
            if part is not None:
                parts.append(part)
            end = cut
        if not parts:
            raise ConfigurationError("the hybrid needs interactions spread over time to train its ranker")
        features = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        queries = np.concatenate([p[2] for p in parts])
        self.candidate_recall_ = float(parts[0][3])
        self.ranker_ = LambdaRanker(cfg.ranker).fit(features, labels, queries, feature_names())

    def _examples(
        self, frame: pd.DataFrame, data: TrainingData, attributes: ItemAttributes, user_cut: np.ndarray,
        end: np.ndarray, query_offset: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        """Features, graded labels and query ids of the candidates as of each user's cut, labelled by what
        the user did in [cut, end); None when no user engaged in that window."""
        cfg = self.config
        stamps = frame["timestamp"].to_numpy(np.int64)
        n_users, n_items = len(data.users), len(data.items)
        owner = frame["user_idx"].to_numpy(np.int64)
        in_label = stamps >= user_cut[owner]
        before, after = frame.loc[~in_label], frame.loc[in_label & (stamps < end[owner])]
        if before.empty or after.empty:
            return None
        history = UserHistory.from_events(before, n_users)
        grades = graded_labels(after, attributes.duration_s)
        pair = after["user_idx"].to_numpy(np.int64) * n_items + after["item_idx"].to_numpy(np.int64)
        keys, first = np.unique(pair, return_inverse=True)
        best = np.zeros(len(keys), dtype=np.int64)
        np.maximum.at(best, first.ravel(), grades)
        users = np.unique(keys[best > 0] // n_items)
        users = users[np.diff(history.indptr)[users] > 0]
        if not len(users):
            return None
        if len(users) > cfg.max_train_users:
            users = np.sort(np.random.default_rng(cfg.seed).choice(users, cfg.max_train_users, replace=False))
        generator = CandidateGenerator(cfg.candidates).fit(
            before, history, data.users.ids, data.items.ids, data.item_features
        )
        candidates = generator.generate(users, history, int(user_cut[users].max()))
        # As at serving: a user's features are taken just after their newest event before the cut.
        at = _after_newest(history, candidates.user, user_cut[candidates.user])
        features = build_features(EventLog(before, n_users, attributes), candidates, at)
        asked = candidates.user * n_items + candidates.item
        where = np.searchsorted(keys, asked)
        found = (where < len(keys)) & (keys[np.minimum(where, len(keys) - 1)] == asked)
        labels = np.where(found, best[np.minimum(where, len(keys) - 1)], 0)
        recall = float(labels.astype(bool).sum()) / max(int((best > 0).sum()), 1)
        logger.info(
            "hybrid: ranker examples %d rows for %d users; candidates hold %.1f%% of the positive pairs after T",
            len(labels), len(users), 100 * recall,
        )
        return features, labels, candidates.user + query_offset, recall

    def _cuts(self, frame: pd.DataFrame, n_users: int, share: float) -> np.ndarray:
        """Per user, the time from which their newest `share` of events lies (int64 epoch ms; max: none)."""
        stamps = frame["timestamp"].to_numpy(np.int64)
        cfg = self.config
        if cfg.label_split == "global":
            return np.full(n_users, int(np.quantile(stamps, max(1.0 - share, 0.0))), dtype=np.int64)
        users = frame["user_idx"].to_numpy(np.int64)
        order = np.lexsort((stamps, users))
        sizes = np.bincount(users, minlength=n_users)
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        held = np.where(sizes >= 2, np.clip(np.ceil(share * sizes).astype(np.int64), 1, sizes - 1), 0)
        cut = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
        has = held > 0
        cut[has] = stamps[order][(start + sizes - held)[has]]
        return cut

    def reference_times(self, users: np.ndarray) -> np.ndarray:
        """Per user, the time features are computed at: just after their newest training event."""
        users = np.asarray(users, dtype=np.int64)
        return _after_newest(self.history_, users, np.full(len(users), self.as_of_, dtype=np.int64))

    # ---- scoring ------------------------------------------------------------------------------------

    def _candidates(self, users: np.ndarray) -> tuple[Candidates, np.ndarray]:
        """Candidates of `users` as of the newest training event, and their ranker scores."""
        if len(users) == 1:
            last = self._last
            if last is not None and last[0] == int(users[0]):
                return last[1], last[2]
        candidates = self.generator_.generate(users, self.history_, self.as_of_)
        at = self.reference_times(candidates.user)
        scores = self.ranker_.predict(build_features(self.log_, candidates, at))
        if len(users) == 1:
            with self._lock:
                self._last = (int(users[0]), candidates, scores)
        return candidates, scores

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = np.asarray(user_idx, dtype=np.int64)
        candidates, scores = self._candidates(users)
        trending = self.generator_._trending_scores(self.history_, self.as_of_)
        finite = np.isfinite(trending)
        floor = np.full(len(self.items), _FLOOR, dtype=np.float64)
        if finite.any():
            floor[finite] += 0.5 * trending[finite] / float(trending[finite].max())
        out = np.tile(floor, (len(users), 1))
        row_of = {int(u): r for r, u in enumerate(users.tolist())}
        rows = np.array([row_of[int(u)] for u in candidates.user], dtype=np.int64)
        out[rows, candidates.item] = scores
        return out.astype(np.float32)

    def explain(self, user_idx: int, item_idx: np.ndarray) -> list[str] | None:
        candidates, _ = self._candidates(np.array([user_idx], dtype=np.int64))
        position = {int(i): r for r, i in enumerate(candidates.item.tolist())}
        reasons = []
        for item in np.asarray(item_idx).tolist():
            row = position.get(int(item))
            if row is None:
                reasons.append("trending")
                continue
            anchor = int(candidates.anchor[row])
            reasons.append(reason_of(candidates.sources_of(row), self.titles_[anchor] if anchor >= 0 else None))
        return reasons

    def ranking_features(self, user_idx: int, item_idx: np.ndarray) -> tuple[list[str], np.ndarray] | None:
        candidates, _ = self._candidates(np.array([user_idx], dtype=np.int64))
        position = {int(i): r for r, i in enumerate(candidates.item.tolist())}
        features = build_features(self.log_, candidates, self.reference_times(candidates.user))
        out = np.full((len(item_idx), features.shape[1]), np.nan, dtype=np.float32)
        for row, item in enumerate(np.asarray(item_idx).tolist()):
            if int(item) in position:
                out[row] = features[position[int(item)]]
        return feature_names(), out

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        covisit = self.generator_.covisit
        if covisit is None:
            raise ConfigurationError("this hybrid has no co-visitation links")
        block = covisit[np.asarray(item_idx)].toarray()
        block[block <= 0] = -np.inf
        return block.astype(np.float32)

    # ---- persistence --------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        attrs = self.log_.attributes
        state = self.generator_.state()
        h = self.history_
        state.update(
            {
                "history.indptr": h.indptr, "history.items": h.items, "history.times": h.times,
                "history.weights": h.weights, "history.watch_value": self.watch_value_,
                "attributes.category": attrs.category, "attributes.duration_s": attrs.duration_s,
                "attributes.created_ms": attrs.created_ms, "attributes.n_categories": np.asarray(attrs.n_categories),
                "as_of": np.asarray(self.as_of_),
            }
        )
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        self.history_ = UserHistory(
            state["history.indptr"], state["history.items"], state["history.times"], state["history.weights"]
        )
        attributes = ItemAttributes(
            state["attributes.category"], state["attributes.duration_s"], state["attributes.created_ms"],
            int(state["attributes.n_categories"]),
        )
        self.watch_value_ = state["history.watch_value"]
        self.as_of_ = int(state["as_of"])
        self._state_cache = state
        self._attributes = attributes

    def _save_parts(self, directory: Path) -> None:
        (directory / "ranker.txt").write_text(self.ranker_.to_text(), encoding="utf-8")
        (directory / "titles.json").write_text(json.dumps(self.titles_), encoding="utf-8")
        (directory / "ranker.json").write_text(
            json.dumps({"importance": self.ranker_.importance(), "candidate_recall": self.candidate_recall_}),
            encoding="utf-8",
        )
        self.generator_.save_models(directory / "sources")

    def _load_parts(self, directory: Path) -> None:
        text = (directory / "ranker.txt").read_text(encoding="utf-8")
        self.ranker_ = LambdaRanker.from_text(text, self.config.ranker)
        self.titles_ = json.loads((directory / "titles.json").read_text(encoding="utf-8"))
        self.candidate_recall_ = json.loads((directory / "ranker.json").read_text(encoding="utf-8"))["candidate_recall"]
        self.generator_ = CandidateGenerator.restore(self.config.candidates, self._state_cache, directory / "sources")
        del self._state_cache
        self.log_ = EventLog(self._history_frame(), len(self.history_.indptr) - 1, self._attributes)

    def _history_frame(self) -> pd.DataFrame:
        h = self.history_
        users = np.repeat(np.arange(len(h.indptr) - 1), np.diff(h.indptr))
        frame = pd.DataFrame({"user_idx": users, "item_idx": h.items, "timestamp": h.times, "weight": h.weights})
        watched = ~np.isnan(self.watch_value_)
        frame["event_type"] = np.where(watched, "watch", "other")
        frame["value"] = self.watch_value_
        return frame


def _after_newest(history: UserHistory, users: np.ndarray, default: np.ndarray) -> np.ndarray:
    """1 ms after each user's newest event in `history` (`default` for a user without one)."""
    out = default.astype(np.int64, copy=True)
    known = (users >= 0) & (np.diff(history.indptr)[np.maximum(users, 0)] > 0)
    out[known] = history.times[history.indptr[users[known] + 1] - 1] + 1
    return out
