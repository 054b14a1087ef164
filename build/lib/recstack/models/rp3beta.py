"""RP3beta (Paudel et al., 2017; Dacrema et al., 2019): a three-step random walk user → item → user → item,
re-weighted against popularity.

With `P_ui` the user→item transition matrix (rows of X normalised to sum 1) and `P_iu` the item→user one,
the item-item matrix is `W = (P_iu · P_ui)^α / pop_j^β` (element-wise power, column j divided by item j's
popularity to the β), keeping each item's `neighbours` largest entries. Scores are `X_u · W`. `α` sharpens
or flattens transition probabilities, `β` pushes down items that are reached only because they are popular.
Sparse throughout: memory is O(items × neighbours), so it scales where EASE's dense inverse cannot.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recstack.models._neighbours import NeighbourhoodRecommender, top_neighbours
from recstack.models.base import RecommenderConfig, TrainingData, Trial

__all__ = ["RP3beta", "RP3betaConfig"]

_BLOCK_CELLS = 1 << 23


class RP3betaConfig(RecommenderConfig):
    """`alpha` is the transition exponent, `beta` the popularity penalty, `neighbours` the kept similarities
    per item; `binary` walks on the interaction pattern rather than the strengths."""

    alpha: float = Field(default=0.8, gt=0.0)
    beta: float = Field(default=0.3, ge=0.0)
    neighbours: int = Field(default=200, ge=1)
    binary: bool = True


def _row_normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    inverse = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
    return sp.csr_matrix(sp.diags(inverse) @ matrix)


class RP3beta(NeighbourhoodRecommender[RP3betaConfig]):
    """Popularity-penalised random-walk item-item model; `similar_items` returns the kept walk weights."""

    name: ClassVar[str] = "rp3beta"
    config_type: ClassVar[type[RP3betaConfig]] = RP3betaConfig

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        x = sp.csr_matrix(data.matrix, dtype=np.float64)
        if cfg.binary:
            x.data = np.ones_like(x.data)
        p_ui = _row_normalised(x)
        p_iu = _row_normalised(sp.csr_matrix(x.T))
        popularity = np.diff(sp.csc_matrix(x).indptr).astype(np.float64)
        penalty = np.power(np.maximum(popularity, 1.0), -cfg.beta)
        n_items = x.shape[1]
        step = max(1, _BLOCK_CELLS // max(n_items, 1))
        blocks = []
        for start in range(0, n_items, step):
            stop = min(start + step, n_items)
            block = (p_iu[start:stop] @ p_ui).toarray()
            np.power(block, cfg.alpha, out=block)
            block *= penalty[None, :]
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0
            blocks.append(top_neighbours(block, cfg.neighbours))
        self.similarity_ = sp.csr_matrix(sp.vstack(blocks, format="csr"), dtype=np.float32)
        self.user_items_ = sp.csr_matrix(x, dtype=np.float32)

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "alpha": trial.suggest_float("alpha", 0.2, 2.0),
            "beta": trial.suggest_float("beta", 0.0, 1.0),
            "neighbours": trial.suggest_int("neighbours", 20, 1000, log=True),
        }
