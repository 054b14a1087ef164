"""Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren & Volinsky, 2008),
trained by the `implicit` library's CPU solver.

Each (user, item) strength w becomes a confidence `alpha · w` that the user prefers the item; every
unobserved pair is a low-confidence zero. Scores are inner products of the learned factors.
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
    from implicit.cpu.als import AlternatingLeastSquares
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("implicit", "models") from exc

__all__ = ["ALS", "ALSConfig"]


class ALSConfig(RecommenderConfig):
    """`alpha` scales strengths into confidences; `num_threads=0` uses every core."""

    factors: int = Field(default=32, ge=1)
    regularization: float = Field(default=0.05, ge=0.0)
    alpha: float = Field(default=2.0, gt=0.0)
    iterations: int = Field(default=15, ge=1)
    random_state: int = 42
    num_threads: int = Field(default=0, ge=0)


class ALS(FactorRecommender[ALSConfig]):
    """Weighted matrix factorisation for implicit feedback (implicit's AlternatingLeastSquares)."""

    name: ClassVar[str] = "als"
    config_type: ClassVar[type[ALSConfig]] = ALSConfig

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        make = functools.partial(
            AlternatingLeastSquares,
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
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
            "regularization": trial.suggest_float("regularization", 1e-3, 10.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 50.0, log=True),
            "iterations": trial.suggest_int("iterations", 5, 30),
        }
