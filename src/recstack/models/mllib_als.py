"""Implicit-feedback ALS trained by Spark MLlib (`recstack[spark]`), for data beyond one machine.

Scoring, persistence and serving are those of every latent-factor model; only training differs: it runs
on the SparkSession of the calling process (`recstack.processing.spark.session`), or a local one when
there is none. `recstack.processing.spark.als.fit_spark` trains one straight from a Spark frame.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recstack.models._factors import FactorRecommender
from recstack.models.base import RecommenderConfig, TrainingData, Trial
from recstack.processing.matrix import Vocabulary

__all__ = ["MLlibALS", "MLlibALSConfig"]


class MLlibALSConfig(RecommenderConfig):
    """MLlib's ALS parameters. `regularization` is `regParam`, scaled per user and item by its number of
    pairs (unlike `implicit`'s), so its default is smaller than `ALS`'s for a like fit; `blocks` is the
    number of user and item blocks MLlib partitions the factors into."""

    factors: int = Field(default=32, ge=1)
    regularization: float = Field(default=0.01, ge=0.0)
    alpha: float = Field(default=2.0, gt=0.0)
    iterations: int = Field(default=15, ge=1)
    random_state: int = 42
    blocks: int = Field(default=4, ge=1)


class MLlibALS(FactorRecommender[MLlibALSConfig]):
    """Weighted matrix factorisation for implicit feedback, trained by Spark MLlib."""

    name: ClassVar[str] = "als_spark"
    config_type: ClassVar[type[MLlibALSConfig]] = MLlibALSConfig

    def _fit(self, data: TrainingData) -> None:
        from recstack.processing.spark.als import train_factors
        from recstack.processing.spark.session import spark_session

        spark = spark_session()
        coo = data.matrix.tocoo()
        frame = pd.DataFrame({"user_idx": coo.row.astype(np.int32), "item_idx": coo.col.astype(np.int32),
                              "weight": coo.data.astype(np.float64)})
        pairs = spark.createDataFrame(frame, "user_idx int, item_idx int, weight double")
        self.user_factors_, self.item_factors_ = train_factors(pairs, len(data.users), len(data.items), self.config)

    def adopt(
        self, users: Vocabulary, items: Vocabulary, seen: sp.csr_matrix, user_factors: np.ndarray,
        item_factors: np.ndarray,
    ) -> None:
        """Take state trained elsewhere (by `fit_spark`): vocabularies, seen pattern and factors."""
        started = time.perf_counter()
        self.users_, self.items_, self.seen_ = users, items, seen
        self.user_factors_ = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.weighting_ = self.config.weighting
        self.fit_seconds_ = time.perf_counter() - started

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "factors": trial.suggest_int("factors", 16, 256, log=True),
            "regularization": trial.suggest_float("regularization", 1e-3, 1.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 50.0, log=True),
        }
