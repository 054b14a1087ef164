"""Content vectors of catalogue items, so items the champion never saw can still be recommended.

A collaborative champion knows only the items it was trained on; an item added since (`PUT /v1/items/{id}`,
or catalogue rows without interactions) has no embedding. TF-IDF over each item's title, category, tags and
description (the tokens of `recstack.models.tfidf`) is fitted on the catalogue when the server starts; new
items are transformed with that vocabulary, so adding one costs a single transform, never a refit. The
sparse rows are reduced to a few dense dimensions (truncated SVD, i.e. LSA) so that comparing a user's recent
items with thousands of new items costs one small matrix-vector product on the request path.

The index is immutable: `with_item` returns a copy, swapped in by reference like the catalogue.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import sqlalchemy as sa
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from recstack.models._text import TEXT_FIELDS, item_documents
from recstack.serving.data import engine_of
from recstack.storage import Store
from recstack.storage import tables as t

__all__ = ["ContentIndex", "load_content"]

_DIMS = 64


def _identity(tokens: list[str]) -> list[str]:
    return tokens


@dataclass(frozen=True, eq=False)
class ContentIndex:
    """Unit-length LSA vectors of the items' TF-IDF, one row per item id (cosine = dot product), oldest
    item first (items added later are appended)."""

    vectorizer: TfidfVectorizer
    svd: TruncatedSVD | None
    ids: list[str]
    vectors: np.ndarray

    @classmethod
    def fit(cls, items: pd.DataFrame) -> ContentIndex | None:
        """Fit on `items` (column `item_id` plus any of title, category, tags, description); None when the
        catalogue has no text at all."""
        documents = item_documents(items, len(items))
        if not any(documents):
            return None
        vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True)
        tfidf = sp.csr_matrix(normalize(vectorizer.fit_transform(documents)), dtype=np.float32)
        svd = None
        if tfidf.shape[1] > _DIMS and tfidf.shape[0] > _DIMS:
            svd = TruncatedSVD(_DIMS, random_state=0).fit(tfidf)
        index = cls(vectorizer, svd, [str(i) for i in items["item_id"].tolist()], np.empty((0, 0), np.float32))
        return ContentIndex(vectorizer, svd, index.ids, index._dense(tfidf))

    def _dense(self, tfidf: sp.csr_matrix) -> np.ndarray:
        reduced = self.svd.transform(tfidf) if self.svd is not None else tfidf.toarray()
        return np.ascontiguousarray(normalize(reduced), dtype=np.float32)

    @functools.cached_property
    def position(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.ids)}

    def transform(self, item: dict[str, Any]) -> np.ndarray:
        """The (1, dims) vector of one item's text, in this index's space."""
        documents = item_documents(pd.DataFrame([{f: item.get(f) for f in TEXT_FIELDS}]), 1)
        return self._dense(sp.csr_matrix(normalize(self.vectorizer.transform(documents)), dtype=np.float32))

    def with_item(self, item_id: str, item: dict[str, Any]) -> ContentIndex:
        """A copy where `item_id` has the vector of `item`'s text (appended when new)."""
        row = self.transform(item)
        pos = self.position.get(item_id)
        if pos is None:
            return ContentIndex(self.vectorizer, self.svd, [*self.ids, item_id], np.vstack([self.vectors, row]))
        vectors = self.vectors.copy()
        vectors[pos] = row[0]
        return ContentIndex(self.vectorizer, self.svd, self.ids, vectors)

    def profile(self, item_ids: list[str], weights: list[float] | None = None) -> np.ndarray | None:
        """The unit-length weighted sum of these items' vectors, None when none has content."""
        lookup = self.position
        pairs = [(lookup[i], w) for i, w in zip(item_ids, weights or [1.0] * len(item_ids), strict=True)
                 if i in lookup and w > 0]
        if not pairs:
            return None
        summed = np.asarray([w for _, w in pairs], dtype=np.float32) @ self.vectors[[p for p, _ in pairs]]
        norm = float(np.linalg.norm(summed))
        return (summed / norm).astype(np.float32) if norm > 0 else None

    @functools.cached_property
    def _row_index(self) -> pd.Index:
        return pd.Index(self.ids, dtype=object)

    def profiles(self, ptr: np.ndarray, item_ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`profile` of many users at once, given as CSR (user u's items are `item_ids[ptr[u]:ptr[u + 1]]`),
        as rows (zero where it would be None), and which rows have one. Vectorised: at start-up this runs
        over every user's profile items, millions of them."""
        n_users = len(ptr) - 1
        rows = self._row_index.get_indexer(np.asarray(item_ids, dtype=object))
        bounds = np.asarray(ptr, dtype=np.int64)
        users = np.repeat(np.arange(n_users), bounds[1:] - bounds[:-1])
        weights = np.asarray(weights, dtype=np.float32)
        keep = (rows >= 0) & (weights > 0)
        matrix = sp.csr_matrix((weights[keep], (users[keep], rows[keep])), shape=(n_users, len(self.ids)))
        summed = np.asarray(matrix @ self.vectors, dtype=np.float32)
        norms = np.linalg.norm(summed, axis=1)
        has = norms > 0
        summed[has] /= norms[has, None]
        return summed, has


def load_content(store: Store) -> ContentIndex | None:
    """The content index of the stored catalogue (one query)."""
    i = t.items.c
    with engine_of(store).connect() as conn:
        rows = conn.execute(
            sa.select(i.item_id, i.title, i.category, i.tags, i.description).order_by(i.created_at, i.item_id)
        ).all()
    frame = pd.DataFrame(rows, columns=["item_id", "title", "category", "tags", "description"])
    return ContentIndex.fit(frame)
