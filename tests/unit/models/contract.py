"""The behaviour every Recommender promises, as a mixin a model's test subclasses in a few lines:

    class TestEASE(RecommenderContract):
        model_class = EASE
        ndcg_floor = 0.25

The model is fitted once per test class on the synthetic platform (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.models.base import Recommender

COLUMNS = ["user_id", "item_id", "rank", "score"]
SIMILAR_COLUMNS = ["item_id", "similar_item_id", "rank", "score"]


def ndcg_at_k(recommendations: pd.DataFrame, test: pd.DataFrame, k: int) -> float:
    """Mean NDCG@k over the users in `test`, every test item relevant (binary gains)."""
    relevant = test.groupby("user_id")["item_id"].apply(set).to_dict()
    lists = recommendations.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].apply(list).to_dict()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for user, items in relevant.items():
        ranked = lists.get(user, [])[:k]
        dcg = sum(discounts[i] for i, item in enumerate(ranked) if item in items)
        scores.append(dcg / discounts[: min(len(items), k)].sum())
    return float(np.mean(scores))


class _FirstChoiceTrial:
    """A stand-in for an Optuna trial that always suggests the lower bound or first choice."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return low

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return low

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return next(iter(choices))


class RecommenderContract:
    model_class: ClassVar[type[Recommender[Any]]]
    params: ClassVar[dict[str, Any]] = {}
    ndcg_floor: ClassVar[float] = 0.0
    beats_popularity: ClassVar[bool] = True

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, platform: Any) -> Recommender[Any]:
        return cls.model_class(**cls.params).fit(platform.train, items=platform.items)

    @pytest.fixture(scope="class")
    @classmethod
    def users(cls, platform: Any) -> list[str]:
        return sorted(platform.train["user_id"].unique())[:25]

    def test_recommend_returns_ranked_external_ids(self, model: Recommender[Any], users: list[str]) -> None:
        recs = model.recommend(users, k=5)
        assert list(recs.columns) == COLUMNS
        assert recs["user_id"].unique().tolist() == users
        assert set(recs["item_id"]) <= set(model.items.ids)
        assert all(isinstance(i, str) for i in recs["item_id"])
        for _, group in recs.groupby("user_id"):
            assert len(group) == 5
            assert group["rank"].tolist() == [1, 2, 3, 4, 5]
            assert group["score"].is_monotonic_decreasing
            assert group["item_id"].is_unique

    def test_a_single_user_id_string_is_one_user(self, model: Recommender[Any], users: list[str]) -> None:
        recs = model.recommend(users[0], k=3)
        assert recs["user_id"].tolist() == [users[0]] * 3

    def test_exclude_seen(self, model: Recommender[Any], platform: Any, users: list[str]) -> None:
        seen = platform.train.groupby("user_id")["item_id"].apply(set)
        recs = model.recommend(users, k=10)
        assert not any(item in seen[user] for user, item in zip(recs["user_id"], recs["item_id"], strict=True))
        kept = model.recommend(users, k=10, exclude_seen=False)
        assert len(kept) == 10 * len(users)

    def test_filter_by_collection_and_by_function(self, model: Recommender[Any], users: list[str]) -> None:
        allowed = set(model.items.ids[::3])
        recs = model.recommend(users, k=5, filter=allowed)
        assert set(recs["item_id"]) <= allowed and len(recs) > 0
        recs = model.recommend(users, k=5, filter=lambda ids: np.char.endswith(ids.astype(str), "7"))
        assert recs["item_id"].str.endswith("7").all() and len(recs) > 0
        assert model.recommend(users, k=5, filter=[]).empty

    def test_unknown_users_get_nothing(self, model: Recommender[Any], users: list[str]) -> None:
        empty = model.recommend(["nobody"], k=5)
        assert empty.empty and list(empty.columns) == COLUMNS
        mixed = model.recommend(["nobody", users[0]], k=5)
        assert mixed["user_id"].unique().tolist() == [users[0]]

    def test_similar_items(self, model: Recommender[Any]) -> None:
        items = list(model.items.ids[:5])
        similar = model.similar_items([*items, "no-such-item"], k=4)
        assert list(similar.columns) == SIMILAR_COLUMNS
        assert set(similar["item_id"]) <= set(items) and len(similar) > 0
        assert (similar["item_id"] != similar["similar_item_id"]).all()
        assert similar.groupby("item_id").size().max() <= 4

    def test_score_is_dense_users_by_items(self, model: Recommender[Any]) -> None:
        scores = model.score(np.arange(3))
        assert scores.shape == (3, len(model.items))
        assert np.isfinite(scores).all()

    def test_embeddings_match_the_vocabulary(self, model: Recommender[Any]) -> None:
        vectors = model.item_embeddings()
        if vectors is not None:
            assert vectors.shape[0] == len(model.items)

    def test_save_load_round_trip(self, model: Recommender[Any], users: list[str], tmp_path: Path) -> None:
        model.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m")
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        assert loaded.weighting_ == model.weighting_
        pd.testing.assert_frame_equal(loaded.recommend(users, k=10), model.recommend(users, k=10))
        items = list(model.items.ids[:5])
        pd.testing.assert_frame_equal(loaded.similar_items(items, k=5), model.similar_items(items, k=5))
        assert type(model).load(tmp_path / "m").items == model.items

    def test_config_round_trips_and_search_space_builds(self, model: Recommender[Any]) -> None:
        twin = type(model)(**model.params)
        assert twin.params == model.params
        params = type(model).search_space(_FirstChoiceTrial())
        assert type(model)(**params).params != {}
        with pytest.raises(ConfigurationError):
            type(model)(no_such_parameter=1)

    def test_quality_beats_popularity(self, model: Recommender[Any], platform: Any, popularity_ndcg: float) -> None:
        recs = model.recommend(platform.test["user_id"].unique(), k=10)
        ndcg = ndcg_at_k(recs, platform.test, 10)
        assert ndcg >= self.ndcg_floor, f"NDCG@10 {ndcg:.3f} below floor {self.ndcg_floor}"
        if self.beats_popularity:
            assert ndcg > popularity_ndcg, f"NDCG@10 {ndcg:.3f} does not beat popularity {popularity_ndcg:.3f}"
