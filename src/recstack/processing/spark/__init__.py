"""recstack's batch jobs on Apache Spark (`recstack[spark]`): the embedded engine's jobs, rules and outputs
on a distributed engine. See docs/scale.md for when to switch and how to point recstack at a cluster.

- `session`: the SparkSession from settings (`spark_master`, `spark_conf`), the JDBC driver jar.
- `sources`: interactions from a lakehouse snapshot or from PostgreSQL over JDBC.
- `etl`: validate, de-duplicate, weigh, aggregate; and the user and item features.
- `als`: MLlib ALS into a registrable, servable `MLlibALS`.
- `recommend`: top-k for every user to Parquet (and the cache); item co-occurrence.
"""

from __future__ import annotations

SPARK_MODELS = {"als": "recstack.models.mllib_als:MLlibALS", "als_spark": "recstack.models.mllib_als:MLlibALS"}
"""Models `recstack train --engine spark` can train, by name."""

__all__ = ["SPARK_MODELS"]
