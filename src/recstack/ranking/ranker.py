"""The learned ranker: LightGBM LambdaRank over candidates × features, with graded labels.

Labels grade what a user did next with a candidate (`graded_labels`): share 4 > like 3 > a long watch 2 >
a watch 1; a skip, a bounce (a watch below `bounce_fraction` of the item) or no interaction at all is 0. Where
the data are ratings, a rating at or above `rating_threshold` is 2 and any other rating 1 (a rating means
the user picked the item), and other positive events (view, click, purchase) take their weight's grade.
The booster is saved as LightGBM's own model text, never pickled.
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
    """LightGBM LambdaRank settings; `n_estimators` is a ceiling, early stopping on held-out users decides.

    Small leaves with many examples each: with 31 leaves and 20 examples the held-out NDCG peaked after
    10–35 trees and the ranker fell below its best source on the synthetic platform (0.9955×); these
    settings reached 1.015× there (1,200 users, protocol T)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_estimators: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.05, gt=0.0)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=200, ge=1)
    feature_fraction: float = Field(default=0.7, gt=0.0, le=1.0)
    early_stopping_rounds: int = Field(default=60, ge=1)
    eval_at: int = Field(default=10, ge=1)
    validation_share: float = Field(default=0.15, gt=0.0, lt=1.0)
    num_threads: int = Field(default=2, ge=1)
    seed: int = 42
    label_gain: tuple[float, ...] = (0.0, 1.0, 3.0, 7.0, 15.0)
    """NDCG gain of grades 0–4 (LightGBM's default 2^g − 1)."""


class LambdaRanker:
    """A LightGBM LambdaRank booster over named features."""

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        self.booster: lgb.Booster | None = None
        self.feature_names: list[str] = []

    @property
    def is_fitted(self) -> bool:
        return self.booster is not None

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray, names: list[str]) -> LambdaRanker:
        """Train on rows grouped by query: `groups` holds each row's query id, rows of a query contiguous.

        Queries without a positive label teach LambdaRank nothing and are dropped; a share of the queries is
        held out for early stopping.
        """
        cfg = self.config
        _, starts, sizes = np.unique(groups, return_index=True, return_counts=True)
        order = np.argsort(starts)
        starts, sizes = starts[order], sizes[order]
        best = np.maximum.reduceat(labels, starts) if len(labels) else np.empty(0)
        useful = best > 0
        if not useful.any():
            raise ConfigurationError("the ranker has no query with a positive label to learn from")
        rng = np.random.default_rng(cfg.seed)
        held = rng.random(len(starts)) < cfg.validation_share
        sets = []
        for part in (useful & ~held, useful & held):
            rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts[part], sizes[part], strict=True)])
            sets.append((features[rows], labels[rows], sizes[part]))
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
        train = lgb.Dataset(sets[0][0], sets[0][1], group=sets[0][2], feature_name=names, free_raw_data=True)
        callbacks: list[Any] = []
        valid_sets = []
        if len(sets[1][2]):
            valid_sets = [lgb.Dataset(sets[1][0], sets[1][1], group=sets[1][2], reference=train)]
            callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        self.booster = lgb.train(params, train, cfg.n_estimators, valid_sets=valid_sets, callbacks=callbacks)
        self.feature_names = list(names)
        logger.info(
            "ranker: %d trees on %d queries (%d rows), %d held out",
            self.booster.num_trees(), len(sets[0][2]), len(sets[0][1]), len(sets[1][2]),
        )
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores (float64, higher = better) for rows of `features`; one thread, for request latency."""
        if self.booster is None:
            raise ConfigurationError("the ranker is not trained")
        if not len(features):
            return np.empty(0)
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float64)

    def importance(self) -> dict[str, float]:
        """Total gain per feature (what the ranker leans on), largest first."""
        if self.booster is None:
            return {}
        gains = self.booster.feature_importance(importance_type="gain")
        pairs = sorted(zip(self.feature_names, gains.tolist(), strict=True), key=lambda p: -p[1])
        return {name: float(g) for name, g in pairs}

    def to_text(self) -> str:
        if self.booster is None:
            raise ConfigurationError("the ranker is not trained")
        return str(self.booster.model_to_string())

    @classmethod
    def from_text(cls, text: str, config: RankerConfig | None = None) -> LambdaRanker:
        ranker = cls(config)
        ranker.booster = lgb.Booster(model_str=text)
        ranker.feature_names = list(ranker.booster.feature_name())
        return ranker
