"""item2vec meets the Recommender contract and beats popularity."""

from __future__ import annotations

from recstack.models.item2vec import Item2Vec
from recstack.testing.recommender import RecommenderContract


class TestItem2Vec(RecommenderContract):
    model_class = Item2Vec
    ndcg_floor = 0.19
