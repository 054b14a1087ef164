"""The learned ranker: LightGBM LambdaRank over candidates × features, with graded labels.

Labels grade what a user did next with a candidate (`graded_labels`): share 4 > like 3 > a long watch 2 >
a watch 1; a skip, a bounce (a watch below `bounce_fraction` of the item) or no interaction at all is 0. Where
the data are ratings, a rating at or above `rating_threshold` is 2 and any other rating 1 (a rating means
the user picked the item), and other positive events (view, click, purchase) take their weight's grade.
The boosters are saved as LightGBM's own model text, never pickled.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recstack.errors import ConfigurationError, MissingExtra

try:
    import lightgbm as lgb
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("lightgbm", "models") from exc

__all__ = ["LambdaRanker", "RankerConfig", "graded_labels"]

logger = logging.getLogger(__name__)

GRADES: Final = {"share": 4, "purchase": 4, "like": 3, "watch": 1, "view": 1, "click": 1, "rating": 1, "skip": 0}


def graded_labels(
    events: pd.DataFrame,
    duration_s: np.ndarray | None,
    long_watch_fraction: float = 0.5,
    bounce_fraction: float = 0.05,
    rating_threshold: float = 3.5,
) -> np.ndarray:
    """A grade per event row (int64, 0–4); `events` has `item_idx` and optional `event_type`, `value`.

    Without `event_type` every row is a `rating` when it has a value, else a `view`. `duration_s` (model item
    order) lets a watch's value (seconds) become a fraction; without it a watch is 1.
    """
    n = len(events)
    kinds = events["event_type"].astype(str).to_numpy() if "event_type" in events else None
    value = np.full(n, np.nan)
    if "value" in events:
        value = pd.to_numeric(events["value"], errors="coerce").to_numpy(np.float64)
    if kinds is None:
        kinds = np.where(np.isnan(value), "view", "rating")
    grade = np.array([GRADES.get(k, 1) for k in kinds], dtype=np.int64)
    rating = kinds == "rating"
    grade[rating & (value >= rating_threshold)] = 2
    watch = kinds == "watch"
    if duration_s is not None and watch.any():
        duration = duration_s[events["item_idx"].to_numpy(np.int64)]
        fraction = np.divide(value, duration, out=np.full(n, np.nan), where=duration > 0)
        grade[watch & (fraction >= long_watch_fraction)] = 2
        grade[watch & (fraction < bounce_fraction)] = 0
    return grade


class RankerConfig(BaseModel):
    """LightGBM LambdaRank settings; `n_estimators` is a ceiling, held-out queries decide how many trees.

    Small leaves with many examples each: with 31 leaves and 20 examples the held-out NDCG peaked after
    10–35 trees and the ranker fell below its best source on the synthetic platform (0.9955×); these
    settings reached 1.015× there (1,200 users, protocol T).

    `folds` ≥ 2: the queries are split into that many folds, one booster is trained per fold with the others'
    queries, and the number of trees is where the NDCG averaged over the folds peaks; one booster of that
    many trees is then fitted on every query (or, `average_folds`, the fold boosters' mean is the score).
    Early stopping on one 15 % hold-out (`folds` = 1) stopped anywhere between 6 and 164 trees from one seed
    to the next and moved test NDCG by 0.007; three folds chose 125–130 trees (BENCHMARKS.md, issue 9).
    Averaging the three fold boosters scored best, but tripled the ranker's cost past 10 ms p99 for 500
    candidates, so it is opt-in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_estimators: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.05, gt=0.0)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=200, ge=1)
    feature_fraction: float = Field(default=0.7, gt=0.0, le=1.0)
    early_stopping_rounds: int = Field(default=60, ge=1)
    eval_at: int = Field(default=10, ge=1)
    folds: int = Field(default=3, ge=1, le=10)
    average_folds: bool = False
    """With `folds` ≥ 2: score with the mean of the fold boosters (better and steadier test NDCG, `folds`
    times the trees per request) instead of one booster refitted on every query with the folds' tree count."""
    validation_share: float = Field(default=0.15, gt=0.0, lt=1.0)
    """The held-out share of queries when `folds` = 1."""
    num_threads: int = Field(default=2, ge=1)
    seed: int = 42
    label_gain: tuple[float, ...] = (0.0, 1.0, 3.0, 7.0, 15.0)
    """NDCG gain of grades 0–4 (LightGBM's default 2^g − 1)."""


_SEPARATOR: Final = "\n# recstack: next fold booster\n"


class LambdaRanker:
    """LightGBM LambdaRank boosters over named features (one, or one per fold, averaged)."""

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        self.boosters: list[lgb.Booster] = []
        self.feature_names: list[str] = []
        self.queries = 0

    @property
    def is_fitted(self) -> bool:
        return bool(self.boosters)

    @property
    def num_trees(self) -> int:
        """Trees per booster."""
        return int(self.boosters[0].num_trees()) if self.boosters else 0

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray, names: list[str]) -> LambdaRanker:
        """Train on rows grouped by query: `groups` holds each row's query id, rows of a query contiguous.

        Queries without a positive label teach LambdaRank nothing and are dropped; the rest are split into
        folds (or one hold-out) that decide the number of trees.
        """
        cfg = self.config
        _, starts, sizes = np.unique(groups, return_index=True, return_counts=True)
        order = np.argsort(starts)
        starts, sizes = starts[order], sizes[order]
        best = np.maximum.reduceat(labels, starts) if len(labels) else np.empty(0)
        useful = np.flatnonzero(best > 0)
        if not len(useful):
            raise ConfigurationError("the ranker has no query with a positive label to learn from")
        rng = np.random.default_rng(cfg.seed)
        params: dict[str, Any] = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [cfg.eval_at],
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction,
            "num_threads": cfg.num_threads,
            "seed": cfg.seed,
            "verbosity": -1,
            "label_gain": list(cfg.label_gain),
        }
        row_start = np.concatenate([[0], np.cumsum(sizes[useful])])
        rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts[useful], sizes[useful], strict=True)])
        full = lgb.Dataset(
            features[rows], labels[rows], group=sizes[useful], feature_name=names, params=params,
            free_raw_data=True,
        ).construct()
        self.feature_names = list(names)
        self.queries = len(useful)
        folds = min(cfg.folds, len(useful))
        if folds >= 2:
            fold_of = rng.permutation(len(useful)) % folds
            splits = []
            for k in range(folds):
                held = np.flatnonzero(fold_of == k)
                kept = np.flatnonzero(fold_of != k)
                splits.append((_rows(kept, row_start), _rows(held, row_start)))
            result: dict[str, Any] = lgb.cv(  # type: ignore[assignment]
                params, full, cfg.n_estimators, folds=splits,
                callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)], return_cvbooster=True,
            )
            trees = len(result[f"valid ndcg@{cfg.eval_at}-mean"])
            if cfg.average_folds:
                self.boosters = [
                    lgb.Booster(model_str=b.model_to_string(num_iteration=trees)) for b in result["cvbooster"].boosters
                ]
            else:
                self.boosters = [lgb.train(params, full, trees)]
        else:
            out = rng.random(len(useful)) < cfg.validation_share
            train = full.subset(_rows(np.flatnonzero(~out), row_start).tolist())
            valid_sets: list[lgb.Dataset] = []
            callbacks: list[Any] = []
            if out.any():
                valid_sets = [full.subset(_rows(np.flatnonzero(out), row_start).tolist())]
                callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
            booster = lgb.train(params, train, cfg.n_estimators, valid_sets=valid_sets, callbacks=callbacks)
            text = booster.model_to_string(num_iteration=booster.best_iteration or None)
            self.boosters = [lgb.Booster(model_str=text)]
        logger.info("ranker: %d booster(s) of %d trees on %d queries (%d rows)",
                    len(self.boosters), self.num_trees, len(useful), len(rows))
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores (float64, higher = better) for rows of `features`; one thread, for request latency."""
        if not self.boosters:
            raise ConfigurationError("the ranker is not trained")
        if not len(features):
            return np.empty(0)
        scores = [np.asarray(b.predict(features, num_threads=1), dtype=np.float64) for b in self.boosters]
        return np.mean(scores, axis=0) if len(scores) > 1 else scores[0]

    def importance(self) -> dict[str, float]:
        """Total gain per feature (what the ranker leans on), largest first."""
        if not self.boosters:
            return {}
        gains = np.sum([b.feature_importance(importance_type="gain") for b in self.boosters], axis=0)
        pairs = sorted(zip(self.feature_names, gains.tolist(), strict=True), key=lambda p: -p[1])
        return {name: float(g) for name, g in pairs}

    def to_text(self) -> str:
        if not self.boosters:
            raise ConfigurationError("the ranker is not trained")
        return _SEPARATOR.join(str(b.model_to_string()) for b in self.boosters)

    @classmethod
    def from_text(cls, text: str, config: RankerConfig | None = None) -> LambdaRanker:
        ranker = cls(config)
        ranker.boosters = [lgb.Booster(model_str=part) for part in text.split(_SEPARATOR)]
        ranker.feature_names = list(ranker.boosters[0].feature_name())
        return ranker


def _rows(queries: np.ndarray, row_start: np.ndarray) -> np.ndarray:
    """Row positions of `queries` (indices into the useful queries) in the training matrix, in order."""
    return np.concatenate([np.arange(row_start[q], row_start[q + 1]) for q in queries])
