"""Batch jobs over a trained model or the ETL's pairs: top-k for every user, and item co-occurrence.

`recommend_all` ships the fitted model to the executors once (Spark broadcast) and runs its own
`recommend` on each partition of users, so batch answers follow exactly the rules of online answers (seen
items excluded, scores descending); `serving.batch.load_cache` puts them in the result cache, where the
API serves them. `cooccurrence` counts, for every pair of items, the users who engaged
with both (strength > 0): the neighbour lists item-kNN needs, computed without a users × items matrix in
one memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recstack.models.base import Recommender

__all__ = ["cooccurrence", "recommend_all"]

logger = logging.getLogger(__name__)

RECOMMEND_SCHEMA = "user_id string, item_id string, rank int, score double"


def recommend_all(
    spark: SparkSession, model: Recommender[Any], out: str | Path, k: int = 10, partitions: int | None = None
) -> int:
    """Write the top-`k` items of every user the model knows to Parquet at `out`; returns the row count."""
    users = pd.DataFrame({"user_id": model.users.ids})
    shared = spark.sparkContext.broadcast(model)
    count = partitions or max(spark.sparkContext.defaultParallelism, 1)

    def answer(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        fitted = shared.value
        for batch in batches:
            ranked = fitted.recommend(batch["user_id"].to_numpy(dtype=object), k=k)
            yield pd.DataFrame({
                "user_id": ranked["user_id"].to_numpy(dtype=object),
                "item_id": ranked["item_id"].to_numpy(dtype=object),
                "rank": ranked["rank"].to_numpy(dtype="int32"),
                "score": ranked["score"].to_numpy(dtype="float64"),
            })

    frame = spark.createDataFrame(users, "user_id string").repartition(count)
    frame.mapInPandas(cast(Any, answer), RECOMMEND_SCHEMA).write.mode("overwrite").parquet(str(out))
    written = spark.read.parquet(str(out)).count()
    shared.unpersist()
    logger.info("batch recommendations: %d rows for %d users → %s", written, len(users), out)
    return written


def cooccurrence(pairs: DataFrame, k: int = 50, max_items_per_user: int = 500) -> DataFrame:
    """Per item, its `k` most co-engaged items: `item_id, neighbour_id, users, rank`.

    `pairs` is the ETL's `pairs` output; only positive strengths count. A user's items are capped at
    their `max_items_per_user` strongest so one heavy user cannot make the self-join quadratic.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    strongest = Window.partitionBy("user_id").orderBy(F.desc("weight"), "item_id")
    liked = (
        pairs.where("weight > 0").withColumn("n", F.row_number().over(strongest))
        .where(F.col("n") <= max_items_per_user).select("user_id", "item_id")
    )
    left, right = liked.alias("a"), liked.withColumnRenamed("item_id", "neighbour_id").alias("b")
    counts = (
        left.join(right, "user_id").where(F.col("item_id") != F.col("neighbour_id"))
        .groupBy("item_id", "neighbour_id").agg(F.count("*").alias("users"))
    )
    ranked = Window.partitionBy("item_id").orderBy(F.desc("users"), "neighbour_id")
    return counts.withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= k)
