"""The serving artefact of a model version: everything a worker needs beyond the model, prepared once.

Preparing a champion for serving — the Faiss index (an IVF index is trained and its `nprobe` tuned against
exact search) and every known user's candidate plan (a scan of every stored history and a batch search),
or for a champion without embeddings its item neighbours and plans ranked by its own batch `score` —
takes tens of seconds on a large catalogue. Done in each worker at start-up and again at each promotion it
made every pod of a rolling restart, and every worker of `--workers N`, wait that long and hold its own copy.

So it is done once per version (`prepare`), by the training job after registration or by the first worker
that finds it missing (under a lock, so N workers on a host build it once), and written as one directory of
plain files: numpy `.npy` arrays and a Faiss index file. `open_artefact` memory-maps them (`mmap_mode="r"`,
`IO_FLAG_MMAP_IFC`): a worker's start or a hot swap is a few file opens, and N workers on one host share one
copy in the page cache. The directory is uploaded to the version's MLflow run (`serving/`), so another host
downloads it instead of rebuilding.

Plans go stale as users act; requests check each plan against the user's current history by fingerprint
(a stable hash, equal in every process) or, on SQLite, by the store's change feed against the row
watermark the plans were made at (no history read), and the background refresh replans the active users.
Content-based novel items are mixed in at request time (they are new since training).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recstack.models.base import Recommender
from recstack.serving.data import Catalog, HistoryReader
from recstack.serving.feedback import FeedbackConfig
from recstack.serving.neighbours import ItemNeighbours
from recstack.serving.plans import UserPlans, build_plans
from recstack.serving.recommender_service import ServingModel, unit_vectors
from recstack.serving.retrieval import ItemIndex, RetrievalConfig

__all__ = ["ARTEFACT_DIR", "Artefact", "open_artefact", "prepare", "prepared", "write_artefact"]

logger = logging.getLogger(__name__)

ARTEFACT_DIR = "serving"
FORMAT = 1
_META = "meta.json"
_PLAN_ARRAYS = ("fingerprints", "planned", "candidates", "scores", "liked_ptr", "liked_ids", "liked_weights")


@dataclass(frozen=True)
class Artefact:
    """An opened serving artefact: the prepared model and its plans (None when it holds none)."""

    model: ServingModel
    plans: UserPlans | None
    meta: dict[str, Any]
    open_seconds: float


def prepared(directory: Path) -> bool:
    """Whether `directory` holds a complete artefact (the metadata is written last)."""
    return (directory / _META).exists()


def write_artefact(
    directory: Path, serving: ServingModel, plans: UserPlans | None, extra: dict[str, Any] | None = None
) -> Path:
    """Write `serving`'s vectors and index and `plans` to `directory`, atomically: into a scratch
    directory beside it, renamed into place when complete (a concurrent reader sees all or nothing)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        meta: dict[str, Any] = {"format": FORMAT, "version": serving.version, "kind": serving.kind,
                                "n_users": len(serving.users), "n_items": len(serving.item_ids), **(extra or {})}
        if serving.index is not None:
            assert serving.user_vectors is not None and serving.item_vectors is not None
            np.save(scratch / "user_vectors.npy", np.ascontiguousarray(serving.user_vectors, dtype=np.float32))
            np.save(scratch / "item_vectors.npy", np.ascontiguousarray(serving.item_vectors, dtype=np.float32))
            meta["index"] = serving.index.save(scratch)
        if serving.neighbours is not None:
            np.save(scratch / "neighbour_items.npy", serving.neighbours.items, allow_pickle=False)
            np.save(scratch / "neighbour_scores.npy", serving.neighbours.scores, allow_pickle=False)
            meta["neighbours"] = int(serving.neighbours.items.shape[1])
        if plans is not None:
            (scratch / "plans").mkdir()
            for name in _PLAN_ARRAYS:
                np.save(scratch / "plans" / f"{name}.npy", np.asarray(getattr(plans, name)), allow_pickle=False)
            np.save(scratch / "plans" / "catalog_ids.npy", plans.catalog.ids.astype(str), allow_pickle=False)
            np.save(scratch / "plans" / "catalog_duration.npy", plans.catalog.duration_s, allow_pickle=False)
            if plans.unknown_ptr is not None and plans.unknown_ids is not None:
                np.save(scratch / "plans" / "unknown_ptr.npy", plans.unknown_ptr, allow_pickle=False)
                np.save(scratch / "plans" / "unknown_ids.npy", plans.unknown_ids, allow_pickle=False)
            meta["plans"] = {"size": plans.size, "planned": int(np.asarray(plans.planned).sum()),
                             "build_seconds": plans.build_seconds, "watermark": plans.watermark}
        (scratch / _META).write_text(json.dumps(meta, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(scratch, directory)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return directory


def open_artefact(
    directory: Path, model: Recommender[Any], version: int | None, catalog: Catalog | None,
    retrieval: RetrievalConfig | None = None,
) -> Artefact:
    """Memory-map the artefact in `directory` for `model` (the same version's fitted model): no array is
    copied and nothing is rebuilt. `catalog` is the current one: items whose duration changed since the
    plans were made are marked so that plans whose history holds them take the live path."""
    started = time.perf_counter()
    meta = json.loads((directory / _META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"serving artefact {directory} has format {meta.get('format')}, expected {FORMAT}")
    if meta["n_users"] != len(model.users) or meta["n_items"] != len(model.items):
        raise ValueError(f"serving artefact {directory} was prepared for another model")
    if "index" in meta:
        user_vectors = _mapped(directory / "user_vectors.npy")
        item_vectors = _mapped(directory / "item_vectors.npy")
        index = ItemIndex.open(directory, item_vectors, meta["index"], retrieval)
        # Unit vectors are item-sized (d × items floats), derived in a fraction of a second.
        serving = ServingModel.assemble(model, version, user_vectors, item_vectors, unit_vectors(
            np.asarray(item_vectors)), index)
    else:
        neighbours: ItemNeighbours | None
        if "neighbours" in meta:
            neighbours = ItemNeighbours(_mapped(directory / "neighbour_items.npy"),
                                        _mapped(directory / "neighbour_scores.npy"))
        else:  # prepared before artefacts kept them
            neighbours = ItemNeighbours.of_model(model)
        serving = ServingModel.assemble(model, version, None, None, None, None, neighbours)
    plans = None
    if "plans" in meta:
        arrays = {name: _mapped(directory / "plans" / f"{name}.npy") for name in _PLAN_ARRAYS}
        planned_ids = np.load(directory / "plans" / "catalog_ids.npy").astype(object)
        planned_duration = np.load(directory / "plans" / "catalog_duration.npy")
        stale = _stale_items(planned_ids, planned_duration, catalog)
        # Written by artefacts since the change feed; without them every request checks the history.
        unknown = directory / "plans" / "unknown_ptr.npy"
        unknown_ptr = _mapped(unknown) if unknown.exists() else None
        unknown_ids = np.load(directory / "plans" / "unknown_ids.npy") if unknown.exists() else None
        plans = UserPlans(
            model=serving, catalog=catalog if catalog is not None else _catalog_of(planned_ids, planned_duration),
            fingerprints=arrays["fingerprints"], planned=arrays["planned"], candidates=arrays["candidates"],
            scores=arrays["scores"], liked_ptr=arrays["liked_ptr"], liked_ids=arrays["liked_ids"],
            liked_weights=arrays["liked_weights"], novel=None, build_seconds=float(meta["plans"]["build_seconds"]),
            stale_items=stale, watermark=int(meta["plans"].get("watermark", -1)) if unknown_ptr is not None else -1,
            unknown_ptr=unknown_ptr, unknown_ids=unknown_ids,
        )
    elapsed = time.perf_counter() - started
    logger.info("serving artefact %s opened in %.2f s", directory, elapsed)
    return Artefact(serving, plans, meta, elapsed)


def _mapped(path: Path) -> np.ndarray:
    """The array in `path`, memory-mapped read-only, as a plain ndarray view of the mapping (`np.memmap`'s
    Python-level indexing costs a request more than the lookup itself)."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


def _stale_items(ids: np.ndarray, duration: np.ndarray, catalog: Catalog | None) -> frozenset[str]:
    """Planned items whose duration (which decides a watch event's polarity) is not the current one."""
    if catalog is None:
        return frozenset()
    pos = catalog.positions(ids)
    now = np.where(pos >= 0, catalog.duration_s[np.maximum(pos, 0)], np.nan) if len(pos) else np.empty(0)
    differs = ~((now == duration) | (np.isnan(now) & np.isnan(duration)))
    return frozenset(str(i) for i in ids[differs].tolist())


def _catalog_of(ids: np.ndarray, duration: np.ndarray) -> Catalog:
    n = len(ids)
    return Catalog(ids, np.full(n, None, dtype=object), np.full(n, -1, dtype=np.int32), {}, np.ones(n, dtype=bool),
                   duration, np.zeros(n, dtype=np.float32), np.arange(n), pd.Index(ids, dtype=object))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock beside `directory`: one process of the host prepares, the others wait for it."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(
    directory: Path, model: Recommender[Any], version: int | None, reader: HistoryReader, catalog: Catalog | None,
    feedback: FeedbackConfig | None = None, retrieval: RetrievalConfig | None = None, plan_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Build the artefact of `model` into `directory` unless it is there; True when this call built it.

    `reader` scans every stored history (the plans are made from what requests will read); without a
    `catalog` (an empty store) only the index or item neighbours are prepared. `progress(n)` is called as
    users are planned (the model's `len(users)` in all)."""
    with _locked(directory):
        if prepared(directory):
            return False
        started = time.perf_counter()
        serving = ServingModel.build(model, version, retrieval)
        plans = None
        if catalog is not None and plan_size > 0:
            pos, _, available = catalog.attributes(serving.item_ids, unknown_available=True)
            share = float(1.0 - available.mean()) if len(pos) else 0.0
            plans = build_plans(serving, reader, catalog, feedback or FeedbackConfig(), plan_size, share,
                                progress=progress)
        write_artefact(directory, serving, plans, {"prepare_seconds": time.perf_counter() - started})
        logger.info("serving artefact for %s v%s prepared in %.1f s", serving.kind, version,
                    time.perf_counter() - started)
        return True
