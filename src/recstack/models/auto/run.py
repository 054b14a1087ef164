"""`AutoConfig`, and the state one `auto` fit shares between its stages (search, blend, ranker).

`AutoRun` holds the clock of the time budget, the progress callback, the weighting every member gets and
the validation protocol chosen from the data: with a timestamp on every interaction, each user's newest
interactions of the training part are held out (a production recommender predicts the future); without,
a per-user random share, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from recstack.evaluation.metrics import ndcg
from recstack.evaluation.splits import Split, has_timestamps
from recstack.evaluation.tuning import validation_split
from recstack.models import catalog
from recstack.models.base import RecommenderConfig

__all__ = ["AutoConfig", "AutoRun", "ProgressCallback", "ValidationProtocol"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]
"""Called with a stage description and the fraction of the time budget used so far (0–1)."""

ValidationProtocol = Literal["auto", "random", "temporal"]


class AutoConfig(RecommenderConfig):
    """`time_budget_s` bounds the whole `fit` (wall clock); the rest rarely needs changing.

    `validation`: `auto` validates temporally when every interaction has a timestamp, at random otherwise;
    `random` or `temporal` force one. `rerank_margin` below 0 keeps a ranker that loses (tests use it).
    """

    time_budget_s: float = Field(default=300.0, gt=0.0)
    seed: int = 42
    candidates: list[str] = Field(
        default_factory=lambda: [
            "sequence_ease", "ease", "pure_svd", "als", "rp3beta", "sequence_knn", "item_knn", "hybrid",
        ],
        min_length=1,
    )
    validation: ValidationProtocol = "auto"
    tuning_ratio: float = Field(default=0.75, gt=0.0, lt=1.0)
    validation_ratio: float = Field(default=0.9, gt=0.0, lt=1.0)
    tuning_share: float = Field(default=0.45, gt=0.0, lt=1.0)
    max_trials: int = Field(default=40, ge=1)
    confirm_folds: int = Field(default=2, ge=0)
    confirm_margin: float = Field(default=0.005, ge=0.0)
    partner_share: float = Field(default=0.3, ge=0.0, lt=1.0)
    partner_cells: int = Field(default=1 << 26, ge=1)
    keep_within: float = Field(default=0.85, gt=0.0, le=1.0)
    rerank: bool = False
    rerank_margin: float = Field(default=0.005, ge=-1.0)
    folds: int = Field(default=5, ge=1)
    blend_min_gain: float = Field(default=0.005, ge=0.0)
    pool_size: int = Field(default=100, ge=10)
    max_validation_users: int = Field(default=4000, ge=10)
    memory_limit_mb: float = Field(default=4096.0, gt=0.0)
    k: int = Field(default=10, ge=1)


@dataclass
class AutoRun:
    """One fit's budget clock, progress, fixed constructor keywords and validation protocol."""

    config: AutoConfig
    temporal: bool
    progress: ProgressCallback | None = None
    started: float = field(default_factory=time.perf_counter)
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, config: AutoConfig, frame: pd.DataFrame, progress: ProgressCallback | None) -> AutoRun:
        temporal = config.validation == "temporal" or (config.validation == "auto" and has_timestamps(frame))
        return cls(config, temporal, progress)

    @property
    def protocol(self) -> str:
        return "temporal" if self.temporal else "random"

    def step(self, message: str) -> None:
        used = (time.perf_counter() - self.started) / self.config.time_budget_s
        logger.info("auto: %s (%.0f%% of the time budget used)", message, 100 * used)
        if self.progress is not None:
            self.progress(message, min(used, 1.0))

    def left(self) -> float:
        """Seconds of the budget left (negative once it is spent)."""
        return self.config.time_budget_s - (time.perf_counter() - self.started)

    def split(self, frame: pd.DataFrame, ratio: float, seed: int = 1) -> Split:
        """A validation split of the training data under this fit's protocol."""
        return validation_split(frame, ratio=ratio, seed=seed, temporal=self.temporal)

    def holdout_ndcg(self, name: str, params: dict[str, Any], split: Split, items: pd.DataFrame | None) -> float:
        """NDCG@k of `name(**params)` fitted on the split's fitting part, on its held-out part."""
        fit_part, held_out = split
        model = catalog.create(name, **params).fit(fit_part, items=items)
        k = self.config.k
        return ndcg(model.recommend(list(pd.unique(held_out["user_id"])), k), held_out, k)
