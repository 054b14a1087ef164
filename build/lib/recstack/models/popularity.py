"""Popularity: global, per category, or time-decayed trending — the baseline and the cold-start fallback.

An item's popularity is the number of distinct users with a positive interaction (so one heavy re-watcher
counts once); `trending` weights each of those interactions by an exponential decay from the newest
timestamp instead. `category` personalises by taste: an item's popularity is multiplied by the user's share
of positive interactions in the item's category, smoothed toward the catalogue-wide share so a user with a
short history still sees every category.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recstack.models._text import tag_list
from recstack.models.base import ItemFilter, Recommender, RecommenderConfig, TrainingData, Trial

__all__ = ["Popularity", "PopularityConfig"]

logger = logging.getLogger(__name__)

_MS_PER_DAY = 86_400_000.0


class PopularityConfig(RecommenderConfig):
    """`mode`: global | category | trending. `half_life_days` applies to trending; `category_smoothing`
    is the pseudo-count of interactions pulling a user's category shares toward the catalogue's."""

    mode: Literal["global", "category", "trending"] = "global"
    half_life_days: float = Field(default=7.0, gt=0.0)
    category_smoothing: float = Field(default=2.0, ge=0.0)


class Popularity(Recommender[PopularityConfig]):
    """Most-popular items, optionally per category or trending. Works for users it has never seen through
    `popular()`, which is what a serving layer falls back to for cold-start users."""

    name: ClassVar[str] = "popularity"
    config_type: ClassVar[type[PopularityConfig]] = PopularityConfig

    popularity_: np.ndarray
    item_category_: np.ndarray
    affinity_: np.ndarray

    def _fit(self, data: TrainingData) -> None:
        positive = data.matrix.copy()
        positive.data = (positive.data > 0).astype(np.float32)
        positive.eliminate_zeros()
        trending = self.config.mode == "trending"
        counts = self._trending(data) if trending else np.asarray(positive.sum(axis=0)).ravel()
        top = counts.max() if counts.size and counts.max() > 0 else 1.0
        self.popularity_ = (counts / top).astype(np.float32)
        self.item_category_ = np.zeros(len(data.items), dtype=np.int64)
        self.affinity_ = np.ones((len(data.users), 1), dtype=np.float32)
        if self.config.mode == "category":
            self._fit_categories(data, positive)

    def _trending(self, data: TrainingData) -> np.ndarray:
        frame = data.interactions
        if "timestamp" not in frame:
            logger.warning("trending popularity needs timestamps; falling back to global popularity")
            stamps = np.zeros(len(frame))
        else:
            stamps = pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
        newest = np.nanmax(stamps, initial=0.0)
        age_days = (newest - np.nan_to_num(stamps, nan=newest)) / _MS_PER_DAY
        decay = np.power(0.5, age_days / self.config.half_life_days) * (frame["weight"].to_numpy() > 0)
        return np.bincount(frame["item_idx"].to_numpy(), weights=decay, minlength=len(data.items))

    def _fit_categories(self, data: TrainingData, positive: sp.csr_matrix) -> None:
        features = data.item_features
        if features is None or "category" not in features:
            logger.warning("per-category popularity needs items with a category; using global popularity")
            return
        # An item's category is its first listed one; uncategorised items share code 0.
        first = [next(iter(tag_list(c)), "") for c in features["category"].tolist()]
        codes, _ = pd.factorize(pd.Series(first, dtype=object), sort=True)
        self.item_category_ = codes.astype(np.int64)
        n_cat = int(codes.max()) + 1
        onehot = sp.csr_matrix(
            (np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)), shape=(len(codes), n_cat)
        )
        per_user = np.asarray((positive @ onehot).todense(), dtype=np.float64)
        overall = per_user.sum(axis=0)
        prior = overall / max(overall.sum(), 1.0)
        s = self.config.category_smoothing
        self.affinity_ = ((per_user + s * prior) / (per_user.sum(axis=1, keepdims=True) + s + 1e-12)).astype(np.float32)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        affinity = self.affinity_[np.asarray(user_idx)][:, self.item_category_]
        return affinity * self.popularity_[None, :]

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        # Same category first (by popularity), then everything else by popularity.
        same = self.item_category_[np.asarray(item_idx)][:, None] == self.item_category_[None, :]
        return (self.popularity_[None, :] * (1.0 + same)).astype(np.float32)

    def popular(self, k: int = 10, filter: ItemFilter | None = None) -> pd.DataFrame:
        """The `k` most popular items for anyone (global or trending), as `item_id, rank, score`."""
        self._require_fitted()
        scores = self.popularity_.astype(np.float32, copy=True)
        allowed = self._allowed(filter)
        if allowed is not None:
            scores[~allowed] = -np.inf
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        order = order[np.isfinite(scores[order])]
        return pd.DataFrame(
            {
                "item_id": self.items.ids_of(order),
                "rank": np.arange(1, len(order) + 1, dtype=np.int64),
                "score": scores[order].astype(np.float64),
            }
        )

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        mode = trial.suggest_categorical("mode", ["global", "category", "trending"])
        params: dict[str, Any] = {"mode": mode}
        if mode == "trending":
            params["half_life_days"] = trial.suggest_float("half_life_days", 1.0, 365.0, log=True)
        if mode == "category":
            params["category_smoothing"] = trial.suggest_float("category_smoothing", 0.1, 50.0, log=True)
        return params

    def _state(self) -> dict[str, Any]:
        return {
            "popularity": self.popularity_,
            "item_category": self.item_category_,
            "affinity": self.affinity_,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.popularity_ = state["popularity"]
        self.item_category_ = state["item_category"]
        self.affinity_ = state["affinity"]
