"""Item-based k-nearest neighbours with cosine or BM25-weighted similarity.

Similarities are computed in blocks of items (a block of rows of XᵀX at a time), and only each item's
`neighbours` most similar items are kept, so memory is O(items × neighbours) rather than O(items²).
A user's score for item j sums the similarities of j's neighbours the user interacted with, weighted by the
interaction strength: `score = X · Sᵀ`, where row j of S holds j's neighbours.

- cosine: `sim(i, j) = x_i·x_j / (‖x_i‖‖x_j‖ + shrinkage)` — the shrinkage term damps similarities
  supported by few co-occurrences.
- bm25: items are documents and users are terms; each (user, item) weight is BM25-saturated, users who
  interacted with everything get a low idf, and `sim(i, j) = w_i·w_j` (as implicit's BM25Recommender).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recstack.models._neighbours import NeighbourhoodRecommender, top_neighbours
from recstack.models.base import RecommenderConfig, TrainingData, Trial

__all__ = ["ItemKNN", "ItemKNNConfig", "bm25_weight", "top_neighbours"]

_BLOCK_CELLS = 1 << 23


class ItemKNNConfig(RecommenderConfig):
    similarity: Literal["cosine", "bm25"] = "cosine"
    neighbours: int = Field(default=100, ge=1)
    shrinkage: float = Field(default=10.0, ge=0.0)
    bm25_k1: float = Field(default=1.2, gt=0.0)
    bm25_b: float = Field(default=0.75, ge=0.0, le=1.0)


def bm25_weight(matrix: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """BM25 weights of a users×items matrix with items as documents and users as terms.

    `w = x (k1 + 1) / (x + k1 (1 - b + b · len_item / mean_len)) · log(n_items / df_user)`, with len_item
    the item's total weight and df_user the number of items the user touched. Returns float32 CSR.
    """
    x = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    n_items = x.shape[1]
    df = np.diff(x.indptr).astype(np.float64)
    idf = np.log(n_items / np.maximum(df, 1.0)) + 1e-6
    length = np.asarray(x.sum(axis=0)).ravel()
    norm = (1.0 - b) + b * length / max(length.mean(), 1e-12)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    x.data = x.data * (k1 + 1.0) / (x.data + k1 * norm[x.indices]) * idf[rows]
    return x.astype(np.float32)


class ItemKNN(NeighbourhoodRecommender[ItemKNNConfig]):
    """Item-item neighbourhood model; `similar_items` returns the stored neighbours."""

    name: ClassVar[str] = "item_knn"
    config_type: ClassVar[type[ItemKNNConfig]] = ItemKNNConfig
    pull_from_rows: ClassVar[bool] = False

    def _fit(self, data: TrainingData) -> None:
        x = data.matrix.astype(np.float32)
        cfg = self.config
        if cfg.similarity == "bm25":
            left = bm25_weight(x, cfg.bm25_k1, cfg.bm25_b)
            right, denominator = left, None
        else:
            left = right = x
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
            denominator = norms
        left_t = sp.csr_matrix(left.T)
        n_items = x.shape[1]
        step = max(1, _BLOCK_CELLS // max(n_items, 1))
        blocks = []
        for start in range(0, n_items, step):
            stop = min(start + step, n_items)
            block = (left_t[start:stop] @ right).toarray()
            if denominator is not None:
                block /= denominator[start:stop, None] * denominator[None, :] + cfg.shrinkage + 1e-12
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0
            blocks.append(top_neighbours(block, cfg.neighbours))
        self.similarity_ = sp.csr_matrix(sp.vstack(blocks, format="csr"))
        self.user_items_ = x

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "similarity": trial.suggest_categorical("similarity", ["cosine", "bm25"]),
            "neighbours": trial.suggest_int("neighbours", 10, 1000, log=True),
            "shrinkage": trial.suggest_float("shrinkage", 0.0, 200.0),
            "bm25_k1": trial.suggest_float("bm25_k1", 0.2, 3.0),
            "bm25_b": trial.suggest_float("bm25_b", 0.0, 1.0),
        }
