"""EASE meets the Recommender contract and beats popularity on the synthetic platform."""

from __future__ import annotations

from recstack.models.ease import EASE

from .contract import RecommenderContract


class TestEASE(RecommenderContract):
    model_class = EASE
    ndcg_floor = 0.32
