"""Candidate retrieval: the best items by inner product with a model's item embeddings.

Small catalogues get an exact Faiss `IndexFlatIP`. Above `exact_max_items`, the items sorted by norm and
searched exactly in bands that stop where no item left can beat the k-th best (`_Bands`) — when 99 % of
the sample queries scan at most `bands_max_scan` of the catalogue — else an inverted-file index (`IndexIVFFlat`
over vectors lifted so that inner-product order becomes L2 order) whose `nprobe` is raised until the
measured recall@k against exact search reaches `target_recall` (or the index is probed in full). Recall and
scan are measured on real query vectors (the model's user embeddings), so they say what the service gets.
At a million ALS items the IVF had to probe every list and HNSW graphs (lifted or by inner product) stayed
below 0.83 recall@100; the bands answer exactly scanning 0.6 % of the items on average (BENCHMARKS.md).
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
BANDS_VECTORS = "bands_vectors.npy"
BANDS_ORDER = "bands_order.npy"

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
    """`bands`, `ivf`, or `auto`: the norm bands when 99 % of the sample queries scan at most
    `bands_max_scan` of the catalogue, else the IVF."""
    bands_first: int = 4096
    bands_max_scan: float = 0.15


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
        self.index: faiss.Index | None = self._exact
        self.kind = "exact"
        self.recall: float | None = 1.0
        self.scanned: float | None = None
        self.scanned_p99: float | None = None
        self.lifted = False
        self._bands: _Bands | None = None
        if self.n_items > self.config.exact_max_items:
            kind = self._approximate()
            if kind in ("bands", "auto"):
                self._build_bands(vectors, queries)
            if kind == "auto" and (self.scanned_p99 or 0.0) > self.config.bands_max_scan:
                self._bands = None
                kind = "ivf"
            if kind == "ivf":
                self._build_ivf(vectors, queries)
        self.build_seconds = time.perf_counter() - started
        logger.info(
            "item index: %s over %d items × %d dims in %.2f s (recall@%d %.3f)",
            self.kind, self.n_items, self.dim, self.build_seconds, self.config.recall_k, self.recall or 0.0,
        )

    @property
    def _faiss(self) -> faiss.Index:
        assert self.index is not None, "the norm bands have no Faiss index"
        return self.index

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
        meta: dict[str, Any] = {"kind": self.kind, "recall": self.recall, "lifted": self.lifted,
                                "n_items": self.n_items, "dim": self.dim, "build_seconds": self.build_seconds}
        if self._bands is not None:
            np.save(directory / BANDS_VECTORS, self._bands.vectors)
            np.save(directory / BANDS_ORDER, self._bands.order)
            meta.update(bands=self._bands.starts.tolist(), band_norms=self._bands.norms.tolist(),
                        scanned=self.scanned, scanned_p99=self.scanned_p99)
        else:
            faiss.write_index(self._faiss, str(directory / INDEX_FILE))
        return meta

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
        self._bands = None
        if "bands" in meta:
            self.index = None
            self._bands = _Bands(np.load(directory / BANDS_VECTORS, mmap_mode="r").view(np.ndarray),
                                 np.load(directory / BANDS_ORDER, mmap_mode="r").view(np.ndarray),
                                 np.asarray(meta["bands"], dtype=np.int64),
                                 np.asarray(meta["band_norms"], dtype=np.float32))
        else:
            self.index = faiss.read_index(str(directory / INDEX_FILE), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        self.lifted = bool(meta["lifted"])
        self._exact = self.index if meta["kind"] == "exact" else None
        self.kind, self.recall, self.scanned = str(meta["kind"]), meta.get("recall"), meta.get("scanned")
        self.scanned_p99 = meta.get("scanned_p99")
        self.build_seconds = float(meta.get("build_seconds", 0.0))
        return self

    def _approximate(self) -> str:
        kind = self.config.approximate
        if kind not in ("auto", "bands", "ivf"):
            raise ValueError(f"unknown approximate index {kind!r} (auto, bands or ivf)")
        return kind

    def _build_bands(self, vectors: np.ndarray, queries: np.ndarray | None) -> None:
        """Exact search in bands of decreasing norm that stops when no item left can beat the k-th best.

        q·v ≤ |q| |v| bounds every score of a band by |q| × its largest norm; once that is below the k-th
        score found, no later band can change the answer. Collaborative-filtering vectors carry
        popularity in their norm (ALS at a million items: largest norm 28.5, median 0.005), so the top-k of
        most users lies in the first few thousand items. Bands double in size from `bands_first`. The mean
        share of the catalogue scanned on the sample queries is `scanned` (`scanned_p99`: its 99th
        percentile, which sets the slow searches); the answer is exact.
        """
        norms = np.linalg.norm(vectors, axis=1)
        order = np.argsort(-norms, kind="stable")
        starts = [0]
        while starts[-1] < self.n_items:
            starts.append(min(self.n_items, max(self.config.bands_first, 2 * starts[-1])))
        bounds = np.asarray(starts, dtype=np.int64)
        self._bands = _Bands(np.ascontiguousarray(vectors[order]), order.astype(np.int64), bounds,
                             norms[order][bounds[:-1]].astype(np.float32))
        self.index = None
        sample = self._sample_queries(vectors, queries, np.random.default_rng(self.config.seed))
        _, _, scanned = self._bands.search(sample, self.config.recall_k)
        self.scanned = float(scanned.mean() / self.n_items)
        self.scanned_p99 = float(np.percentile(scanned, 99) / self.n_items)
        self.recall = 1.0
        self.kind = f"bands{len(bounds) - 1},scan{self.scanned:.3f}"

    @staticmethod
    def _lifted(vectors: np.ndarray) -> np.ndarray:
        """The vectors lifted onto a sphere, where inner-product order becomes L2 order.

        Clustering for inner product directly (`METRIC_INNER_PRODUCT`) favours long vectors and needs most
        lists probed; appending sqrt(M² - |v|²) to each item (M the largest
        norm) and 0 to each query makes |q - v|² = |q|² + M² - 2 q·v, so the L2 nearest items are the
        best-scoring ones.
        """
        norms = np.linalg.norm(vectors, axis=1)
        lift = np.sqrt(np.maximum(float(norms.max()) ** 2 - norms**2, 0.0)).astype(np.float32)
        return np.ascontiguousarray(np.hstack([vectors, lift[:, None]]), dtype=np.float32)

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
        if self._bands is not None:
            ids, scores, _ = self._bands.search(np.asarray(query, dtype=np.float32).reshape(1, -1), k)
            keep = ids[0] >= 0
            return ids[0][keep], scores[0][keep]
        if not self.lifted:
            scores, ids = self._faiss.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
            keep = ids[0] >= 0
            return ids[0][keep].astype(np.int64), scores[0][keep]
        _, ids = self._faiss.search(self._lift(query.reshape(1, -1)), k)
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
        if self._bands is not None:
            ids, scores, _ = self._bands.search(queries, k)
            return ids, scores
        if not self.lifted:
            scores, ids = self._faiss.search(queries, k)
            return ids.astype(np.int64), np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        _, ids = self._faiss.search(self._lift(queries), k)
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
        if (self.index is not None and self.index is self._exact) or k == 0 or len(queries) == 0:
            return 1.0
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        exact_scores, _ = self.exact.search(queries, k)
        approx, _ = self.search_many(queries, k)
        hits = 0
        for query, row, kth in zip(queries, approx, exact_scores[:, -1], strict=True):
            found = row[row >= 0]
            scores = self._vectors[found] @ query
            hits += int((scores >= kth - 1e-6 * max(1.0, abs(float(kth)))).sum())
        return float(hits / (k * len(queries)))


@dataclass(frozen=True)
class _Bands:
    """Item vectors sorted by decreasing norm (`order[i]`: the item index of row i), cut at `starts`;
    `norms[b]`: the largest norm in band b."""

    vectors: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    norms: np.ndarray

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, k) item indices and scores in descending order (-1 / -inf padding), and how many items
        each query scanned."""
        n = len(queries)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        best = np.full((n, k), -1, dtype=np.int64)
        top = np.full((n, k), -np.inf, dtype=np.float32)
        scanned = np.zeros(n, dtype=np.int64)
        bound = np.linalg.norm(queries, axis=1) * (1.0 + 1e-5)
        active = np.arange(n)
        for band, (start, end) in enumerate(zip(self.starts[:-1], self.starts[1:], strict=True)):
            if band:
                active = active[bound[active] * self.norms[band] > top[active, -1]]
            if not len(active):
                break
            rows = max(1, (1 << 24) // int(end - start))  # bounds the score block to 64 MiB
            for at in range(0, len(active), rows):
                chunk = active[at : at + rows]
                scores = queries[chunk] @ self.vectors[start:end].T
                ids = np.broadcast_to(np.arange(start, end, dtype=np.int64), scores.shape)
                merged_scores = np.hstack([top[chunk], scores])
                merged_ids = np.hstack([best[chunk], ids])
                keep = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
                kept = np.take_along_axis(merged_scores, keep, axis=1)
                order = np.argsort(-kept, axis=1, kind="stable")
                top[chunk] = np.take_along_axis(kept, order, axis=1)
                best[chunk] = np.take_along_axis(np.take_along_axis(merged_ids, keep, axis=1), order, axis=1)
            scanned[active] += end - start
        found = best >= 0
        return np.where(found, self.order[np.maximum(best, 0)], -1), top, scanned
