"""Candidate retrieval: a Faiss inner-product index over a model's item embeddings.

Small catalogues get an exact `IndexFlatIP`. Above `exact_max_items` the vectors are lifted so that
inner-product order becomes L2 order and searched approximately: up to `hnsw_min_items` items by an
inverted-file index (`IndexIVFFlat`, `nprobe` raised until the measured recall@k against exact search reaches
`target_recall`), above it by an HNSW graph (`IndexHNSWFlat`, `efSearch` raised the same way). At a million
ALS items the IVF had to probe every list to reach 0.95, so it was no faster than exact search; the graph
reaches it visiting a few thousand items. The recall is measured on real query vectors (the model's user
embeddings), so `recall` says what the service actually gets, not what a benchmark of random vectors would.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recstack.errors import MissingExtra

try:
    import faiss
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("faiss", "serve") from exc

__all__ = ["INDEX_FILE", "ItemIndex", "RetrievalConfig"]

INDEX_FILE = "index.faiss"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalConfig:
    """`exact_max_items`: largest catalogue searched exactly. `target_recall` at `recall_k` is what the
    approximate index is tuned to on `tune_queries` sample queries."""

    exact_max_items: int = 50_000
    target_recall: float = 0.97
    recall_k: int = 100
    tune_queries: int = 500
    seed: int = 0
    approximate: str = "auto"
    """`ivf`, `hnsw`, or `auto`: IVF up to `hnsw_min_items` items, HNSW above."""
    hnsw_min_items: int = 250_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    hnsw_max_ef_search: int = 4096


class ItemIndex:
    """Top-k items by inner product with a query vector; ids are the model's item indices.

    `search` returns `(indices, scores)` in descending score order, without the -1 padding Faiss uses
    when fewer than k items exist. Thread-safe for concurrent searches (Faiss releases the GIL).
    """

    def __init__(
        self, item_vectors: np.ndarray, config: RetrievalConfig | None = None, queries: np.ndarray | None = None
    ) -> None:
        self.config = config or RetrievalConfig()
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.n_items, self.dim = vectors.shape
        started = time.perf_counter()
        self._vectors = vectors
        self._exact: faiss.Index | None = faiss.IndexFlatIP(self.dim)
        self._exact.add(vectors)
        self.index: faiss.Index = self._exact
        self.kind = "exact"
        self.recall: float | None = 1.0
        self.lifted = False
        if self.n_items > self.config.exact_max_items:
            if self._approximate() == "hnsw":
                self._build_hnsw(vectors, queries)
            else:
                self._build_ivf(vectors, queries)
        self.build_seconds = time.perf_counter() - started
        logger.info(
            "item index: %s over %d items × %d dims in %.2f s (recall@%d %.3f)",
            self.kind, self.n_items, self.dim, self.build_seconds, self.config.recall_k, self.recall or 0.0,
        )

    @property
    def exact(self) -> faiss.Index:
        """Exact inner-product search over the same vectors (built on first use by an opened index)."""
        if self._exact is None:
            exact = faiss.IndexFlatIP(self.dim)
            exact.add(np.ascontiguousarray(self._vectors, dtype=np.float32))
            self._exact = exact
        return self._exact

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the serving index to `directory/index.faiss`; the returned description goes into the
        artefact's metadata (the item vectors are stored beside it by the caller)."""
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        return {"kind": self.kind, "recall": self.recall, "lifted": self.lifted, "n_items": self.n_items,
                "dim": self.dim, "build_seconds": self.build_seconds}

    @classmethod
    def open(cls, directory: Path, vectors: np.ndarray, meta: dict[str, Any],
             config: RetrievalConfig | None = None) -> ItemIndex:
        """The index `save` wrote, memory-mapped (`IO_FLAG_MMAP_IFC`: the codes and inverted lists stay in the
        file, so every worker on the host shares one copy in the page cache). `vectors` are the item
        vectors it was built from (a memory-mapped array too)."""
        self = cls.__new__(cls)
        self.config = config or RetrievalConfig()
        self.n_items, self.dim = int(meta["n_items"]), int(meta["dim"])
        self._vectors = vectors
        self.index = faiss.read_index(str(directory / INDEX_FILE), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        self.lifted = bool(meta["lifted"])
        self._exact = None if self.lifted else self.index
        self.kind, self.recall = str(meta["kind"]), meta.get("recall")
        self.build_seconds = float(meta.get("build_seconds", 0.0))
        return self

    def _approximate(self) -> str:
        kind = self.config.approximate
        if kind == "auto":
            return "hnsw" if self.n_items > self.config.hnsw_min_items else "ivf"
        if kind not in ("ivf", "hnsw"):
            raise ValueError(f"unknown approximate index {kind!r} (ivf, hnsw or auto)")
        return kind

    @staticmethod
    def _lifted(vectors: np.ndarray) -> np.ndarray:
        """The vectors lifted onto a sphere, where inner-product order becomes L2 order.

        Indexing for inner product directly (`METRIC_INNER_PRODUCT`) favours long vectors (IVF needs most
        lists probed, an HNSW graph links poorly); appending sqrt(M² - |v|²) to each item (M the largest
        norm) and 0 to each query makes |q - v|² = |q|² + M² - 2 q·v, so the L2 nearest items are the
        best-scoring ones.
        """
        norms = np.linalg.norm(vectors, axis=1)
        lift = np.sqrt(np.maximum(float(norms.max()) ** 2 - norms**2, 0.0)).astype(np.float32)
        return np.ascontiguousarray(np.hstack([vectors, lift[:, None]]), dtype=np.float32)

    def _build_hnsw(self, vectors: np.ndarray, queries: np.ndarray | None) -> None:
        """HNSW graph over the lifted vectors; `efSearch` (stored in the index file) raised until the
        measured recall reaches the target or `hnsw_max_ef_search`."""
        hnsw = faiss.IndexHNSWFlat(self.dim + 1, self.config.hnsw_m, faiss.METRIC_L2)
        hnsw.hnsw.efConstruction = self.config.hnsw_ef_construction
        hnsw.add(self._lifted(vectors))
        self.index = hnsw
        self.lifted = True
        sample = self._sample_queries(vectors, queries, np.random.default_rng(self.config.seed))
        ef = self.config.recall_k
        while True:
            hnsw.hnsw.efSearch = ef
            self.recall = self.recall_at(self.config.recall_k, sample)
            if self.recall >= self.config.target_recall or ef >= self.config.hnsw_max_ef_search:
                break
            ef = min(self.config.hnsw_max_ef_search, int(ef * 1.5))
        self.kind = f"hnsw{self.config.hnsw_m},efSearch{ef}"

    def _build_ivf(self, vectors: np.ndarray, queries: np.ndarray | None) -> None:
        """IVF over the lifted vectors; `nprobe` raised until the measured recall reaches the target."""
        lifted = self._lifted(vectors)
        nlist = max(16, int(4 * math.sqrt(self.n_items)))
        quantizer = faiss.IndexFlatL2(self.dim + 1)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim + 1, nlist, faiss.METRIC_L2)
        rng = np.random.default_rng(self.config.seed)
        ivf.train(lifted[rng.choice(self.n_items, size=min(self.n_items, 64 * nlist), replace=False)])
        ivf.add(lifted)
        self.index = ivf
        self.lifted = True
        sample = self._sample_queries(vectors, queries, rng)
        nprobe = 8
        while True:
            ivf.nprobe = nprobe
            self.recall = self.recall_at(self.config.recall_k, sample)
            if self.recall >= self.config.target_recall or nprobe >= nlist:
                break
            nprobe = min(nlist, int(nprobe * 1.5))
        self.kind = f"ivf{nlist},nprobe{nprobe}"

    def _sample_queries(self, vectors: np.ndarray, queries: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        source = queries if queries is not None and len(queries) else vectors
        size = min(len(source), self.config.tune_queries)
        return np.ascontiguousarray(source[rng.choice(len(source), size=size, replace=False)], dtype=np.float32)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best items for one query vector (d,), as int64 indices and float32 scores."""
        k = min(k, self.n_items)
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if not self.lifted:
            scores, ids = self.index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
            keep = ids[0] >= 0
            return ids[0][keep].astype(np.int64), scores[0][keep]
        _, ids = self.index.search(self._lift(query.reshape(1, -1)), k)
        found = ids[0][ids[0] >= 0].astype(np.int64)
        # L2 distances in the lifted space are not scores: score the few candidates exactly.
        scores = self._vectors[found] @ np.asarray(query, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return found[order], scores[order].astype(np.float32)

    def search_many(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`search` for each row of `queries` (n, d) at once: (n, k) indices and scores, each row in
        descending score order, padded with -1 / -inf where fewer than k items were found."""
        k = min(k, self.n_items)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if k <= 0 or not len(queries):
            return np.empty((len(queries), 0), dtype=np.int64), np.empty((len(queries), 0), dtype=np.float32)
        if not self.lifted:
            scores, ids = self.index.search(queries, k)
            return ids.astype(np.int64), np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        _, ids = self.index.search(self._lift(queries), k)
        ids = ids.astype(np.int64)
        scores = np.einsum("nkd,nd->nk", self._vectors[np.maximum(ids, 0)], queries)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)

    def _lift(self, queries: np.ndarray) -> np.ndarray:
        padded = np.zeros((len(queries), self.dim + 1), dtype=np.float32)
        padded[:, : self.dim] = queries
        return padded

    def recall_at(self, k: int, queries: np.ndarray) -> float:
        """Mean share of the exact top-`k` that the serving index also returns in its top-`k`.

        An approximate item scoring at least the exact k-th score counts as a hit: when several items tie
        at the boundary, which of them the exact search lists is arbitrary.
        """
        k = min(k, self.n_items)
        if not self.lifted or k == 0 or len(queries) == 0:
            return 1.0
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        exact_scores, _ = self.exact.search(queries, k)
        if self.lifted:
            _, approx = self.index.search(self._lift(queries), k)
        else:
            _, approx = self.index.search(queries, k)
        hits = 0
        for query, row, kth in zip(queries, approx, exact_scores[:, -1], strict=True):
            found = row[row >= 0]
            scores = self._vectors[found] @ query
            hits += int((scores >= kth - 1e-6 * max(1.0, abs(float(kth)))).sum())
        return float(hits / (k * len(queries)))
