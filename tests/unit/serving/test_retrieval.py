"""Retrieval: exact below the size threshold; above it exact norm bands where they prune, else IVF with recall
tuned to the target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recstack.serving.retrieval import ItemIndex, RetrievalConfig


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(32, dim))
    return (centres[rng.integers(0, 32, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def popular(n: int, dim: int, seed: int) -> np.ndarray:
    """Collaborative-filtering-like vectors: popularity in a heavy-tailed norm."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)) * (rng.pareto(1.5, n) + 0.01)[:, None]).astype(np.float32)


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
    assert index.kind.startswith("ivf")  # norms alike: the bands would scan most of the catalogue
    assert index.scanned_p99 is not None and index.scanned_p99 > config.bands_max_scan
    assert index.recall < 1.0  # measured while tuning, not taken for exact
    assert index.recall is not None and index.recall >= 0.95
    held_out = clustered(300, 16, 4)
    assert index.recall_at(100, held_out) >= 0.9
    ids, _ = index.search(held_out[0], 100)
    assert len(ids) == 100 and len(set(ids.tolist())) == 100


def test_norm_bands_answer_exactly_scanning_a_fraction() -> None:
    items = popular(30_000, 16, 9)
    users = np.random.default_rng(10).normal(size=(600, 16)).astype(np.float32)
    users[:30] = 0  # users without a vector tie on every item: the first band answers them
    index = ItemIndex(items, RetrievalConfig(exact_max_items=5_000, bands_first=1024), queries=users[:300])
    assert index.kind.startswith("bands") and index.recall == 1.0
    assert index.scanned_p99 is not None and index.scanned_p99 <= 0.15
    held_out = users[300:]
    assert index.recall_at(100, held_out) == 1.0
    ids, scores = index.search_many(held_out, 100)
    expected = np.argsort(-(held_out @ items.T), axis=1)[:, :100]
    assert all(set(a.tolist()) == set(b.tolist()) for a, b in zip(ids, expected, strict=True))
    assert np.allclose(scores, np.einsum("nkd,nd->nk", items[ids], held_out), atol=1e-4)
    one, one_scores = index.search(held_out[0], 200)
    assert len(one) == 200 and np.all(np.diff(one_scores) <= 1e-6)


def test_the_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown approximate"):
        ItemIndex(clustered(3_000, 8, 5), RetrievalConfig(exact_max_items=2_000, approximate="lsh"))


@pytest.mark.parametrize("kind", ["bands", "ivf"])
def test_saved_index_opens_memory_mapped_with_the_same_answers(tmp_path: Path, kind: str) -> None:
    items = popular(8_000, 16, 6) if kind == "bands" else clustered(8_000, 16, 6)
    users = clustered(500, 16, 7)
    config = RetrievalConfig(exact_max_items=5_000, approximate=kind, target_recall=0.95, tune_queries=100)
    built = ItemIndex(items, config, queries=users)
    meta = built.save(tmp_path)
    np.save(tmp_path / "items.npy", items)
    opened = ItemIndex.open(tmp_path, np.load(tmp_path / "items.npy", mmap_mode="r").view(np.ndarray), meta, config)
    assert opened.kind == built.kind and opened.recall == built.recall and opened.lifted == (kind == "ivf")
    queries = clustered(50, 16, 8)
    for query in queries[:5]:
        expected_ids, expected_scores = built.search(query, 200)
        ids, scores = opened.search(query, 200)
        assert np.array_equal(ids, expected_ids) and np.allclose(scores, expected_scores)
    many_ids, _ = opened.search_many(queries, 100)
    assert np.array_equal(many_ids, built.search_many(queries, 100)[0])
    assert opened.recall_at(100, queries) == built.recall_at(100, queries)
