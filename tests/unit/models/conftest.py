"""A small synthetic video platform with latent tastes, on which every model must beat popularity.

300 users × 200 items in 8 categories. Items have a popularity skew and a latent style; users have
concentrated category tastes and a style of their own. A user's interactions are drawn with probability
∝ taste[category] · popularity · exp(style_u · style_i), and ratings rise with taste, so collaborative,
content-based and rating models all have something real to learn, and plain popularity does not see it.
Item text (title, tags, description) is drawn mostly from the item's category vocabulary. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from recstack.models.popularity import Popularity

from .contract import ndcg_at_k

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
