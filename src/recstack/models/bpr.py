"""Bayesian personalised ranking (Rendle et al., 2009) by the `implicit` library's CPU trainer.

BPR learns factors so that, for each user, items they interacted with score above sampled items they did
not. implicit appends an item-bias column to the item factors (and a column of ones to the user factors),
so `user_factors_ @ item_factors_.T` is still the score.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from recstack.errors import MissingExtra
from recstack.models._factors import FactorRecommender
from recstack.models.base import RecommenderConfig, TrainingData, Trial

try:
    from implicit.cpu.bpr import BayesianPersonalizedRanking
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("implicit", "models") from exc

__all__ = ["BPR", "BPRConfig"]


class BPRConfig(RecommenderConfig):
    """SGD over sampled (user, positive, negative) triples; `iterations` are passes over the positives."""

    factors: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.01, gt=0.0)
    regularization: float = Field(default=0.05, ge=0.0)
    iterations: int = Field(default=100, ge=1)
    random_state: int = 42
    num_threads: int = Field(default=0, ge=0)


class BPR(FactorRecommender[BPRConfig]):
    """Pairwise-ranking matrix factorisation (implicit's BayesianPersonalizedRanking)."""

    name: ClassVar[str] = "bpr"
    config_type: ClassVar[type[BPRConfig]] = BPRConfig

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        make = functools.partial(
            BayesianPersonalizedRanking,
            factors=cfg.factors,
            learning_rate=cfg.learning_rate,
            regularization=cfg.regularization,
            iterations=cfg.iterations,
            random_state=cfg.random_state,
            num_threads=cfg.num_threads,
            dtype=np.float32,
        )
        self._fit_implicit(make, data.matrix)

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "factors": trial.suggest_int("factors", 16, 256, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.2, log=True),
            "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
            "iterations": trial.suggest_int("iterations", 20, 300, log=True),
        }
