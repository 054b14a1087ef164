"""Two-stage recommendation: candidate sources unioned per user (`candidates`), then a learned ranker
(`ranker`) over candidates × point-in-time features (`recstack.processing.features`).

The full pipeline as one `Recommender` is `recstack.models.hybrid.HybridRecommender`.
"""

from recstack.ranking.candidates import SOURCES, CandidateConfig, CandidateGenerator, Candidates, UserHistory
from recstack.ranking.ranker import LambdaRanker, RankerConfig, graded_labels

__all__ = [
    "SOURCES",
    "CandidateConfig",
    "CandidateGenerator",
    "Candidates",
    "LambdaRanker",
    "RankerConfig",
    "UserHistory",
    "graded_labels",
]
