"""EASE whose item-item statistics also count items taken up close together in time.

EASE solves a ridge regression from the Gram matrix `G = XᵀX`. Here `G` gains `sequence_weight · C`,
where `C` is the windowed co-occurrence of `recstack.models.sequence_knn.sequence_cooccurrence`: two items
a user took up a few steps apart count as more related than two items the same user took up years apart.
With `sequence_weight = 0` this is EASE exactly. On MovieLens (protocol A) counting pairs by clock time
(`time_scale_s`, the default 120 s) beats counting them by steps: NDCG@10 0.491 against 0.487 (steps) and
0.483 (EASE) on 100K, 0.418 against 0.409 and 0.397 on latest-small, where 43 % and 13 % of consecutive
ratings share a second and their step order is arbitrary. Same memory rule as EASE (dense inverse).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recstack.models.base import TrainingData, Trial
from recstack.models.ease import EASE, EASEConfig
from recstack.models.sequence_knn import sequence_cooccurrence

__all__ = ["SequenceEASE", "SequenceEASEConfig"]


class SequenceEASEConfig(EASEConfig):
    """`window`: steps apart two items may be; `sequence_weight`: how much the windowed counts add to XᵀX;
        `time_scale_s`: weigh pairs by seconds apart rather than steps (see `sequence_cooccurrence`). The penalty
    defaults differ from EASE's (λ = 8 × the mean `G_ii`, popularity exponent 0.5): best on validation splits
    of both MovieLens sets."""

    l2: float = Field(default=8.0, gt=0.0)
    l2_relative: bool = True
    l2_popularity_exponent: float = Field(default=0.5, ge=0.0, le=2.0)
    window: int = Field(default=100, ge=1)
    sequence_weight: float = Field(default=1.0, ge=0.0)
    time_scale_s: float | None = Field(default=120.0, gt=0.0)


class SequenceEASE(EASE):
    """EASE on `XᵀX + sequence_weight · C`; scoring, similar items and persistence are EASE's."""

    name: ClassVar[str] = "sequence_ease"
    config_type: ClassVar[type[SequenceEASEConfig]] = SequenceEASEConfig  # type: ignore[assignment]
    config: SequenceEASEConfig  # type: ignore[assignment]
    needs_timestamps: ClassVar[bool] = True
    subsumes: ClassVar[frozenset[str]] = frozenset({"ease"})  # sequence_weight 0 is EASE, and tuning may pick it

    def _gram(self, data: TrainingData, sub: sp.csr_matrix, kept: np.ndarray) -> np.ndarray:
        gram = super()._gram(data, sub, kept)
        if self.config.sequence_weight > 0:
            cooccurrence = sequence_cooccurrence(data, self.config.window, self.config.time_scale_s)[kept][:, kept]
            gram += self.config.sequence_weight * cooccurrence.toarray()
        return gram

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "l2": trial.suggest_float("l2", 0.5, 100.0, log=True),
            "l2_popularity_exponent": trial.suggest_float("l2_popularity_exponent", 0.0, 1.0),
            "sequence_weight": trial.suggest_float("sequence_weight", 0.0, 3.0),
            "time_scale_s": trial.suggest_float("time_scale_s", 10.0, 3_600.0, log=True),
            "window": trial.suggest_int("window", 2, 100, log=True),
        }
