"""What every item-neighbourhood model shares once its item×item weights are known.

item-kNN, RP3beta and sequence-kNN differ only in how they weigh one item's neighbours; all of them keep
each item's strongest `neighbours` weights in a sparse matrix, score a user as the sum of the weights from
the items in their history, and list an item's stored neighbours as its similar items.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recstack.models.base import C, Recommender

__all__ = ["NeighbourhoodRecommender", "top_neighbours"]


def top_neighbours(block: np.ndarray, k: int) -> sp.csr_matrix:
    """Keep each row's `k` largest positive entries of a dense block (rows × items), as float32 CSR."""
    n_rows, n_cols = block.shape
    k = min(k, n_cols)
    if k < n_cols:
        cols = np.argpartition(-block, k - 1, axis=1)[:, :k]
    else:
        cols = np.broadcast_to(np.arange(n_cols), block.shape)
    values = np.take_along_axis(block, cols, axis=1)
    keep = values > 0
    rows = np.broadcast_to(np.arange(n_rows)[:, None], cols.shape)
    return sp.csr_matrix((values[keep], (rows[keep], cols[keep])), shape=(n_rows, n_cols), dtype=np.float32)


class NeighbourhoodRecommender(Recommender[C]):
    """Row i of `similarity_` holds item i's kept neighbours; `user_items_` the users' weighted histories.

    `pull_from_rows` says which way weights flow when scoring: True scores `X · S` (row i's weights go out to
    its neighbours, as in a random walk), False scores `X · Sᵀ` (item j collects from the items it keeps as
    its own neighbours, as in classic item-kNN).
    """

    pull_from_rows: ClassVar[bool] = True

    similarity_: sp.csr_matrix
    user_items_: sp.csr_matrix

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        weights = self.similarity_ if self.pull_from_rows else self.similarity_.T
        return np.asarray((self.user_items_[np.asarray(user_idx)] @ weights).toarray(), dtype=np.float32)

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        block = self.similarity_[np.asarray(item_idx)].toarray()
        # Items sharing nothing are not neighbours; leave them out rather than list them at score 0.
        block[block <= 0] = -np.inf
        return block

    def _state(self) -> dict[str, Any]:
        return {"similarity": self.similarity_, "user_items": self.user_items_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.similarity_ = state["similarity"]
        self.user_items_ = state["user_items"]
