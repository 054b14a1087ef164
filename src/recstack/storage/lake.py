"""Parquet snapshots of the store: what training reads instead of the live database.

A snapshot is immutable: `<root>/snapshots/<id>/interactions/date=YYYY-MM-DD/*.parquet` (hive partitions
by event date), `items.parquet`, `users.parquet` and a `manifest.json` written last, so a snapshot without a
manifest is incomplete and ignored. `<root>` is a local directory or any fsspec URL (s3://, gs://, memory://).
DuckDB answers SQL over a snapshot without loading it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow.fs import FileSystem, FSSpecHandler, PyFileSystem

from recstack.errors import NotFound
from recstack.storage.store import Store

log = logging.getLogger(__name__)

INTERACTIONS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("value", pa.float64()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("date", pa.string()),
    ]
)


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    path: str
    created_at: int
    interactions: int
    items: int
    users: int
    min_timestamp: int | None
    max_timestamp: int | None


class Lake:
    """Snapshots under one root (a directory or an fsspec URL)."""

    def __init__(self, root: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.root = self.root.rstrip("/")
        self._arrow_fs: FileSystem = PyFileSystem(FSSpecHandler(self.fs))

    def _dir(self, snapshot_id: str) -> str:
        return f"{self.root}/snapshots/{snapshot_id}"

    def write_snapshot(self, store: Store, progress: Callable[[int], None] | None = None) -> Snapshot:
        """Copy the store's interactions, items and users into a new snapshot, streaming in chunks."""
        snapshot_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"
        base = self._dir(snapshot_id)
        self.fs.makedirs(base, exist_ok=True)
        stats = {"n": 0, "min": None, "max": None}

        def batches() -> Any:
            for chunk in store.iter_interactions():
                stats["n"] = int(stats["n"] or 0) + len(chunk)
                lo, hi = int(chunk["timestamp"].min()), int(chunk["timestamp"].max())
                stats["min"] = lo if stats["min"] is None else min(lo, int(stats["min"]))
                stats["max"] = hi if stats["max"] is None else max(hi, int(stats["max"]))
                millis = chunk["timestamp"].to_numpy("int64")
                date = pd.to_datetime(millis, unit="ms", utc=True).strftime("%Y-%m-%d")
                columns = {name: chunk[name].to_numpy() for name in ("event_id", "user_id", "item_id", "event_type")}
                arrays = [pa.array(columns[name], pa.string()) for name in columns]
                arrays += [
                    pa.array(chunk["value"].to_numpy("float64"), pa.float64()),
                    pa.array(millis, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                    pa.array(date.to_numpy(object), pa.string()),
                ]
                yield from pa.Table.from_arrays(arrays, schema=INTERACTIONS_SCHEMA).to_batches()
                if progress is not None:
                    progress(len(chunk))

        ds.write_dataset(
            batches(),
            f"{base}/interactions",
            schema=INTERACTIONS_SCHEMA,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
            filesystem=self._arrow_fs,
            existing_data_behavior="overwrite_or_ignore",
            max_rows_per_group=1 << 20,
            max_partitions=1 << 20,  # one per day: a history of decades is tens of thousands
        )
        items, users = store.read_items(), store.read_users()
        for name, frame in (("items", items), ("users", users)):
            table = pa.Table.from_pandas(_jsonable(frame), preserve_index=False)
            with self.fs.open(f"{base}/{name}.parquet", "wb") as handle:
                pq.write_table(table, handle)
        snap = Snapshot(
            snapshot_id=snapshot_id, path=base, created_at=int(time.time() * 1000),
            interactions=int(stats["n"] or 0), items=len(items), users=len(users),
            min_timestamp=stats["min"], max_timestamp=stats["max"],  # type: ignore[arg-type]
        )
        with self.fs.open(f"{base}/manifest.json", "w") as handle:
            handle.write(json.dumps(asdict(snap), indent=2))
        log.info("snapshot %s: %d interactions", snapshot_id, snap.interactions)
        return snap

    def list_snapshots(self) -> list[Snapshot]:
        pattern = f"{self.root}/snapshots/*/manifest.json"
        found = []
        for path in sorted(self.fs.glob(pattern)):
            with self.fs.open(path, "r") as handle:
                found.append(Snapshot(**json.loads(handle.read())))
        return found

    def latest(self) -> Snapshot:
        snaps = self.list_snapshots()
        if not snaps:
            raise NotFound(f"no snapshot under {self.root}: run `recstack snapshot` first")
        return snaps[-1]

    def _get(self, snapshot_id: str | None) -> Snapshot:
        if snapshot_id is None:
            return self.latest()
        for snap in self.list_snapshots():
            if snap.snapshot_id == snapshot_id:
                return snap
        raise NotFound(f"no snapshot {snapshot_id!r} under {self.root}")

    def interactions_dataset(self, snapshot_id: str | None = None) -> ds.Dataset:
        snap = self._get(snapshot_id)
        return ds.dataset(
            f"{snap.path}/interactions", format="parquet", partitioning="hive", filesystem=self._arrow_fs,
            schema=INTERACTIONS_SCHEMA,
        )

    def read_interactions(self, snapshot_id: str | None = None) -> pd.DataFrame:
        """Interactions in the model contract: `timestamp` as int64 epoch milliseconds."""
        table = self.interactions_dataset(snapshot_id).to_table(
            columns=["event_id", "user_id", "item_id", "event_type", "value", "timestamp"]
        )
        frame = table.to_pandas()
        frame["timestamp"] = frame["timestamp"].dt.as_unit("ms").astype("int64")
        return frame.sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)

    def read_items(self, snapshot_id: str | None = None) -> pd.DataFrame:
        return self._read_table(snapshot_id, "items")

    def read_users(self, snapshot_id: str | None = None) -> pd.DataFrame:
        return self._read_table(snapshot_id, "users")

    def _read_table(self, snapshot_id: str | None, name: str) -> pd.DataFrame:
        snap = self._get(snapshot_id)
        with self.fs.open(f"{snap.path}/{name}.parquet", "rb") as handle:
            frame = pq.read_table(handle).to_pandas()
        if "attributes" in frame:
            frame["attributes"] = frame["attributes"].map(lambda v: json.loads(v) if isinstance(v, str) else v)
        if "created_at" in frame:
            frame["created_at"] = frame["created_at"].astype("Int64")
        return frame

    def query(self, sql: str, snapshot_id: str | None = None) -> pd.DataFrame:
        """Run DuckDB SQL over a snapshot's `interactions`, `items` and `users`."""
        import duckdb

        con = duckdb.connect()
        try:
            con.register("interactions", self.interactions_dataset(snapshot_id))
            con.register("items", self.read_items(snapshot_id))
            con.register("users", self.read_users(snapshot_id))
            return con.execute(sql).df()
        finally:
            con.close()


    def write_impression_features(self, frame: pd.DataFrame) -> str:
        """Append served impressions with the ranking features the model saw, for training on what was
        shown and not taken: `<root>/impressions/date=YYYY-MM-DD/part-<uuid>.parquet`, one row per item
        (`served_at`, `user_id`, `item_id`, `position`, `model_version`, `request_id`, `feature_names`,
        `features`). Returns the file written."""
        import uuid

        day = pd.Timestamp(int(frame["served_at"].iloc[0]), unit="ms", tz="UTC").strftime("%Y-%m-%d")
        folder = f"{self.root}/impressions/date={day}"
        self.fs.makedirs(folder, exist_ok=True)
        path = f"{folder}/part-{uuid.uuid4().hex}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, filesystem=self._arrow_fs)
        return path

    def read_impression_features(self) -> pd.DataFrame:
        """Every impression row written by `write_impression_features` (empty frame when none)."""
        folder = f"{self.root}/impressions"
        if not self.fs.exists(folder):
            return pd.DataFrame()
        dataset = ds.dataset(folder, filesystem=self._arrow_fs, format="parquet", partitioning="hive")
        return dataset.to_table().to_pandas()


def _jsonable(frame: pd.DataFrame) -> pd.DataFrame:
    """Free-form attribute documents go to Parquet as JSON text; they have no common schema."""
    out = frame.copy()
    if "attributes" in out:
        out["attributes"] = out["attributes"].map(lambda v: None if v is None else json.dumps(v, default=str))
    if "tags" in out:
        out["tags"] = out["tags"].map(lambda v: [] if v is None else [str(x) for x in v])
    return out
