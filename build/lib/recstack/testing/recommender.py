"""The `Recommender` contract, with the synthetic video platform every model is judged on.

A model's test is a few lines naming the class and a quality floor:

    class TestEASE(RecommenderContract):
        model_class = EASE
        ndcg_floor = 0.25

The model is fitted once per test class on the platform. Register the session fixtures `platform` and
`popularity_ndcg` in your conftest with `from recstack.testing.recommender import platform, popularity_ndcg`.

A small synthetic video platform with latent tastes, on which every model must beat popularity.

300 users × 200 items in 8 categories. Items have a popularity skew and a latent style; users have
concentrated category tastes and a style of their own. A user's interactions are drawn with probability
∝ taste[category] · popularity · exp(style_u · style_i), and ratings rise with taste, so collaborative,
content-based and rating models all have something real to learn, and plain popularity does not see it.
Item text (title, tags, description) is drawn mostly from the item's category vocabulary. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.models.base import Recommender
from recstack.models.popularity import Popularity

CATEGORIES = {
    "comedy": ["laugh", "joke", "sitcom", "funny", "prank", "standup"],
    "drama": ["tears", "family", "betrayal", "courtroom", "tragedy", "romance"],
    "science": ["physics", "space", "biology", "quantum", "rocket", "telescope"],
    "sports": ["football", "goal", "match", "league", "tennis", "marathon"],
    "music": ["guitar", "concert", "album", "jazz", "drums", "singer"],
    "cooking": ["recipe", "kitchen", "pasta", "baking", "spicy", "chef"],
    "travel": ["island", "mountain", "journey", "beach", "passport", "city"],
    "gaming": ["console", "speedrun", "arcade", "strategy", "puzzle", "esports"],
}
FILLER = ["video", "episode", "new", "best", "guide", "story", "daily", "live"]
START_MS = 1_700_000_000_000


@dataclass(frozen=True)
class Platform:
    interactions: pd.DataFrame
    items: pd.DataFrame
    train: pd.DataFrame
    test: pd.DataFrame


def make_platform(seed: int = 7, n_users: int = 300, n_items: int = 200) -> Platform:
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)
    n_cat = len(names)
    category = rng.permutation(np.arange(n_items) % n_cat)
    popularity = 1.0 / (rng.permutation(n_items) + 10.0) ** 0.9
    item_style = rng.normal(0.0, 1.0, (n_items, 2))
    rows = []
    for i in range(n_items):
        words = CATEGORIES[names[category[i]]]
        title = " ".join([*rng.choice(words, 2, replace=False), rng.choice(FILLER), f"no{i}"])
        tags = "|".join(rng.choice(words, 2, replace=False))
        description = " ".join(list(rng.choice(words, 4)) + list(rng.choice(FILLER, 2)))
        rows.append(
            {
                "item_id": f"v{i:03d}",
                "title": title.title(),
                "category": names[category[i]],
                "tags": tags,
                "description": description,
                "duration_s": float(rng.integers(60, 1200)),
            }
        )
    items = pd.DataFrame(rows)

    events = []
    for u in range(n_users):
        taste = rng.dirichlet(np.full(n_cat, 0.25))
        style = rng.normal(0.0, 1.0, 2)
        weight = taste[category] * popularity * np.exp(0.8 * item_style @ style)
        n = int(rng.integers(15, 40))
        chosen = rng.choice(n_items, size=n, replace=False, p=weight / weight.sum())
        affinity = taste[category[chosen]] / taste.max()
        rating = np.clip(np.round(2.0 + 3.0 * affinity + rng.normal(0.0, 0.7, n)), 1, 5)
        stamps = START_MS + np.sort(rng.integers(0, 30 * 86_400_000, n))
        for item, value, ts in zip(chosen, rating, stamps, strict=True):
            events.append((f"u{u:03d}", f"v{item:03d}", "rating", float(value), int(ts)))
    interactions = pd.DataFrame(events, columns=["user_id", "item_id", "event_type", "value", "timestamp"])

    in_test = np.zeros(len(interactions), dtype=bool)
    for _, index in interactions.groupby("user_id").indices.items():
        picked = rng.choice(index, size=max(1, len(index) // 4), replace=False)
        in_test[picked] = True
    train = interactions.loc[~in_test].reset_index(drop=True)
    test = interactions.loc[in_test].reset_index(drop=True)
    return Platform(interactions, items, train, test)


@pytest.fixture(scope="session")
def platform() -> Platform:
    return make_platform()


@pytest.fixture(scope="session")
def popularity_ndcg(platform: Platform) -> float:
    model = Popularity().fit(platform.train, items=platform.items)
    recs = model.recommend(platform.test["user_id"].unique(), k=10)
    return ndcg_at_k(recs, platform.test, 10)


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
