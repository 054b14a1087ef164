"""Top-K ranking metrics over a recommendations frame and a frame of relevant (held-out) interactions.

Contracts shared by every accuracy metric here:

* `recommendations` has columns `user_id`, `item_id`, `rank` (1-based; a user's list is read in rank order
  and cut to its first `k` rows); a `score` column is allowed and ignored.
* `relevant` has columns `user_id`, `item_id`; every row is a relevant item for its user (duplicates count
  once). Filter it beforehand for thresholded relevance (e.g. ratings >= 4).
* The result is the mean over the users of `relevant`. A user with no recommendations scores 0; recommended
  users absent from `relevant` are ignored. Relevance is binary.

Beyond-accuracy metrics (coverage, novelty, diversity) describe the recommended lists themselves, so they are
averaged over the users who received a list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from recstack.errors import ConfigurationError

__all__ = [
    "ACCURACY_METRICS",
    "HitMatrix",
    "average_precision",
    "catalogue_coverage",
    "cold_user_slice",
    "hit_matrix",
    "hit_rate",
    "intra_list_diversity",
    "long_tail_items",
    "long_tail_share",
    "long_tail_slice",
    "map_at_k",
    "mrr",
    "ndcg",
    "ndcg_from_hits",
    "novelty",
    "precision",
    "ranking_metrics",
    "recall",
    "reciprocal_rank",
    "top_k",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HitMatrix:
    """Which of each evaluated user's first k recommendations are relevant.

    `hits[u, j]` is True when user u's recommendation at rank j + 1 is relevant; `n_relevant[u]` is the
    number of distinct relevant items of user u (always >= 1); `users` names the rows.
    """

    users: pd.Index
    hits: np.ndarray
    n_relevant: np.ndarray

    @property
    def k(self) -> int:
        return int(self.hits.shape[1])


def top_k(recommendations: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each user's first `k` recommendations in rank order, with a 0-based `position` column added."""
    if k < 1:
        raise ConfigurationError(f"k must be >= 1, got {k}")
    ordered = recommendations[["user_id", "item_id", "rank"]].sort_values(["user_id", "rank"], kind="stable")
    ordered = ordered.drop_duplicates(["user_id", "item_id"])
    position = ordered.groupby("user_id", sort=False).cumcount().to_numpy()
    ordered = ordered.assign(position=position)
    return ordered.loc[position < k].reset_index(drop=True)


def hit_matrix(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int) -> HitMatrix:
    """Build the `HitMatrix` that every accuracy metric reads (see the module contract)."""
    pairs = relevant[["user_id", "item_id"]].drop_duplicates()
    counts = pairs.groupby("user_id", sort=True).size()
    users = pd.Index(counts.index)
    ranked = top_k(recommendations, k)
    flagged = ranked.merge(pairs.assign(_hit=True), on=["user_id", "item_id"], how="left")
    flagged = flagged.loc[flagged["user_id"].isin(users)]
    hits = np.zeros((len(users), k), dtype=bool)
    rows = users.get_indexer(flagged["user_id"])
    hits[rows, flagged["position"].to_numpy()] = flagged["_hit"].fillna(False).to_numpy(dtype=bool)
    return HitMatrix(users=users, hits=hits, n_relevant=counts.to_numpy(dtype=np.int64))


def _mean(per_user: np.ndarray) -> float:
    return float(per_user.mean()) if per_user.size else 0.0


def precision(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> float:
    """Mean over users of (relevant items among the first k) / k."""
    m = hit_matrix(recommendations, relevant, k)
    return _mean(m.hits.sum(axis=1) / k)


def recall(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> float:
    """Mean over users of (relevant items among the first k) / (number of relevant items)."""
    m = hit_matrix(recommendations, relevant, k)
    return _mean(m.hits.sum(axis=1) / m.n_relevant)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_from_hits(m: HitMatrix) -> np.ndarray:
    """Per-user NDCG: sum of 1/log2(rank + 1) over hits, over the ideal DCG of min(|relevant|, k) hits."""
    discounts = _discounts(m.k)
    dcg = m.hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(m.n_relevant, m.k) - 1]
    return dcg / ideal


def ndcg(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> float:
    """Mean over users of binary-relevance NDCG@k with the log2 discount (see `ndcg_from_hits`)."""
    return _mean(ndcg_from_hits(hit_matrix(recommendations, relevant, k)))


def average_precision(m: HitMatrix, denominator: Literal["min", "all"] = "min") -> np.ndarray:
    """Per-user AP@k: sum over hit ranks r of precision@r, divided by min(|relevant|, k) or by |relevant|.

    `denominator="all"` is Microsoft Recommenders' `map()` (and `map_at_k`) convention; `"min"` is the usual
    AP@k, which reaches 1 for a perfect list even when a user has more than k relevant items.
    """
    cumulative = np.cumsum(m.hits, axis=1)
    precision_at_rank = cumulative / np.arange(1, m.k + 1)
    summed = (precision_at_rank * m.hits).sum(axis=1)
    if denominator == "min":
        return summed / np.minimum(m.n_relevant, m.k)
    if denominator == "all":
        return summed / m.n_relevant
    raise ConfigurationError(f"denominator must be 'min' or 'all', got {denominator!r}")


def map_at_k(
    recommendations: pd.DataFrame,
    relevant: pd.DataFrame,
    k: int = 10,
    denominator: Literal["min", "all"] = "min",
) -> float:
    """Mean over users of `average_precision` with the chosen denominator."""
    return _mean(average_precision(hit_matrix(recommendations, relevant, k), denominator))


def hit_rate(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> float:
    """Share of users with at least one relevant item among their first k recommendations."""
    return _mean(hit_matrix(recommendations, relevant, k).hits.any(axis=1).astype(float))


def reciprocal_rank(m: HitMatrix) -> np.ndarray:
    """Per-user 1 / (rank of the first relevant item), 0 when none is in the first k."""
    first = m.hits.argmax(axis=1)
    return np.where(m.hits.any(axis=1), 1.0 / (first + 1), 0.0)


def mrr(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant item within the first k (0 for a user without one)."""
    return _mean(reciprocal_rank(hit_matrix(recommendations, relevant, k)))


ACCURACY_METRICS = ("precision", "recall", "ndcg", "map", "map_all", "hit_rate", "mrr")


def ranking_metrics(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Every accuracy metric at k from one `HitMatrix`, keyed by the names in `ACCURACY_METRICS`.

    `map` divides by min(|relevant|, k); `map_all` divides by |relevant| (Microsoft Recommenders' `map`).
    """
    m = hit_matrix(recommendations, relevant, k)
    n_hits = m.hits.sum(axis=1)
    per_user = {
        "precision": n_hits / k,
        "recall": n_hits / m.n_relevant,
        "ndcg": ndcg_from_hits(m),
        "map": average_precision(m, "min"),
        "map_all": average_precision(m, "all"),
        "hit_rate": (n_hits > 0).astype(float),
        "mrr": reciprocal_rank(m),
    }
    return {name: _mean(values) for name, values in per_user.items()}


def catalogue_coverage(recommendations: pd.DataFrame, catalogue: Iterable[str] | int, k: int = 10) -> float:
    """Share of the catalogue that appears in at least one user's first k recommendations.

    `catalogue` is the collection of item ids (recommended items outside it are not counted) or its size.
    """
    recommended = pd.unique(top_k(recommendations, k)["item_id"])
    if isinstance(catalogue, int):
        size, inside = catalogue, len(recommended)
    else:
        items = set(catalogue)
        size, inside = len(items), sum(1 for item in recommended if item in items)
    return inside / size if size else 0.0


def novelty(recommendations: pd.DataFrame, train: pd.DataFrame, k: int = 10) -> float:
    """Mean self-information, in bits, of recommended items' popularity in `train`.

    An item's popularity is p = (distinct train users who interacted with it) / (distinct train users); its
    self-information is -log2 p. An item absent from `train` counts as seen by one user. Each user's score is
    the mean over their first k items; the result is the mean over users with a list.
    """
    n_users = train["user_id"].nunique()
    if n_users == 0:
        raise ConfigurationError("novelty needs a non-empty training frame")
    users_per_item = train[["user_id", "item_id"]].drop_duplicates().groupby("item_id").size()
    ranked = top_k(recommendations, k)
    if ranked.empty:
        return 0.0
    counts = ranked["item_id"].map(users_per_item).fillna(1.0).to_numpy(dtype=float)
    information = -np.log2(counts / n_users)
    return float(pd.Series(information).groupby(ranked["user_id"].to_numpy()).mean().mean())


def _feature_matrix(
    item_vectors: pd.DataFrame | None, item_categories: Mapping[str, Iterable[str]] | None
) -> pd.DataFrame:
    if (item_vectors is None) == (item_categories is None):
        raise ConfigurationError("give exactly one of item_vectors or item_categories")
    if item_vectors is not None:
        return item_vectors.astype(float)
    assert item_categories is not None
    rows = [(item, category) for item, categories in item_categories.items() for category in categories]
    long = pd.DataFrame(rows, columns=["item_id", "category"])
    return pd.crosstab(long["item_id"], long["category"]).clip(upper=1).astype(float)


def intra_list_diversity(
    recommendations: pd.DataFrame,
    k: int = 10,
    item_vectors: pd.DataFrame | None = None,
    item_categories: Mapping[str, Iterable[str]] | None = None,
) -> float:
    """Mean over users of the average pairwise cosine distance (1 - cosine) between their first k items.

    Items are described either by `item_vectors` (rows indexed by item id: features or embeddings) or by
    `item_categories` (item id -> categories, turned into 0/1 vectors). Items without a description, or
    with an all-zero vector, are left out of the pairs; a list with fewer than two described items is skipped.
    """
    features = _feature_matrix(item_vectors, item_categories)
    norms = np.linalg.norm(features.to_numpy(), axis=1)
    features = features.loc[norms > 0]
    unit = features.to_numpy() / np.linalg.norm(features.to_numpy(), axis=1, keepdims=True)
    ranked = top_k(recommendations, k)
    ranked = ranked.assign(row=features.index.get_indexer(ranked["item_id"]))
    ranked = ranked.loc[ranked["row"] >= 0]
    scores = []
    for rows in ranked.groupby("user_id", sort=False)["row"]:
        vectors = unit[rows[1].to_numpy()]
        n = len(vectors)
        if n < 2:
            continue
        similarity = vectors @ vectors.T
        mean_similarity = (similarity.sum() - np.trace(similarity)) / (n * (n - 1))
        scores.append(1.0 - mean_similarity)
    return float(np.mean(scores)) if scores else 0.0


def long_tail_items(train: pd.DataFrame, head_share: float = 0.2) -> set[str]:
    """Items outside the head: the head is the fewest most-interacted items that together make up at least
    `head_share` of `train`'s interactions (ties broken by item id)."""
    if not 0.0 < head_share < 1.0:
        raise ConfigurationError(f"head_share must be strictly between 0 and 1, got {head_share}")
    counts = train.groupby("item_id").size().sort_index()
    counts = counts.sort_values(ascending=False, kind="stable")
    cumulative = counts.cumsum().to_numpy() / counts.sum()
    n_head = int(np.searchsorted(cumulative, head_share - 1e-12) + 1)
    return set(counts.index[n_head:])


def long_tail_share(
    recommendations: pd.DataFrame, train: pd.DataFrame, k: int = 10, head_share: float = 0.2
) -> float:
    """Share of all recommended (user, item) pairs in the first k that are long-tail items."""
    ranked = top_k(recommendations, k)
    if ranked.empty:
        return 0.0
    return float(ranked["item_id"].isin(long_tail_items(train, head_share)).mean())


def cold_user_slice(
    recommendations: pd.DataFrame,
    relevant: pd.DataFrame,
    train: pd.DataFrame,
    max_train_interactions: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Restrict both frames to cold users: those with at most `max_train_interactions` rows in `train`
    (users absent from `train` included). Feed the result to any accuracy metric."""
    counts = train.groupby("user_id").size()
    warm = set(counts.index[counts > max_train_interactions])
    keep_rel = ~relevant["user_id"].isin(warm)
    keep_rec = ~recommendations["user_id"].isin(warm)
    return recommendations.loc[keep_rec], relevant.loc[keep_rel]


def long_tail_slice(
    recommendations: pd.DataFrame, relevant: pd.DataFrame, train: pd.DataFrame, head_share: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep only long-tail relevant items (see `long_tail_items`); the lists stay whole.

    Accuracy metrics on the result measure how well a model retrieves the niche items users did consume;
    users with no long-tail relevant item drop out of the average.
    """
    tail = long_tail_items(train, head_share)
    return recommendations, relevant.loc[relevant["item_id"].isin(tail)]
