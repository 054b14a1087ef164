"""item2vec (Barkan & Koenigstein, 2016): Word2Vec over each user's time-ordered history (gensim).

Items a user interacted with positively form one "sentence" in timestamp order (row order when there is
no timestamp); skip-gram with negative sampling then places items consumed in similar contexts close
together. Recommendations use the embedding as a neighbourhood: each item keeps its `neighbours` nearest
items by cosine, and a user's score for an item sums the similarities to it from the user's items, weighted
by strength. (Scoring by the cosine to a user's mean vector instead favours rarely seen items, whose
vectors sit near everything, and measured far worse.) Only the learned vectors and the neighbour matrix
are kept, as plain arrays: the gensim model itself is not persisted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recstack.errors import MissingExtra
from recstack.models._neighbours import top_neighbours
from recstack.models.base import Recommender, RecommenderConfig, TrainingData, Trial

try:
    from gensim.models import Word2Vec
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("gensim", "models") from exc

__all__ = ["Item2Vec", "Item2VecConfig", "Word2VecParams", "unit_rows", "word2vec_vectors"]

logger = logging.getLogger(__name__)

_BLOCK_CELLS = 1 << 23


class Word2VecParams(Protocol):
    """The Word2Vec fields a config carries (both Word2Vec-based models' configs have them)."""

    vector_size: int
    window: int
    negative: int
    ns_exponent: float
    sample: float
    epochs: int
    workers: int
    random_state: int


class Item2VecConfig(RecommenderConfig):
    """Word2Vec hyperparameters plus `neighbours` kept per item; `workers=1` makes training reproducible."""

    vector_size: int = Field(default=64, ge=2)
    window: int = Field(default=10, ge=1)
    negative: int = Field(default=5, ge=1)
    ns_exponent: float = 0.75
    sample: float = Field(default=1e-3, ge=0.0)
    epochs: int = Field(default=5, ge=1)
    workers: int = Field(default=1, ge=1)
    random_state: int = 42
    neighbours: int = Field(default=50, ge=1)


def word2vec_vectors(
    sentences: list[list[str]], n_items: int, key: Callable[[int], str], config: Word2VecParams
) -> np.ndarray:
    """Train skip-gram Word2Vec on `sentences`; one vector per index `0 … n_items-1` (zeros if unseen).

    `key(index)` is the token that stands for index `index` in the sentences.
    """
    vectors = np.zeros((n_items, config.vector_size), dtype=np.float32)
    if not any(sentences):
        logger.warning("word2vec: no sentences to train on; every vector is zero")
        return vectors
    model = Word2Vec(
        sentences=sentences,
        vector_size=config.vector_size,
        window=config.window,
        min_count=1,
        sg=1,
        negative=config.negative,
        ns_exponent=config.ns_exponent,
        sample=config.sample,
        epochs=config.epochs,
        workers=config.workers,
        seed=config.random_state,
    )
    for index in range(n_items):
        token = key(index)
        if token in model.wv.key_to_index:
            vectors[index] = model.wv[token]
    return vectors


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float32)


class Item2Vec(Recommender[Item2VecConfig]):
    """Skip-gram item embeddings from interaction sequences, scored as an embedding neighbourhood."""

    name: ClassVar[str] = "item2vec"
    config_type: ClassVar[type[Item2VecConfig]] = Item2VecConfig

    vectors_: np.ndarray
    similarity_: sp.csr_matrix
    user_items_: sp.csr_matrix

    def _fit(self, data: TrainingData) -> None:
        frame = data.interactions
        frame = frame.loc[frame["weight"].to_numpy() > 0]
        order = ["user_idx", "timestamp"] if "timestamp" in frame else ["user_idx"]
        frame = frame.sort_values(order, kind="stable")
        tokens = frame["item_idx"].astype(str).to_numpy()
        users = frame["user_idx"].to_numpy()
        bounds = np.flatnonzero(np.diff(users)) + 1
        sentences = [part.tolist() for part in np.split(tokens, bounds)] if len(tokens) else []
        self.vectors_ = unit_rows(word2vec_vectors(sentences, len(data.items), str, self.config))
        n_items = len(data.items)
        step = max(1, _BLOCK_CELLS // max(n_items, 1))
        blocks = []
        for start in range(0, n_items, step):
            block = self.vectors_[start : start + step] @ self.vectors_.T
            block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = 0.0
            blocks.append(top_neighbours(block, self.config.neighbours))
        self.similarity_ = sp.csr_matrix(sp.vstack(blocks, format="csr"))
        self.user_items_ = data.matrix

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray((self.user_items_[np.asarray(user_idx)] @ self.similarity_.T).toarray())

    def item_embeddings(self) -> np.ndarray | None:
        return self.vectors_

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "vector_size": trial.suggest_int("vector_size", 16, 128, log=True),
            "window": trial.suggest_int("window", 2, 50, log=True),
            "negative": trial.suggest_int("negative", 2, 20),
            "ns_exponent": trial.suggest_float("ns_exponent", -1.0, 1.0),
            "epochs": trial.suggest_int("epochs", 3, 20),
            "neighbours": trial.suggest_int("neighbours", 10, 500, log=True),
        }

    def _state(self) -> dict[str, Any]:
        return {"vectors": self.vectors_, "similarity": self.similarity_, "user_items": self.user_items_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.vectors_ = state["vectors"]
        self.similarity_ = state["similarity"]
        self.user_items_ = state["user_items"]
