"""The batch ETL on the embedded engine, and the per-chunk steps every engine shares.

ETL turns raw interaction rows (a lakehouse snapshot or the store's table) into what training and analysis
read: the rows validated (`recstack.schema`), de-duplicated by `event_id` and weighted
(`recstack.processing.weighting`), written as date-partitioned Parquet, plus per-pair strengths, daily
aggregates and trending windows (`recstack.processing.aggregates`). `recstack.processing.spark.etl` runs the
same steps on Spark: `validate_chunk` and `weigh_chunk` run there inside `mapInPandas`, and the set-level
rules are the same SQL, so both engines give the same rows and numbers.

Output layout under `out`: `events/date=YYYY-MM-DD/*.parquet`, one directory of Parquet per aggregate
(`pairs`, `daily_items`, `daily_users`, `trending`), `rejected/` (location, reason, record), and
`manifest.json` (an `EtlReport`) written last.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recstack.processing.aggregates import AGGREGATES, DEDUPLICATE, FEATURES, aggregate_sql, feature_sql
from recstack.processing.weighting import WeightingConfig, WeightingContext, infer, row_weights, weighting_context
from recstack.schema import INTERACTION_COLUMNS, LOCATION, ValidationRules, validate_interactions

__all__ = [
    "CATALOG_COLUMNS",
    "EVENT_COLUMNS",
    "REJECT_COLUMNS",
    "EtlOptions",
    "EtlReport",
    "catalog_frame",
    "event_dates",
    "read_output",
    "run_etl",
    "run_features",
    "validate_chunk",
    "weigh_chunk",
]

logger = logging.getLogger(__name__)

EVENT_COLUMNS: Final = (*INTERACTION_COLUMNS, "date", "weight")
REJECT_COLUMNS: Final = ("location", "reason", "record")
CATALOG_COLUMNS: Final = ("item_id", "category", "duration_s", "created_at")
CHUNK_ROWS: Final = 1_000_000


@dataclass(frozen=True)
class EtlOptions:
    """How a run reads its rows; the same values give the same output on every engine.

    `weighting=None` infers a preset from the de-duplicated rows. `now_ms` is the validation clock (rows
    more than a day after it are rejected as "in the future"; default: the wall clock). `reference_ms` is
    the time decay and trending windows count back from (default: the newest event).
    """

    rules: ValidationRules = field(default_factory=ValidationRules)
    weighting: WeightingConfig | None = None
    now_ms: int | None = None
    reference_ms: int | None = None


@dataclass(frozen=True)
class EtlReport:
    """What a run read and wrote; saved as `manifest.json` beside the output."""

    engine: str
    source: str
    out: str
    read: int
    rejected: int
    duplicates: int
    events: int
    pairs: int
    reference_ms: int
    weighting: dict[str, Any]
    seconds: float


def event_dates(millis: np.ndarray) -> np.ndarray:
    """The UTC calendar date (YYYY-MM-DD, object array) of epoch-millisecond times: the lake's partition key."""
    return pd.to_datetime(np.asarray(millis, dtype=np.int64), unit="ms", utc=True).strftime("%Y-%m-%d").to_numpy(
        dtype=object
    )


def validate_chunk(frame: pd.DataFrame, rules: ValidationRules, now_ms: int, source: str) -> pd.DataFrame:
    """Validate raw rows; returns the accepted rows (INTERACTION_COLUMNS) and the rejected ones in one frame.

    Rejected rows have `reason` set (and `location`, `record`, naming the source and the event); accepted
    rows have `reason` null. One frame, so an engine can validate a partition in a single pass and split it.
    """
    raw = frame.copy()
    ids = raw["event_id"].astype("string") if "event_id" in raw else pd.Series(pd.NA, index=raw.index)
    raw[LOCATION] = (source + ":" + ids.fillna("?")).astype(str).to_numpy(dtype=object)
    checked = validate_interactions(raw, rules, now_ms)
    accepted = checked.accepted[list(INTERACTION_COLUMNS)].assign(location=None, reason=None, record=None)
    if not checked.n_rejected:
        return accepted
    rejected = checked.rejected.reindex(columns=list(REJECT_COLUMNS))
    empty = pd.DataFrame({c: pd.Series(dtype=accepted[c].dtype) for c in INTERACTION_COLUMNS})
    padded = pd.concat([empty, rejected.reset_index(drop=True)], axis=1)
    padded["timestamp"] = padded["timestamp"].fillna(0).astype("int64")
    return pd.concat([accepted, padded], ignore_index=True)


def weigh_chunk(frame: pd.DataFrame, config: WeightingConfig, context: WeightingContext) -> pd.DataFrame:
    """De-duplicated rows with their `date` and `weight` (EVENT_COLUMNS); rows may be any slice of the set
    `context` was computed on."""
    out = frame[list(INTERACTION_COLUMNS)].copy()
    out["date"] = event_dates(out["timestamp"].to_numpy())
    out["weight"] = row_weights(out, config, context=context)
    return out


def catalog_frame(items: pd.DataFrame | None) -> pd.DataFrame:
    """The catalogue columns the aggregates join (CATALOG_COLUMNS); empty when there is no catalogue."""
    if items is None or items.empty:
        return pd.DataFrame(
            {"item_id": pd.Series(dtype=object), "category": pd.Series(dtype=object),
             "duration_s": pd.Series(dtype="float64"), "created_at": pd.Series(dtype="Int64")}
        )
    out = items.reindex(columns=list(CATALOG_COLUMNS)).copy()
    out["item_id"] = out["item_id"].astype(str)
    out["category"] = out["category"].astype(object).where(out["category"].notna(), None)
    out["duration_s"] = pd.to_numeric(out["duration_s"], errors="coerce").astype("float64")
    out["created_at"] = pd.to_numeric(out["created_at"], errors="coerce").astype("Int64")
    return out.drop_duplicates("item_id", keep="first").reset_index(drop=True)


def _write(frame: pd.DataFrame, path: Path, partition: str | None = None) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if partition is None:
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path / "part-0.parquet")
        return
    ds.write_dataset(
        table, path, format="parquet", partitioning=[partition], partitioning_flavor="hive",
        existing_data_behavior="overwrite_or_ignore", max_partitions=1 << 20,
    )


def read_output(out: str | Path, name: str) -> pd.DataFrame:
    """One output of an ETL or feature run (either engine's) as a frame; `events` gets its `date` back."""
    path = Path(out) / name
    if name == "events":
        table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        frame = table.to_pandas()
        frame["date"] = frame["date"].astype(str)
        return frame
    return ds.dataset(path, format="parquet").to_table().to_pandas()


def _fresh(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def run_etl(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    out: str | Path,
    options: EtlOptions | None = None,
    source: str = "frame",
    progress: Callable[[str], None] | None = None,
) -> EtlReport:
    """Validate, de-duplicate and weigh `interactions` (raw rows in the ingestion contract), write the events
    and aggregates under `out` (replacing what is there), and return the report.

    Rejected rows go to `out/rejected` with their reason; good rows are never lost for a bad one.
    """
    import duckdb

    options = options or EtlOptions()
    step = progress or (lambda message: None)
    started = time.perf_counter()
    out = Path(out)
    _fresh(out)
    now_ms = options.now_ms if options.now_ms is not None else int(time.time() * 1000)
    step("validating…")
    parts = [
        validate_chunk(interactions.iloc[i : i + CHUNK_ROWS], options.rules, now_ms, source)
        for i in range(0, max(len(interactions), 1), CHUNK_ROWS)
    ]
    checked = pd.concat(parts, ignore_index=True)
    bad = checked["reason"].notna()
    rejected = checked.loc[bad, list(REJECT_COLUMNS)].reset_index(drop=True)
    accepted = checked.loc[~bad, list(INTERACTION_COLUMNS)].reset_index(drop=True)
    step("de-duplicating…")
    con = duckdb.connect()
    try:
        con.register("validated", accepted)
        unique = con.execute(DEDUPLICATE).df()
        config = options.weighting or infer(unique, items)
        reference = options.reference_ms
        if reference is None:
            reference = int(unique["timestamp"].max()) if len(unique) else now_ms
        step("weighing…")
        context = weighting_context(unique, config, items, now_ms=reference)
        events = weigh_chunk(unique, config, context)
        con.register("events", events)
        step("aggregating…")
        outputs = {
            name: con.execute(sql).df()
            for name, sql in aggregate_sql(reference, config.max_weight).items()
        }
    finally:
        con.close()
    _write(events, out / "events", partition="date")
    for name in AGGREGATES:
        _write(outputs[name], out / name)
    _write(rejected, out / "rejected")
    report = EtlReport(
        engine="embedded", source=source, out=str(out), read=len(interactions), rejected=len(rejected),
        duplicates=len(accepted) - len(unique), events=len(events), pairs=len(outputs["pairs"]),
        reference_ms=reference, weighting=config.model_dump(mode="json"),
        seconds=round(time.perf_counter() - started, 3),
    )
    write_manifest(out, report)
    logger.info("etl (embedded): %d events, %d rejected, %d duplicates → %s", report.events, report.rejected,
                report.duplicates, out)
    return report


def write_manifest(out: Path, report: EtlReport) -> None:
    """The report as `manifest.json`, written last so a directory without one is an incomplete run."""
    (out / "manifest.json").write_text(json.dumps(asdict(report), indent=2) + "\n")


def run_features(etl_out: str | Path, items: pd.DataFrame | None, out: str | Path) -> dict[str, int]:
    """User and item features (`recstack.processing.aggregates.feature_sql`) from an ETL run's events,
    written under `out/<name>`; returns the row count of each."""
    import duckdb

    etl_out, out = Path(etl_out), Path(out)
    manifest = json.loads((etl_out / "manifest.json").read_text())
    events = read_output(etl_out, "events")
    con = duckdb.connect()
    try:
        con.register("events", events)
        con.register("catalog", catalog_frame(items))
        frames = {name: con.execute(sql).df() for name, sql in feature_sql(int(manifest["reference_ms"])).items()}
    finally:
        con.close()
    out.mkdir(parents=True, exist_ok=True)
    for name in FEATURES:
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        _write(frames[name], target)
    return {name: len(frame) for name, frame in frames.items()}
