"""BPR (implicit) meets the Recommender contract and beats popularity."""

from __future__ import annotations

from recstack.models.bpr import BPR
from recstack.testing.recommender import RecommenderContract


class TestBPR(RecommenderContract):
    model_class = BPR
    ndcg_floor = 0.25
