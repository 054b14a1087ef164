"""Records → training inputs: interaction weighting and id vocabularies with sparse matrices."""

from recstack.processing.matrix import Vocabulary, interaction_matrix, seen_matrix
from recstack.processing.weighting import WeightingConfig, clip_negative, infer, play_counts, ratings, video

__all__ = [
    "Vocabulary",
    "WeightingConfig",
    "clip_negative",
    "infer",
    "interaction_matrix",
    "play_counts",
    "ratings",
    "seen_matrix",
    "video",
]
