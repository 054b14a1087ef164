"""ALS (implicit) meets the Recommender contract and beats popularity."""

from __future__ import annotations

from recstack.models.als import ALS
from recstack.testing.recommender import RecommenderContract


class TestALS(RecommenderContract):
    model_class = ALS
    ndcg_floor = 0.24
