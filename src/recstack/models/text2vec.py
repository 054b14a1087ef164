"""Content-based recommendations from Word2Vec trained on item text (gensim).

Each item's metadata (title and description words, category and tag tokens; see `recstack.models._text`)
is one sentence; an item's vector is the mean of its words' vectors, and a user's profile is the
strength-weighted mean of their items' unit vectors. Unlike TF-IDF, items sharing no word can still be
close when their words occur in similar contexts. Catalogue items without interactions are included.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from recstack.errors import ConfigurationError
from recstack.models._factors import FactorRecommender, profile_factors
from recstack.models._text import item_documents
from recstack.models.base import RecommenderConfig, TrainingData, Trial
from recstack.models.item2vec import word2vec_vectors

__all__ = ["Text2Vec", "Text2VecConfig"]


class Text2VecConfig(RecommenderConfig):
    """Word2Vec hyperparameters; item texts are short, so more epochs than for prose."""

    vector_size: int = Field(default=64, ge=2)
    window: int = Field(default=5, ge=1)
    negative: int = Field(default=5, ge=1)
    ns_exponent: float = 0.75
    sample: float = Field(default=0.0, ge=0.0)
    epochs: int = Field(default=50, ge=1)
    workers: int = Field(default=1, ge=1)
    random_state: int = 42


class Text2Vec(FactorRecommender[Text2VecConfig]):
    """Mean word vectors of item text, with mean-vector user profiles; needs an items frame."""

    name: ClassVar[str] = "text2vec"
    config_type: ClassVar[type[Text2VecConfig]] = Text2VecConfig
    catalog_items: ClassVar[bool] = True
    needs_item_features: ClassVar[bool] = True
    reason: ClassVar[str] = "content"

    def _fit(self, data: TrainingData) -> None:
        documents = item_documents(data.item_features, len(data.items))
        if not any(documents):
            raise ConfigurationError("text2vec found no item text (title, category, tags, description)")
        words = sorted({w for doc in documents for w in doc})
        word_index = {w: i for i, w in enumerate(words)}
        word_vectors = word2vec_vectors(documents, len(words), words.__getitem__, self.config)
        rows = np.repeat(np.arange(len(documents)), [len(d) for d in documents])
        cols = np.fromiter((word_index[w] for d in documents for w in d), dtype=np.int64, count=len(rows))
        sums = np.zeros((len(documents), self.config.vector_size), dtype=np.float64)
        np.add.at(sums, rows, word_vectors[cols])
        lengths = np.maximum(np.array([len(d) for d in documents], dtype=np.float64), 1.0)
        self.user_factors_, self.item_factors_ = profile_factors(data.matrix, (sums / lengths[:, None]))

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "vector_size": trial.suggest_int("vector_size", 16, 256, log=True),
            "window": trial.suggest_int("window", 2, 20),
            "epochs": trial.suggest_int("epochs", 10, 200, log=True),
        }
