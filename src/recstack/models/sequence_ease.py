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

from recstack.errors import ConfigurationError
from recstack.models.base import TrainingData, Trial
from recstack.models.ease import EASE, EASEConfig
from recstack.models.sequence_knn import sequence_cooccurrence

__all__ = ["SequenceEASE", "SequenceEASEConfig"]


class SequenceEASEConfig(EASEConfig):
    """`window`: steps apart two items may be; `sequence_weight`: how much the windowed counts add to XᵀX;
    `time_scale_s`: weigh pairs by seconds apart rather than steps (see `sequence_cooccurrence`)."""

    window: int = Field(default=100, ge=1)
    sequence_weight: float = Field(default=1.0, ge=0.0)
    time_scale_s: float | None = Field(default=120.0, gt=0.0)


class SequenceEASE(EASE):
    """EASE on `XᵀX + sequence_weight · C`; scoring, similar items and persistence are EASE's."""

    name: ClassVar[str] = "sequence_ease"
    config_type: ClassVar[type[SequenceEASEConfig]] = SequenceEASEConfig  # type: ignore[assignment]
    config: SequenceEASEConfig  # type: ignore[assignment]

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        x = data.matrix
        users_per_item = np.diff(sp.csc_matrix(x).indptr)
        kept = np.flatnonzero(users_per_item >= cfg.min_item_users)
        if kept.size == 0:
            kept = np.arange(x.shape[1])
        if kept.size > cfg.max_items:
            raise ConfigurationError(
                f"SequenceEASE needs a dense {kept.size}×{kept.size} matrix; raise min_item_users or max_items "
                f"({cfg.max_items}) if that fits in memory, or use another model"
            )
        sub = x[:, kept]
        gram = np.asarray((sub.T @ sub).toarray(), dtype=np.float64)
        if cfg.sequence_weight > 0:
            cooccurrence = sequence_cooccurrence(data, cfg.window, cfg.time_scale_s)[kept][:, kept]
            gram += cfg.sequence_weight * cooccurrence.toarray()
        gram[np.diag_indices(kept.size)] += cfg.l2
        precision = np.linalg.inv(gram)
        weights = precision / -np.diag(precision)[None, :]
        weights[np.diag_indices(kept.size)] = 0.0
        self.weights_ = weights.astype(np.float32)
        self.kept_ = kept.astype(np.int64)
        self.user_items_ = sp.csr_matrix(sub, dtype=np.float32)

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "l2": trial.suggest_float("l2", 10.0, 5_000.0, log=True),
            "sequence_weight": trial.suggest_float("sequence_weight", 0.0, 3.0),
            "time_scale_s": trial.suggest_float("time_scale_s", 10.0, 3_600.0, log=True),
            "window": trial.suggest_int("window", 2, 100, log=True),
        }
