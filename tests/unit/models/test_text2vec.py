"""text2vec meets the Recommender contract and beats popularity from item text alone."""

from __future__ import annotations

from recstack.models.text2vec import Text2Vec
from recstack.testing.recommender import RecommenderContract


class TestText2Vec(RecommenderContract):
    model_class = Text2Vec
    ndcg_floor = 0.19
