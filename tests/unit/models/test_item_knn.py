"""Item-kNN (cosine and BM25) meets the Recommender contract and beats popularity."""

from __future__ import annotations

from typing import Any, ClassVar

from recstack.models.item_knn import ItemKNN
from recstack.testing.recommender import RecommenderContract


class TestItemKNN(RecommenderContract):
    model_class = ItemKNN
    ndcg_floor = 0.34


class TestItemKNNBM25(RecommenderContract):
    model_class = ItemKNN
    params: ClassVar[dict[str, Any]] = {"similarity": "bm25", "neighbours": 50}
    ndcg_floor = 0.34
