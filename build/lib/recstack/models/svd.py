"""Two SVD-family models: PureSVD for implicit feedback and a biased factorisation of explicit ratings.

- `PureSVD` (Cremonesi et al., 2010): a truncated SVD `X ≈ U Σ Vᵀ` of the interaction matrix, missing
  entries taken as zeros; scores are `U Σ Vᵀ` (equivalently `X V Vᵀ`). Strong for top-k retrieval.
- `SVD`: the rating predictor of the Netflix-prize family, `r̂ = μ + b_u + b_i + p_u·q_i`, fitted to the
  observed ratings only (regularised alternating least squares, weighted-λ as in Zhou et al., 2008). Its
  `score` is the predicted rating, which ranks items by how much a user would like them *if* they saw them
  — a different question from what they will watch next, so it is weak at top-k retrieval on its own and
  most useful as a signal in an ensemble or a learned ranker. `predict` answers the rating question.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recstack.errors import ConfigurationError, MissingExtra
from recstack.models._factors import FactorRecommender
from recstack.models.base import RecommenderConfig, TrainingData, Trial

try:
    from sklearn.utils.extmath import randomized_svd
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("scikit-learn", "models") from exc

__all__ = ["SVD", "PureSVD", "PureSVDConfig", "SVDConfig"]


class PureSVDConfig(RecommenderConfig):
    factors: int = Field(default=20, ge=1)
    power_iterations: int = Field(default=7, ge=0)
    random_state: int = 42


class PureSVD(FactorRecommender[PureSVDConfig]):
    """Truncated SVD of the implicit matrix; item embeddings are the right singular vectors."""

    name: ClassVar[str] = "pure_svd"
    config_type: ClassVar[type[PureSVDConfig]] = PureSVDConfig

    def _fit(self, data: TrainingData) -> None:
        x = data.matrix.astype(np.float64)
        rank = max(1, min(self.config.factors, min(x.shape) - 1))
        u, sigma, vt = randomized_svd(
            x, n_components=rank, n_iter=self.config.power_iterations, random_state=self.config.random_state
        )
        self.user_factors_ = (u * sigma).astype(np.float32)
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {"factors": trial.suggest_int("factors", 5, 300, log=True)}


class SVDConfig(RecommenderConfig):
    """`regularization` is λ in the weighted-λ penalty `λ·n·‖p‖²`; `bias_regularization` is a pseudo-count
    pulling each user's and item's bias toward zero."""

    factors: int = Field(default=20, ge=1)
    regularization: float = Field(default=0.1, ge=0.0)
    bias_regularization: float = Field(default=5.0, ge=0.0)
    iterations: int = Field(default=15, ge=1)
    random_state: int = 42


def _ratings(data: TrainingData) -> sp.csr_matrix:
    """Mean rating per (user, item) from the raw `value` column (`rating` events when events are typed)."""
    frame = data.interactions
    if "value" not in frame:
        raise ConfigurationError("SVD predicts ratings and needs a `value` column of ratings")
    values = pd.to_numeric(frame["value"], errors="coerce")
    use = values.notna().to_numpy(copy=True)
    if "event_type" in frame and (frame["event_type"] == "rating").any():
        use &= (frame["event_type"] == "rating").to_numpy()
    if not use.any():
        raise ConfigurationError("SVD found no ratings in the `value` column")
    rows = frame["user_idx"].to_numpy()[use]
    cols = frame["item_idx"].to_numpy()[use]
    shape = (len(data.users), len(data.items))
    total = sp.csr_matrix((values.to_numpy(dtype=np.float64)[use], (rows, cols)), shape=shape)
    count = sp.csr_matrix((np.ones(int(use.sum())), (rows, cols)), shape=shape)
    total.sum_duplicates()
    count.sum_duplicates()
    total.sort_indices()
    count.sort_indices()
    total.data /= count.data
    return total


def _solve_side(pattern: sp.csr_matrix, residual: sp.csr_matrix, other: np.ndarray, reg: float) -> np.ndarray:
    """Ridge solutions for every row at once: `(Σ q qᵀ + λ n I) p = Σ r q` over each row's observed columns.

    The per-row Gram matrices are one sparse × dense product with the row-wise outer products of `other`.
    """
    n, f = pattern.shape[0], other.shape[1]
    outer = np.einsum("if,ig->ifg", other, other).reshape(other.shape[0], f * f)
    gram = np.asarray(pattern @ outer).reshape(n, f, f)
    counts = np.diff(pattern.indptr).astype(np.float64)
    gram += (reg * np.maximum(counts, 1.0))[:, None, None] * np.eye(f)[None, :, :]
    rhs = np.asarray(residual @ other)
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]


class SVD(FactorRecommender[SVDConfig]):
    """Biased matrix factorisation of explicit ratings; `score` and `predict` give predicted ratings."""

    name: ClassVar[str] = "svd"
    config_type: ClassVar[type[SVDConfig]] = SVDConfig

    global_mean_: float
    user_bias_: np.ndarray
    item_bias_: np.ndarray
    rating_range_: np.ndarray

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        r = _ratings(data)
        rows = np.repeat(np.arange(r.shape[0]), np.diff(r.indptr))
        cols = r.indices
        target = r.data
        pattern = sp.csr_matrix((np.ones_like(target), r.indices, r.indptr), shape=r.shape)
        pattern_t = sp.csr_matrix(pattern.T)
        mu = float(target.mean())
        rng = np.random.default_rng(cfg.random_state)
        p = rng.normal(0.0, 0.1, (r.shape[0], cfg.factors))
        q = rng.normal(0.0, 0.1, (r.shape[1], cfg.factors))
        bu = np.zeros(r.shape[0])
        bi = np.zeros(r.shape[1])
        n_u = np.diff(pattern.indptr) + cfg.bias_regularization
        n_i = np.diff(pattern_t.indptr) + cfg.bias_regularization

        def residual(values: np.ndarray) -> sp.csr_matrix:
            return sp.csr_matrix((values, r.indices, r.indptr), shape=r.shape)

        for _ in range(cfg.iterations):
            dot = np.einsum("nf,nf->n", p[rows], q[cols])
            bu = np.bincount(rows, target - mu - bi[cols] - dot, r.shape[0]) / n_u
            bi = np.bincount(cols, target - mu - bu[rows] - dot, r.shape[1]) / n_i
            base = target - mu - bu[rows] - bi[cols]
            p = _solve_side(pattern, residual(base), q, cfg.regularization)
            q = _solve_side(pattern_t, sp.csr_matrix(residual(base).T), p, cfg.regularization)
        self.global_mean_ = mu
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)
        self.rating_range_ = np.array([target.min(), target.max()], dtype=np.float32)
        # Fold the biases into the factors so scoring (and an ANN index) is one inner product:
        # [p, b_u + μ, 1] · [q, 1, b_i] = μ + b_u + b_i + p·q.
        ones_u = np.ones((r.shape[0], 1))
        ones_i = np.ones((r.shape[1], 1))
        self.user_factors_ = np.hstack([p, (bu + mu)[:, None], ones_u]).astype(np.float32)
        self.item_factors_ = np.hstack([q, ones_i, bi[:, None]]).astype(np.float32)

    def predict(self, user_ids: Iterable[str], item_ids: Iterable[str]) -> np.ndarray:
        """Predicted ratings for aligned (user, item) pairs, clipped to the training ratings' range.

        Unknown users or items fall back to the biases that are known (the global mean at worst).
        """
        users = self.users.index(np.asarray(list(user_ids), dtype=object))
        items = self.items.index(np.asarray(list(item_ids), dtype=object))
        if len(users) != len(items):
            raise ConfigurationError("predict needs as many item ids as user ids")
        known_u, known_i = users >= 0, items >= 0
        both = known_u & known_i
        out = np.full(len(users), self.global_mean_, dtype=np.float64)
        out[known_u] += self.user_bias_[users[known_u]]
        out[known_i] += self.item_bias_[items[known_i]]
        f = self.user_factors_.shape[1] - 2
        out[both] += np.einsum("nf,nf->n", self.user_factors_[users[both], :f], self.item_factors_[items[both], :f])
        return np.clip(out, self.rating_range_[0], self.rating_range_[1])

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "factors": trial.suggest_int("factors", 2, 100, log=True),
            "regularization": trial.suggest_float("regularization", 1e-3, 1.0, log=True),
            "bias_regularization": trial.suggest_float("bias_regularization", 0.0, 50.0),
        }

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "global_mean": np.asarray(self.global_mean_),
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
            "rating_range": self.rating_range_,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        super()._restore(state)
        self.global_mean_ = float(state["global_mean"])
        self.user_bias_ = state["user_bias"]
        self.item_bias_ = state["item_bias"]
        self.rating_range_ = state["rating_range"]
