"""The batch ETL on Spark: the embedded ETL's steps (`recstack.processing.etl`) on a distributed engine.

Row-level rules run as the very same Python functions inside `mapInPandas` (validation, weighting); the
data-wide quantities weighting depends on (`WeightingContext`: the decay's reference time, the top of the
rating scale, item durations) are computed over the whole set first and shipped to every partition; the
set-level rules are the shared SQL of `recstack.processing.aggregates`. The output layout and manifest are
the embedded engine's, so a reader cannot tell which engine wrote them except by the manifest's `engine`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import pandas as pd

from recstack.processing.aggregates import AGGREGATES, DEDUPLICATE, FEATURES, aggregate_sql, feature_sql
from recstack.processing.etl import (
    EtlOptions,
    EtlReport,
    catalog_frame,
    validate_chunk,
    weigh_chunk,
    write_manifest,
)
from recstack.processing.spark.session import pandas
from recstack.processing.weighting import (
    ValueProfile,
    WeightingConfig,
    WeightingContext,
    estimated_durations,
    fallback_duration,
    infer_from,
    known_durations,
    merge_durations,
)
from recstack.schema import INTERACTION_COLUMNS, ValidationRules

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["EVENTS_SCHEMA", "VALIDATED_SCHEMA", "run_etl", "run_features", "value_profile", "weighting_context"]

logger = logging.getLogger(__name__)

_INTERACTIONS_DDL: Final = (
    "event_id string, user_id string, item_id string, event_type string, value double, timestamp bigint"
)
VALIDATED_SCHEMA: Final = _INTERACTIONS_DDL + ", location string, reason string, record string"
EVENTS_SCHEMA: Final = _INTERACTIONS_DDL + ", date string, weight double"


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as object arrays of str/None: Spark's Arrow bridge rejects pandas' chunked string arrays."""
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column].dtype):
            values = out[column].astype(object)
            out[column] = values.where(values.notna(), None)
    return out


def _validator(rules: ValidationRules, now_ms: int, source: str) -> Callable[[Iterator[pd.DataFrame]], Any]:
    def validate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield _plain(validate_chunk(batch, rules, now_ms, source))

    return validate


def _weigher(config: WeightingConfig, context: WeightingContext) -> Callable[[Iterator[pd.DataFrame]], Any]:
    def weigh(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield _plain(weigh_chunk(batch, config, context))

    return weigh


def value_profile(frame: DataFrame, items: pd.DataFrame | None) -> ValueProfile:
    """`ValueProfile` of a Spark frame of interactions, in one aggregation pass (the median is Spark's exact
    `percentile`)."""
    from pyspark.sql import functions as F

    events = frozenset(r[0] for r in frame.select("event_type").where("event_type IS NOT NULL").distinct().collect())
    values = frame.where("value IS NOT NULL AND NOT isnan(value) AND abs(value) != double('inf')")

    def close(column: Any) -> Any:
        rounded = F.bround(column)
        return F.min(F.when(F.abs(column - rounded) <= 1e-8 + 1e-5 * F.abs(rounded), 1).otherwise(0))

    row = values.agg(
        F.count("*").alias("n"), F.min("value").alias("lo"), F.max("value").alias("hi"),
        close(F.col("value") * 2).alias("half"), F.countDistinct("value").alias("distinct"),
        close(F.col("value")).alias("integers"), F.percentile("value", F.lit(0.5)).alias("median"),
        F.avg(F.when(F.col("value") == 1, 1.0).otherwise(0.0)).alias("ones"),
    ).collect()[0]
    known = bool(len(known_durations(items)))
    if not row["n"]:
        return ValueProfile(events, 0, durations_known=known)
    return ValueProfile(
        events=events, n_values=int(row["n"]), min_value=float(row["lo"]), max_value=float(row["hi"]),
        half_grid=bool(row["half"]), distinct_values=int(row["distinct"]), integers=bool(row["integers"]),
        median=float(row["median"]), share_ones=float(row["ones"]), durations_known=known,
    )


def weighting_context(
    frame: DataFrame, config: WeightingConfig, items: pd.DataFrame | None, reference_ms: int
) -> WeightingContext:
    """The `WeightingContext` of a whole Spark frame, equal to what the embedded engine computes.

    Per-item duration estimates run the shared pandas function on each item's watch times (one group per
    item lacking a catalogue duration); the all-items fallback is computed only when some row needs it,
    from the watch times gathered on the driver (8 bytes per watch event).
    """
    from pyspark.sql import functions as F

    kinds = config.value_kinds
    rated = [event for event, kind in kinds.items() if kind == "rating"]
    watched = [event for event, kind in kinds.items() if kind == "watch_time"]
    top: float | None = None
    if config.rating_mode == "scale":
        if config.rating_max is not None:
            top = config.rating_max
        else:
            found = frame.where(F.col("event_type").isin(rated) & F.col("value").isNotNull()).agg(F.max("value"))
            best = found.collect()[0][0]
            top = max(float(best), 0.0) if best is not None else 0.0
    now = float(reference_ms) if config.half_life_days is not None else None
    sample = frame.where(F.col("event_type").isin(watched) & F.col("value").isNotNull()).select("item_id", "value")
    if not watched or sample.limit(1).count() == 0:
        return WeightingContext(now, top, None, None)
    known = known_durations(items)
    spark = frame.sparkSession
    known_ids = spark.createDataFrame(pd.DataFrame({"item_id": known.index.astype(str)}), "item_id string")
    unknown = sample.join(F.broadcast(known_ids), "item_id", "left_anti")

    def estimate(group: pd.DataFrame) -> pd.DataFrame:
        found = estimated_durations(group["item_id"].to_numpy(dtype=object), group["value"].to_numpy(), config)
        ids = found.index.to_numpy(dtype=object)
        return _plain(pd.DataFrame({"item_id": ids, "seconds": found.to_numpy(dtype=np.float64)}))

    estimated = pandas(unknown.groupBy("item_id").applyInPandas(estimate, "item_id string, seconds double"))
    durations = merge_durations(known, pd.Series(estimated["seconds"].to_numpy(), index=estimated["item_id"]))
    covered = spark.createDataFrame(pd.DataFrame({"item_id": durations.index.astype(str)}), "item_id string")
    fallback = None
    if sample.join(F.broadcast(covered), "item_id", "left_anti").limit(1).count():
        seconds = pandas(sample.select("value"))["value"].to_numpy(dtype=np.float64)
        fallback = fallback_duration(seconds, config)
    return WeightingContext(now, top, durations, fallback)


def _nan_to_null(frame: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return frame.withColumn("value", F.when(F.isnan("value"), None).otherwise(F.col("value")))


def run_etl(
    spark: SparkSession,
    interactions: DataFrame,
    items: pd.DataFrame | None,
    out: str | Path,
    options: EtlOptions | None = None,
    source: str = "frame",
    progress: Callable[[str], None] | None = None,
) -> EtlReport:
    """The embedded `run_etl` on Spark: `interactions` is a Spark frame with INTERACTION_COLUMNS (raw
    values; `timestamp` in epoch ms or any form validation parses), `items` the catalogue on the driver.

    `out` is any path Spark writes to (local, HDFS, S3 through its connector); the manifest is written
    with Python's file API, so it must also be a local or mounted path.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    options = options or EtlOptions()
    step = progress or (lambda message: None)
    started = time.perf_counter()
    out = Path(out)
    now_ms = options.now_ms if options.now_ms is not None else int(time.time() * 1000)
    raw = interactions.select(*INTERACTION_COLUMNS)
    step("validating…")
    checked = raw.mapInPandas(cast(Any, _validator(options.rules, now_ms, source)), VALIDATED_SCHEMA)
    checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
    rejected = checked.where("reason IS NOT NULL").select("location", "reason", "record")
    rejected.write.mode("overwrite").parquet(str(out / "rejected"))
    accepted = _nan_to_null(checked.where("reason IS NULL").select(*INTERACTION_COLUMNS))
    accepted.createOrReplaceTempView("validated")
    step("de-duplicating…")
    unique = spark.sql(DEDUPLICATE).persist(StorageLevel.MEMORY_AND_DISK)
    totals = unique.agg(F.count("*").alias("n"), F.max("timestamp").alias("newest")).collect()[0]
    config = options.weighting or infer_from(value_profile(unique, items))
    reference = options.reference_ms
    if reference is None:
        reference = int(totals["newest"]) if totals["n"] else now_ms
    step("weighing…")
    context = weighting_context(unique, config, items, reference)
    events = _nan_to_null(unique.mapInPandas(cast(Any, _weigher(config, context)), EVENTS_SCHEMA))
    events = events.persist(StorageLevel.MEMORY_AND_DISK)
    events.write.mode("overwrite").partitionBy("date").parquet(str(out / "events"))
    events.createOrReplaceTempView("events")
    step("aggregating…")
    counts: dict[str, int] = {}
    queries = aggregate_sql(reference, config.max_weight)
    for name in AGGREGATES:
        frame = spark.sql(queries[name])
        frame.write.mode("overwrite").parquet(str(out / name))
        if name == "pairs":
            counts[name] = spark.read.parquet(str(out / name)).count()
    read, n_rejected = checked.count(), rejected.count()
    report = EtlReport(
        engine="spark", source=source, out=str(out), read=read, rejected=n_rejected,
        duplicates=read - n_rejected - int(totals["n"]), events=int(totals["n"]), pairs=counts["pairs"],
        reference_ms=reference, weighting=config.model_dump(mode="json"),
        seconds=round(time.perf_counter() - started, 3),
    )
    for frame in (events, unique, checked):
        frame.unpersist()
    write_manifest(out, report)
    logger.info("etl (spark): %d events, %d rejected, %d duplicates → %s", report.events, report.rejected,
                report.duplicates, out)
    return report


def run_features(
    spark: SparkSession, etl_out: str | Path, items: pd.DataFrame | None, out: str | Path
) -> dict[str, int]:
    """The embedded `run_features` on Spark: user and item features from an ETL run's events."""
    import json

    etl_out, out = Path(etl_out), Path(out)
    manifest = json.loads((etl_out / "manifest.json").read_text())
    spark.read.parquet(str(etl_out / "events")).createOrReplaceTempView("events")
    catalog = catalog_frame(items)
    spark.createDataFrame(
        catalog.astype(object).where(catalog.notna(), None),
        "item_id string, category string, duration_s double, created_at bigint",
    ).createOrReplaceTempView("catalog")
    rows: dict[str, int] = {}
    queries = feature_sql(int(manifest["reference_ms"]))
    for name in FEATURES:
        spark.sql(queries[name]).write.mode("overwrite").parquet(str(out / name))
        rows[name] = spark.read.parquet(str(out / name)).count()
    return rows
