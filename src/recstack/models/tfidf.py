"""Content-based recommendations from TF-IDF vectors of item metadata (scikit-learn).

Each item is a document of its title and description words plus one token per category and per tag
(see `recstack.models._text`); category and tag tokens can be up-weighted, since they are curated where
titles are noisy. Item vectors are L2-normalised, so item-to-item similarity is cosine. A user's profile is
the strength-weighted sum of the vectors of the items they interacted with; a user's score for an item is
the cosine between profile and item vector. Items that appear only in the catalogue (no interactions) are
part of the model, so new items can be recommended from day one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recstack.errors import ConfigurationError, MissingExtra
from recstack.models._text import item_documents
from recstack.models.base import Recommender, RecommenderConfig, TrainingData, Trial

try:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("scikit-learn", "models") from exc

__all__ = ["TfidfConfig", "TfidfRecommender"]


class TfidfConfig(RecommenderConfig):
    """`min_df` drops tokens on fewer items; `max_features` caps the vocabulary (most frequent kept)."""

    min_df: int = Field(default=1, ge=1)
    max_features: int | None = Field(default=50_000, ge=1)
    sublinear_tf: bool = True
    category_weight: float = Field(default=2.0, ge=0.0)
    tag_weight: float = Field(default=1.5, ge=0.0)


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class TfidfRecommender(Recommender[TfidfConfig]):
    """TF-IDF item vectors with user profiles; needs an items frame with text."""

    name: ClassVar[str] = "tfidf"
    config_type: ClassVar[type[TfidfConfig]] = TfidfConfig
    catalog_items: ClassVar[bool] = True
    needs_item_features: ClassVar[bool] = True
    reason: ClassVar[str] = "content"

    item_vectors_: sp.csr_matrix
    user_profiles_: sp.csr_matrix

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        documents = item_documents(data.item_features, len(data.items))
        if not any(documents):
            raise ConfigurationError("TF-IDF found no item text (title, category, tags, description)")
        vectorizer = TfidfVectorizer(
            analyzer=_identity,
            min_df=cfg.min_df,
            max_features=cfg.max_features,
            sublinear_tf=cfg.sublinear_tf,
        )
        vectors = sp.csr_matrix(vectorizer.fit_transform(documents), dtype=np.float32)
        terms = vectorizer.get_feature_names_out()
        column_weight = np.ones(len(terms), dtype=np.float32)
        column_weight[np.char.startswith(terms.astype(str), "category:")] = cfg.category_weight
        column_weight[np.char.startswith(terms.astype(str), "tag:")] = cfg.tag_weight
        vectors = sp.csr_matrix(vectors @ sp.diags(column_weight))
        self.item_vectors_ = sp.csr_matrix(normalize(vectors), dtype=np.float32)
        self.user_profiles_ = sp.csr_matrix(normalize(data.matrix @ self.item_vectors_), dtype=np.float32)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        profiles = self.user_profiles_[np.asarray(user_idx)]
        return np.asarray((profiles @ self.item_vectors_.T).toarray(), dtype=np.float32)

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        block = (self.item_vectors_[np.asarray(item_idx)] @ self.item_vectors_.T).toarray()
        block[block <= 0] = -np.inf
        return block

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "min_df": trial.suggest_int("min_df", 1, 5),
            "sublinear_tf": trial.suggest_categorical("sublinear_tf", [True, False]),
            "category_weight": trial.suggest_float("category_weight", 0.0, 5.0),
            "tag_weight": trial.suggest_float("tag_weight", 0.0, 5.0),
        }

    def _state(self) -> dict[str, Any]:
        return {"item_vectors": self.item_vectors_, "user_profiles": self.user_profiles_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.item_vectors_ = state["item_vectors"]
        self.user_profiles_ = state["user_profiles"]
