"""EASE (Steck, 2019): a closed-form linear item-item autoencoder.

`B = argmin ‖X − XB‖² + λ‖B‖²` subject to `diag(B) = 0` has the solution `P = (XᵀX + λI)⁻¹`,
`B_ij = −P_ij / P_jj` (and 0 on the diagonal). Scores are `X_u · B`.

The inversion is O(n³) in the number of items, so only items with at least `min_item_users` training users
take part: an item two people touched carries almost no co-occurrence signal, and dropping such items
changed MovieLens NDCG@10 by less than 0.001 while cutting the item count (and so the cube) by half or
more. Items left out score 0. Beyond `max_items` remaining items EASE refuses rather than exhaust memory.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recstack.errors import ConfigurationError
from recstack.models.base import Recommender, RecommenderConfig, TrainingData, Trial

__all__ = ["EASE", "EASEConfig"]

logger = logging.getLogger(__name__)


class EASEConfig(RecommenderConfig):
    """`l2` is λ, the ridge penalty: larger values shrink item-item weights and lean toward popular items.
    `min_item_users` is the number of distinct training users an item needs to take part."""

    l2: float = Field(default=500.0, gt=0.0)
    min_item_users: int = Field(default=3, ge=1)
    max_items: int = Field(default=40_000, ge=1)


class EASE(Recommender[EASEConfig]):
    """Embarrassingly shallow autoencoder; `similar_items` ranks by the learned item-item weights."""

    name: ClassVar[str] = "ease"
    config_type: ClassVar[type[EASEConfig]] = EASEConfig

    weights_: np.ndarray
    kept_: np.ndarray
    user_items_: sp.csr_matrix

    def _fit(self, data: TrainingData) -> None:
        x = data.matrix
        users_per_item = np.diff(sp.csc_matrix(x).indptr)
        kept = np.flatnonzero(users_per_item >= self.config.min_item_users)
        if kept.size == 0:
            kept = np.arange(x.shape[1])
        if kept.size > self.config.max_items:
            raise ConfigurationError(
                f"EASE needs a dense {kept.size}×{kept.size} matrix; raise min_item_users or max_items "
                f"({self.config.max_items}) if that fits in memory, or use another model"
            )
        logger.debug("EASE: %d of %d items have enough users", kept.size, x.shape[1])
        sub = x[:, kept]
        gram = np.asarray((sub.T @ sub).toarray(), dtype=np.float64)
        gram[np.diag_indices(kept.size)] += self.config.l2
        precision = np.linalg.inv(gram)
        weights = precision / -np.diag(precision)[None, :]
        weights[np.diag_indices(kept.size)] = 0.0
        self.weights_ = weights.astype(np.float32)
        self.kept_ = kept.astype(np.int64)
        self.user_items_ = sp.csr_matrix(sub, dtype=np.float32)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        rows = np.asarray(user_idx)
        out = np.zeros((len(rows), len(self.items)), dtype=np.float32)
        out[:, self.kept_] = np.asarray(self.user_items_[rows] @ self.weights_)
        return out

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        out = np.full((len(item_idx), len(self.items)), -np.inf, dtype=np.float32)
        position = np.full(len(self.items), -1, dtype=np.int64)
        position[self.kept_] = np.arange(self.kept_.size)
        rows = position[np.asarray(item_idx)]
        known = rows >= 0
        block = self.weights_[rows[known]]
        # A zero weight means no learned relation; leave those out rather than list them at score 0.
        out[np.ix_(np.flatnonzero(known), self.kept_)] = np.where(block != 0, block, -np.inf)
        return out

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {"l2": trial.suggest_float("l2", 1.0, 10_000.0, log=True)}

    def _state(self) -> dict[str, Any]:
        return {"weights": self.weights_, "kept": self.kept_, "user_items": self.user_items_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.weights_ = state["weights"]
        self.kept_ = state["kept"]
        self.user_items_ = state["user_items"]
