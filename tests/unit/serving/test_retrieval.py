"""Faiss retrieval: exact below the size threshold, IVF above it with recall tuned to the target."""

from __future__ import annotations

import numpy as np

from recstack.serving.retrieval import ItemIndex, RetrievalConfig


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(32, dim))
    return (centres[rng.integers(0, 32, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def test_small_catalogues_are_searched_exactly() -> None:
    items = clustered(500, 8, 1)
    index = ItemIndex(items, RetrievalConfig(exact_max_items=1000))
    query = items[3]
    ids, scores = index.search(query, 10)
    expected = np.argsort(-(items @ query), kind="stable")[:10]
    assert index.kind == "exact" and index.recall == 1.0
    assert set(ids.tolist()) == set(expected.tolist())
    assert np.all(np.diff(scores) <= 1e-6)
    assert len(index.search(query, 10_000)[0]) == 500


def test_large_catalogues_use_ivf_with_measured_recall() -> None:
    items = clustered(20_000, 16, 2)
    users = clustered(2_000, 16, 3)
    config = RetrievalConfig(exact_max_items=5_000, target_recall=0.95, tune_queries=200)
    index = ItemIndex(items, config, queries=users)
    assert index.kind.startswith("ivf")
    assert index.recall is not None and index.recall >= 0.95
    held_out = clustered(300, 16, 4)
    assert index.recall_at(100, held_out) >= 0.9
    ids, _ = index.search(held_out[0], 100)
    assert len(ids) == 100 and len(set(ids.tolist())) == 100
