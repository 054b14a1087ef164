"""The synthetic platform of the model tests (shipped with the library, with the Recommender contract)."""

from recstack.testing.recommender import Platform, make_platform, platform, popularity_ndcg

__all__ = ["Platform", "make_platform", "platform", "popularity_ndcg"]
