"""Shared plumbing for latent-factor models: scores are inner products of user and item vectors.

A subclass's `_fit` sets `user_factors_` (users × d) and `item_factors_` (items × d); scoring, embeddings,
similar items (cosine of item vectors) and persistence come from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from recstack.models.base import Recommender, RecommenderConfig

__all__ = ["FactorRecommender", "profile_factors", "single_threaded_blas"]

C = TypeVar("C", bound=RecommenderConfig)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS threads fight with implicit's own OpenMP threads; pin BLAS to one, as implicit asks (it checks
    when a model is constructed and warns "OpenBLAS is configured to use N threads" otherwise)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class FactorRecommender(Recommender[C]):
    """A model whose score is `user_factors_ @ item_factors_.T`."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[np.asarray(user_idx)] @ self.item_factors_.T

    def _fit_implicit(self, make: Callable[[], Any], matrix: Any) -> None:
        """Build (`make()`) and train a model of the `implicit` library on the users × items strengths and
        keep its factors; both under one BLAS thread, since implicit checks the limit in its constructor."""
        with single_threaded_blas():
            model = make()
            model.fit(matrix.astype(np.float32), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def item_embeddings(self) -> np.ndarray | None:
        return self.item_factors_

    def user_embeddings(self) -> np.ndarray | None:
        return self.user_factors_

    def _state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]


def profile_factors(matrix: Any, item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit item vectors and user profiles (strength-weighted mean of the unit vectors, unit length).

    Scores `profiles @ items.T` are then cosines; a user or item without a vector gets a zero row.
    """
    norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
    items = np.divide(item_vectors, norms, out=np.zeros_like(item_vectors), where=norms > 0)
    profiles = np.asarray(matrix @ items)
    p_norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    profiles = np.divide(profiles, p_norms, out=np.zeros_like(profiles), where=p_norms > 0)
    return profiles.astype(np.float32), items.astype(np.float32)
