"""Implicit-feedback ALS trained by Spark MLlib, ending as an ordinary recstack model.

MLlib solves the same objective as `implicit` (Hu, Koren & Volinsky: confidence `1 + alpha · w` on every
observed pair, zero preference elsewhere) across executors. The learned factors are collected to the driver
into a `recstack.models.mllib_als.MLlibALS`, which is saved, registered and served (its item factors go to
the Faiss index) like any other model: the cluster does the training, not the serving.

MLlib scales the regularisation of each user (item) by its number of observed pairs (ALS-WR), where
`implicit` does not; `regularization` here is MLlib's `regParam`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.processing.matrix import Vocabulary
from recstack.processing.spark.session import ensure_checkpoint_dir, job_failure, pandas

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recstack.models.mllib_als import MLlibALS, MLlibALSConfig

__all__ = ["fit_spark", "train_factors"]

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 5
"""Iterations between checkpoints of the factors: each ALS iteration lengthens the lineage a task deserialises,
and without checkpoints 15 or so overflow a task thread's stack (fatal for a local session's JVM)."""


def _factors(frame: DataFrame, n: int, rank: int) -> np.ndarray:
    """MLlib's (id, features) rows as a dense n × rank matrix; ids it never saw keep zero vectors."""
    rows = pandas(frame)
    out = np.zeros((n, rank), dtype=np.float32)
    if len(rows):
        out[rows["id"].to_numpy(dtype=np.int64)] = np.stack(rows["features"].to_numpy()).astype(np.float32)
    return out


def train_factors(
    pairs: DataFrame, n_users: int, n_items: int, config: MLlibALSConfig
) -> tuple[np.ndarray, np.ndarray]:
    """User and item factors (float32) from a Spark frame of `user_idx`, `item_idx` (int) and positive
    `weight` (the summed strength of the pair)."""
    from pyspark.ml.recommendation import ALS as SparkALS

    session = pairs.sparkSession
    try:
        if not ensure_checkpoint_dir(session):
            logger.warning("no spark.checkpoint.dir: MLlib ALS runs without checkpoints, and a long run may "
                           "overflow an executor's stack")
        estimator = SparkALS(
            rank=config.factors, maxIter=config.iterations, regParam=config.regularization, alpha=config.alpha,
            implicitPrefs=True, seed=config.random_state, userCol="user_idx", itemCol="item_idx",
            ratingCol="weight", nonnegative=False, coldStartStrategy="drop",
            numUserBlocks=config.blocks, numItemBlocks=config.blocks, checkpointInterval=CHECKPOINT_INTERVAL,
        )
        model = estimator.fit(pairs)
        users = _factors(model.userFactors, n_users, config.factors)
        return users, _factors(model.itemFactors, n_items, config.factors)
    except Exception as exc:  # py4j's errors, or a bare socket error when the JVM has exited
        raise job_failure("MLlib ALS", session, exc) from exc


def _vocabulary(frame: DataFrame, column: str) -> Vocabulary:
    ids = pandas(frame.select(column).distinct())[column].to_numpy(dtype=object)
    return Vocabulary(np.sort(ids.astype(str)))


def _indexed(spark: SparkSession, frame: DataFrame, column: str, vocab: Vocabulary) -> DataFrame:
    from pyspark.sql import functions as F

    table = pd.DataFrame({column: vocab.ids, f"{column[:-3]}_idx": np.arange(len(vocab), dtype=np.int32)})
    lookup = spark.createDataFrame(table, f"{column} string, {column[:-3]}_idx int")
    return frame.join(F.broadcast(lookup) if len(vocab) < 2_000_000 else lookup, column)


def fit_spark(spark: SparkSession, pairs: DataFrame, config: MLlibALSConfig | None = None, **params: Any) -> MLlibALS:
    """Train on a Spark frame of (`user_id`, `item_id`, `weight`) pairs, such as the ETL's `pairs` output,
    without bringing the interactions to the driver; returns a fitted `MLlibALS`.

    As with every model, pairs with a non-positive total strength are not trained on but count as seen.
    Only the vocabularies, the factors and the seen pattern (what serving excludes) reach the driver.
    """
    from recstack.models.mllib_als import MLlibALS

    model = MLlibALS(config, **params) if config is not None else MLlibALS(**params)
    users, items = _vocabulary(pairs, "user_id"), _vocabulary(pairs, "item_id")
    indexed = _indexed(spark, _indexed(spark, pairs, "user_id", users), "item_id", items)
    indexed = indexed.select("user_idx", "item_idx", "weight").cache()
    positive = indexed.where("weight > 0")
    user_factors, item_factors = train_factors(positive, len(users), len(items), model.config)
    seen = pandas(indexed.select("user_idx", "item_idx"))
    indexed.unpersist()
    matrix = sp.csr_matrix(
        (np.ones(len(seen), dtype=bool), (seen["user_idx"].to_numpy(), seen["item_idx"].to_numpy())),
        shape=(len(users), len(items)), dtype=bool,
    )
    matrix.sort_indices()
    model.adopt(users, items, matrix, user_factors, item_factors)
    logger.info("MLlib ALS: %d users × %d items, %d pairs", len(users), len(items), matrix.nnz)
    return model
