"""The Spark engine against the embedded one: the same rows and numbers, a model as good, and served.

All tests share one local[2] SparkSession (the `spark` fixture); in CI they never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from integration.serving_support import free_port, wait_ready
from recstack.cli.main import app
from recstack.errors import EngineFailure
from recstack.evaluation.holdout import Holdout, evaluate_holdout
from recstack.ingestion import IngestOptions, ingest
from recstack.ingestion import datasets as ds
from recstack.ingestion.files import read_file
from recstack.ingestion.synthetic import SyntheticConfig, generate, iter_interactions, make_catalog
from recstack.models.als import ALS
from recstack.models.mllib_als import MLlibALS, MLlibALSConfig
from recstack.processing import etl
from recstack.processing.spark import etl as spark_etl
from recstack.processing.spark.als import fit_spark, train_factors
from recstack.processing.spark.recommend import cooccurrence, recommend_all
from recstack.processing.spark.session import is_alive, spark_session
from recstack.processing.spark.sources import read_jdbc, read_snapshot
from recstack.processing.weighting import video
from recstack.serving.batch import load_cache
from recstack.storage import open_store
from recstack.storage.cache import MemoryCache
from recstack.storage.lake import Lake

pytestmark = pytest.mark.slow

KEYS = {
    "events": ["event_id"], "pairs": ["user_id", "item_id"], "daily_items": ["date", "item_id"],
    "daily_users": ["date", "user_id"], "trending": ["item_id"], "rejected": ["location"],
    "user_features": ["user_id"], "item_features": ["item_id"],
}
CLOCK = etl.EtlOptions(now_ms=1_900_000_000_000)


def assert_same(left: Path, right: Path, names: list[str]) -> None:
    """Every output of two runs holds the same rows with bit-identical values, whatever the row order."""
    for name in names:
        a, b = etl.read_output(left, name), etl.read_output(right, name)
        a = a[sorted(a.columns)].sort_values(KEYS[name]).reset_index(drop=True)
        b = b[sorted(b.columns)].sort_values(KEYS[name]).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True, obj=name)


@pytest.fixture(scope="module")
def movielens_lake(movielens_100k: Path, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    root = tmp_path_factory.mktemp("ml100k")
    store = open_store(f"sqlite:///{root / 'recstack.db'}")
    store.migrate()
    for kind, batches in ds.load("movielens-100k", movielens_100k).items():
        ingest(store, batches, "movielens-100k", IngestOptions(kind=kind))
    lake = Lake(str(root / "lake"))
    lake.write_snapshot(store)
    store.close()
    return lake


def test_spark_etl_and_features_equal_the_embedded_on_movielens(
    spark: Any, movielens_lake: Lake, tmp_path: Path
) -> None:
    items = movielens_lake.read_items()
    embedded = etl.run_etl(movielens_lake.read_interactions(), items, tmp_path / "embedded", CLOCK, "snapshot")
    frame, _ = read_snapshot(spark, movielens_lake.root)
    distributed = spark_etl.run_etl(spark, frame, items, tmp_path / "spark", CLOCK, "snapshot")
    assert (embedded.read, embedded.events, embedded.pairs) == (100_000, 100_000, 100_000)
    assert (distributed.read, distributed.rejected, distributed.duplicates, distributed.events, distributed.pairs) == (
        embedded.read, embedded.rejected, embedded.duplicates, embedded.events, embedded.pairs)
    assert distributed.weighting == embedded.weighting and distributed.reference_ms == embedded.reference_ms
    outputs = ["events", "pairs", "daily_items", "daily_users", "trending"]
    assert_same(tmp_path / "embedded", tmp_path / "spark", outputs)
    etl.run_features(tmp_path / "embedded", items, tmp_path / "embedded-features")
    rows = spark_etl.run_features(spark, tmp_path / "spark", items, tmp_path / "spark-features")
    assert rows == {"user_features": 943, "item_features": 1682}
    assert_same(tmp_path / "embedded-features", tmp_path / "spark-features", ["user_features", "item_features"])


@pytest.fixture(scope="module")
def synthetic_runs(
    spark_launch: tuple[dict[str, str], Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Any, Any]:
    """Both engines' ETL of a synthetic video set with watch times, repeated events and bad rows, run once
    for the module: (embedded out, spark out, embedded report, spark report)."""
    config = SyntheticConfig(users=150, items=100, interactions=8_000, seed=5)
    clean = pd.concat(list(iter_interactions(config)), ignore_index=True)
    clean["timestamp"] = clean["timestamp"].dt.as_unit("ms").astype("int64")
    _, items = make_catalog(config)
    items["created_at"] = items["created_at"].dt.as_unit("ms").astype("int64")
    items.loc[items.index % 2 == 0, "duration_s"] = None  # half the durations are estimated from watch times
    repeats = clean.sample(300, random_state=1).assign(timestamp=lambda f: f["timestamp"] + 1_000)
    bad = clean.head(3).assign(event_type="teleport", event_id=["bad-1", "bad-2", "bad-3"])
    raw = pd.concat([clean, repeats, bad], ignore_index=True)
    options = etl.EtlOptions(now_ms=CLOCK.now_ms, weighting=video().model_copy(update={"half_life_days": 30.0}))
    root = tmp_path_factory.mktemp("synthetic")
    spark = spark_session("local[2]", spark_launch[0], jdbc_jar=spark_launch[1])
    embedded = etl.run_etl(raw, items, root / "embedded", options)
    distributed = spark_etl.run_etl(spark, spark.createDataFrame(raw), items, root / "spark", options)
    return root / "embedded", root / "spark", embedded, distributed


def test_spark_etl_equals_the_embedded_on_watch_times_repeats_and_bad_rows(
    spark: Any, synthetic_runs: tuple[Path, Path, Any, Any]
) -> None:
    embedded_out, spark_out, embedded, distributed = synthetic_runs
    assert (embedded.rejected, embedded.duplicates, embedded.events) == (3, 300, 8_000)
    assert (distributed.rejected, distributed.duplicates, distributed.events) == (3, 300, 8_000)
    rejected = etl.read_output(spark_out, "rejected")
    assert rejected["reason"].str.contains("event_type 'teleport' is not one of").all()
    assert_same(embedded_out, spark_out, list(KEYS)[:6])


@pytest.mark.postgres
def test_spark_reads_the_store_over_jdbc(spark: Any, postgres_url: str, tmp_path: Path) -> None:
    assert "postgresql" in spark.conf.get("spark.jars", ""), "the shared session starts with the JDBC driver"
    files = generate(SyntheticConfig(users=40, items=30, interactions=1_500, seed=8), tmp_path / "data")
    store = open_store(postgres_url)
    store.migrate()
    for kind in ("users", "items", "interactions"):
        ingest(store, read_file(files[kind], chunk_size=10_000), "synthetic", IngestOptions(kind=kind))
    embedded_rows = pd.concat(list(store.iter_interactions()), ignore_index=True)
    items = store.read_items()
    store.close()
    frame = read_jdbc(spark, postgres_url, partitions=3)
    assert frame.rdd.getNumPartitions() == 3
    etl.run_etl(embedded_rows, items, tmp_path / "embedded", CLOCK)
    spark_etl.run_etl(spark, frame, items, tmp_path / "spark", CLOCK)
    assert_same(tmp_path / "embedded", tmp_path / "spark", ["events", "pairs", "daily_items", "trending"])


def test_mllib_als_is_within_002_ndcg_of_implicit_als(spark: Any, movielens_lake: Lake) -> None:
    interactions, items = movielens_lake.read_interactions(), movielens_lake.read_items()
    split = Holdout("user", 0.2, 42)
    implicit = evaluate_holdout(lambda: ALS(), interactions, items, None, split, 10).metrics["ndcg@10"]
    mllib = evaluate_holdout(lambda: MLlibALS(), interactions, items, None, split, 10).metrics["ndcg@10"]
    assert implicit > 0.3
    assert abs(mllib - implicit) <= 0.02, (mllib, implicit)


def test_a_long_mllib_als_run_keeps_the_jvm(spark: Any) -> None:
    """40 iterations without checkpoints overflow a task thread's stack, which exits a local session's JVM."""
    rows = [(u, (u * 7 + j) % 30, 1.0 + j) for u in range(40) for j in range(6)]
    pairs = spark.createDataFrame(rows, "user_idx int, item_idx int, weight double")
    config = MLlibALSConfig(factors=4, iterations=40, blocks=1)
    users, items = train_factors(pairs, 40, 30, config)
    assert users.shape == (40, 4) and items.shape == (30, 4) and np.isfinite(users).all()
    assert spark.sparkContext.getCheckpointDir() is not None and is_alive(spark)


def test_a_dead_jvm_gives_a_readable_error_and_a_fresh_session(spark_launch: tuple[dict[str, str], Any]) -> None:
    conf, jar = spark_launch
    doomed = spark_session("local[2]", conf, jdbc_jar=jar)
    pairs = doomed.createDataFrame([(0, 0, 1.0), (1, 1, 1.0)], "user_idx int, item_idx int, weight double")
    doomed.sparkContext._gateway.proc.kill()
    doomed.sparkContext._gateway.proc.wait(timeout=60)
    assert not is_alive(doomed)
    with pytest.raises(EngineFailure, match="the Spark JVM exited"):
        train_factors(pairs, 2, 2, MLlibALSConfig(factors=2, iterations=1, blocks=1))
    fresh = spark_session("local[2]", conf, jdbc_jar=jar)
    assert fresh is not doomed and is_alive(fresh)
    assert fresh.range(10).count() == 10


def test_batch_recommendations_cooccurrence_and_cache(
    spark: Any, synthetic_runs: tuple[Path, Path, Any, Any], tmp_path: Path
) -> None:
    pairs = spark.read.parquet(str(synthetic_runs[1] / "pairs"))
    model = fit_spark(spark, pairs, factors=8, iterations=5)
    assert model.seen_ is not None and model.seen_.nnz == pairs.count()
    rows = recommend_all(spark, model, tmp_path / "batch" / "recommendations", k=5)
    batch = etl.read_output(tmp_path / "batch", "recommendations")
    assert rows == len(batch) == 5 * len(model.users)
    some = batch["user_id"].iloc[0]
    online = model.recommend(some, k=5)
    assert batch.loc[batch["user_id"] == some].sort_values("rank")["item_id"].tolist() == online["item_id"].tolist()
    cache = MemoryCache()
    assert load_cache(batch, cache, "als_spark1", 60.0) == len(model.users)
    assert cache.get(f"batch:als_spark1:{some}") is not None
    neighbours = cooccurrence(pairs, k=3).toPandas()
    assert (neighbours["item_id"] != neighbours["neighbour_id"]).all()
    assert neighbours.groupby("item_id").size().max() <= 3


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    clean: dict[str, str | None] = {key: None for key in os.environ if key.startswith("RECSTACK_")}
    return CliRunner().invoke(app, ["--home", str(home), *args], env={**clean, **(env or {}), "COLUMNS": "200"})


def test_a_spark_trained_model_is_served_with_its_batch_answers(
    spark: Any, tmp_path: Path, redis_cache_url: str
) -> None:
    files = generate(SyntheticConfig(users=80, items=60, interactions=4_000, seed=3), tmp_path / "data")
    home = tmp_path / "home"
    for kind in ("users", "items", "interactions"):
        assert cli(home, "ingest", str(files[kind]), "--kind", kind).exit_code == 0
    trained = cli(home, "train", "--engine", "spark", "--model", "als")
    assert trained.exit_code == 0, trained.output
    assert "als_spark" in trained.output and "is the champion" in trained.output
    assert cli(home, "spark", "recommend", "--cache").exit_code != 0, "memory:// cannot reach the API"
    shared = {"RECSTACK_CACHE_URL": redis_cache_url}
    for command in (("spark", "etl"), ("spark", "features"), ("spark", "recommend", "--k", "5", "--cache")):
        result = cli(home, *command, env=shared)
        assert result.exit_code == 0, result.output
    assert "80 users' answers loaded" in result.output
    batch = etl.read_output(home / "batch", "recommendations")
    assert len(batch) == 5 * 80
    user = "u000001"
    listed = batch.loc[batch["user_id"] == user].sort_values("rank")["item_id"].tolist()

    port = free_port()
    command = [str(Path(sys.executable).parent / "recstack"), "--home", str(home), "serve", "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECSTACK_")}
    env.update(shared, RECSTACK_AUTH="none")
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, base, 120, 0.3)
        response = httpx.get(f"{base}/v1/users/{user}/recommendations", params={"k": 4})
        assert response.status_code == 200
        assert response.headers["X-Model-Version"] == "1"
        assert "X-Recstack-Fallback" not in response.headers
        body = response.json()
        assert body["source"] == "batch" and [i["item_id"] for i in body["items"]] == listed[:4]
        posted = httpx.post(f"{base}/v1/events", json={"user_id": user, "item_id": listed[0], "event_type": "like"})
        assert posted.status_code in (200, 202), posted.text
        after = httpx.get(f"{base}/v1/users/{user}/recommendations", params={"k": 4}).json()
        assert after["source"] == "batch" and [i["item_id"] for i in after["items"]] == listed[1:5]
        assert httpx.get(f"{base}/v1/users/{user}/recommendations", params={"k": 5}).json()["source"] == "model"
        metrics = httpx.get(f"{base}/metrics").text
        assert 'recstack_recommendation_answers_total{source="batch"} 2.0' in metrics
    finally:
        server.terminate()
        server.wait(timeout=30)
