"""Where the Spark jobs read interactions from: a lakehouse snapshot (Parquet) or PostgreSQL over JDBC.

Both give a Spark frame in the ingestion contract (`INTERACTION_COLUMNS`, `timestamp` in epoch ms), so the
jobs after them do not know which it was. The JDBC read is split into ranges of `timestamp` so executors
pull in parallel; the driver jar is Debian's `libpostgresql-jdbc-java` (see `session.find_jdbc_jar`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import sqlalchemy as sa

from recstack.errors import ConfigurationError
from recstack.schema import INTERACTION_COLUMNS
from recstack.storage.lake import Lake, Snapshot

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["jdbc_target", "read_jdbc", "read_snapshot"]


def read_snapshot(spark: SparkSession, lake_root: str, snapshot_id: str | None = None) -> tuple[DataFrame, Snapshot]:
    """A snapshot's interactions (default: the latest snapshot) and its manifest."""
    from pyspark.sql import functions as F

    snapshot = Lake(lake_root)._get(snapshot_id)
    frame = spark.read.parquet(f"{snapshot.path}/interactions")
    frame = frame.withColumn("timestamp", F.unix_millis(F.col("timestamp")))
    return frame.select(*INTERACTION_COLUMNS), snapshot


def jdbc_target(store_url: str) -> tuple[str, dict[str, str]]:
    """The JDBC URL and connection properties of a `postgresql://` store URL.

    A `search_path` given in libpq `options` (as `-csearch_path=…`) becomes the driver's `currentSchema`.
    """
    url = sa.engine.make_url(store_url)
    if not url.drivername.startswith("postgres"):
        raise ConfigurationError(f"JDBC reads need a postgresql:// store URL, not {url.drivername}://")
    host = url.host or "localhost"
    jdbc = f"jdbc:postgresql://{host}:{url.port or 5432}/{url.database or ''}"
    properties = {"driver": "org.postgresql.Driver", "user": url.username or "postgres"}
    if url.password:
        properties["password"] = str(url.password)
    options = url.query.get("options")
    for option in (options if isinstance(options, tuple) else (options,)) if options else ():
        for part in unquote(option).split():
            if part.startswith("-csearch_path="):
                properties["currentSchema"] = part.split("=", 1)[1]
    extra = {k: v for k, v in parse_qs(str(url).partition("?")[2]).items() if k == "sslmode"}
    for key, values in extra.items():
        properties[key] = values[0]
    return jdbc, properties


def read_jdbc(spark: SparkSession, store_url: str, partitions: int | None = None) -> DataFrame:
    """The store's interactions over JDBC, read as `partitions` parallel ranges of `timestamp`
    (default: Spark's default parallelism)."""
    jdbc, properties = jdbc_target(store_url)
    columns = ", ".join(f'"{c}"' for c in INTERACTION_COLUMNS)
    bounds = spark.read.jdbc(
        jdbc, '(SELECT MIN("timestamp") AS lo, MAX("timestamp") AS hi FROM interactions) AS bounds',
        properties=properties,
    ).collect()[0]
    query = f"(SELECT {columns} FROM interactions) AS events"
    if bounds["lo"] is None:
        return spark.read.jdbc(jdbc, query, properties=properties)
    count = partitions or spark.sparkContext.defaultParallelism
    options: dict[str, Any] = {
        "column": "timestamp", "lowerBound": int(bounds["lo"]), "upperBound": int(bounds["hi"]) + 1,
        "numPartitions": max(1, count),
    }
    return spark.read.jdbc(jdbc, query, properties=properties, **options)
