"""Popularity in its three modes, its cold-start list, and hand-computed cases."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from recstack.models.popularity import Popularity
from recstack.testing.recommender import RecommenderContract

DAY_MS = 86_400_000


class TestPopularity(RecommenderContract):
    model_class = Popularity
    ndcg_floor = 0.10
    beats_popularity = False


class TestCategoryPopularity(RecommenderContract):
    model_class = Popularity
    params: ClassVar[dict[str, Any]] = {"mode": "category"}
    ndcg_floor = 0.29


class TestTrendingPopularity(RecommenderContract):
    model_class = Popularity
    params: ClassVar[dict[str, Any]] = {"mode": "trending", "half_life_days": 10.0}
    ndcg_floor = 0.08
    beats_popularity = False


def _frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_global_popularity_counts_distinct_users() -> None:
    # "a" is watched three times by one user, "b" once each by two users: b is more popular.
    frame = _frame([("u1", "a", 1), ("u1", "a", 2), ("u1", "a", 3), ("u2", "b", 4), ("u3", "b", 5), ("u3", "c", 6)])
    top = Popularity().fit(frame).popular(k=3)
    assert top["item_id"].tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(top["score"], [1.0, 0.5, 0.5])


def test_trending_prefers_recent_interactions() -> None:
    now = 100 * DAY_MS
    # "old" had 3 users 30 days ago; "new" 2 users today. Half-life 10 days: 3/8 < 2.
    frame = _frame(
        [
            ("u1", "old", now - 30 * DAY_MS),
            ("u2", "old", now - 30 * DAY_MS),
            ("u3", "old", now - 30 * DAY_MS),
            ("u4", "new", now),
            ("u5", "new", now),
        ]
    )
    assert Popularity().fit(frame).popular(k=2)["item_id"].tolist() == ["old", "new"]
    trending = Popularity(mode="trending", half_life_days=10.0).fit(frame).popular(k=2)
    assert trending["item_id"].tolist() == ["new", "old"]
    np.testing.assert_allclose(trending["score"], [1.0, 3 / 8 / 2])


def test_category_mode_follows_a_users_taste() -> None:
    frame = _frame([("fan", "d1", 1), ("x", "c1", 2), ("y", "c1", 3), ("z", "c2", 4), ("x", "d2", 5)])
    items = pd.DataFrame({"item_id": ["c1", "c2", "d1", "d2"], "category": ["comedy", "comedy", "drama", "drama"]})
    model = Popularity(mode="category", category_smoothing=0.0).fit(frame, items=items)
    assert model.recommend("fan", k=1)["item_id"].tolist() == ["d2"]
    assert Popularity().fit(frame).recommend("fan", k=1)["item_id"].tolist() == ["c1"]


def test_popular_respects_the_filter() -> None:
    frame = _frame([("u1", "a", 1), ("u2", "a", 2), ("u1", "b", 3)])
    assert Popularity().fit(frame).popular(k=5, filter={"b"})["item_id"].tolist() == ["b"]
