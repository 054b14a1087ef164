"""Recommendation models: one interface (`Recommender`), one module per algorithm, a name catalogue.

Algorithm modules import their libraries (implicit, scikit-learn, gensim) at import time, so they are not
imported here; use `recstack.models.catalog.create("ease", l2=300)` or import the module directly.
"""

from recstack.models.base import ItemFilter, Recommender, RecommenderConfig, TrainingData, top_k
from recstack.models.catalog import MODELS, create, names, resolve

__all__ = [
    "MODELS",
    "ItemFilter",
    "Recommender",
    "RecommenderConfig",
    "TrainingData",
    "create",
    "names",
    "resolve",
    "top_k",
]
