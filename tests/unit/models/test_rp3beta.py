"""RP3beta meets the Recommender contract and beats popularity on the synthetic platform."""

from __future__ import annotations

from recstack.models.rp3beta import RP3beta
from recstack.testing.recommender import RecommenderContract


class TestRP3beta(RecommenderContract):
    model_class = RP3beta
    ndcg_floor = 0.25
