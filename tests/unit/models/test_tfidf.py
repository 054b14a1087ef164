"""TF-IDF content model meets the Recommender contract and beats popularity from item text alone."""

from __future__ import annotations

from recstack.models.tfidf import TfidfRecommender
from recstack.testing.recommender import RecommenderContract


class TestTfidfRecommender(RecommenderContract):
    model_class = TfidfRecommender
    ndcg_floor = 0.19
