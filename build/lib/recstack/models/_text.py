"""Item metadata → token lists, shared by the content-based models (TF-IDF, text2vec).

Categories and tags become single prefixed tokens (`category:drama`, `tag:space_opera`) so that a tag is
one feature rather than a bag of its words and never collides with a title word; title and description are
split into lower-case words with English stop words removed.
"""

from __future__ import annotations

import re
from typing import Any, Final

import numpy as np
import pandas as pd

__all__ = ["TEXT_FIELDS", "item_documents", "tag_list"]

TEXT_FIELDS: Final = ("title", "category", "tags", "description")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# A short list: enough to keep function words out of Word2Vec contexts without importing scikit-learn here.
_STOP: Final = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    }
)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def tag_list(value: Any) -> list[str]:
    """Tags from a list/array of str or a "|"-separated string; empty for missing values."""
    if _missing(value):
        return []
    if isinstance(value, str):
        parts = value.split("|")
    elif isinstance(value, list | tuple | np.ndarray):
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    return [p.strip() for p in parts if p.strip()]


def _slug(text: str) -> str:
    return "_".join(_WORD.findall(text.lower()))


def _words(value: Any) -> list[str]:
    if _missing(value):
        return []
    return [w for w in _WORD.findall(str(value).lower()) if w not in _STOP and len(w) > 1]


def item_documents(features: pd.DataFrame | None, n_items: int) -> list[list[str]]:
    """One token list per item, in the frame's row order (the model's item order).

    `features` has optional columns `title`, `category`, `tags`, `description`; with no frame every item
    gets an empty document.
    """
    if features is None:
        return [[] for _ in range(n_items)]
    columns = {f: features[f].tolist() if f in features else [None] * n_items for f in TEXT_FIELDS}
    documents: list[list[str]] = []
    for title, category, tags, description in zip(*(columns[f] for f in TEXT_FIELDS), strict=True):
        tokens = _words(title)
        tokens += [f"category:{_slug(c)}" for c in tag_list(category)]
        tokens += [f"tag:{_slug(t)}" for t in tag_list(tags)]
        tokens += _words(description)
        documents.append([t for t in tokens if not t.endswith(":")])
    return documents
