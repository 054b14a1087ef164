"""`recstack spark etl|features|recommend`: the batch jobs on the Spark engine (a shell over processing.spark)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recstack.cli.common import console, err_console, settings, store_from
from recstack.config import Settings
from recstack.errors import ConfigurationError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

app = typer.Typer(help="Batch jobs on Apache Spark (pip install 'recstack[spark]').", no_args_is_help=True)


def session(cfg: Settings, jdbc: bool = False) -> SparkSession:
    """The SparkSession of the settings' master and conf (with the JDBC driver when asked)."""
    from recstack.processing.spark.session import find_jdbc_jar, spark_session

    jar = find_jdbc_jar(cfg.spark_jdbc_jar) if jdbc else None
    return spark_session(cfg.spark_master, cfg.spark_conf, jdbc_jar=jar)


def _home_dir(cfg: Settings, name: str, given: Path | None) -> Path:
    return (given or cfg.home / name).resolve()


@app.command("etl")
def etl(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="snapshot (the lakehouse) or store (PostgreSQL over JDBC).")] = "snapshot",
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id; default: the latest.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory; default: <home>/etl.")] = None,
) -> None:
    """Validate, de-duplicate and weigh the interactions; write events by date and the daily aggregates."""
    from recstack.processing.etl import EtlOptions
    from recstack.processing.spark.etl import run_etl
    from recstack.processing.spark.sources import read_jdbc, read_snapshot
    from recstack.schema import ValidationRules
    from recstack.storage.lake import Lake

    cfg = settings(ctx)
    target = _home_dir(cfg, "etl", out)
    options = EtlOptions(rules=ValidationRules(max_value=cfg.max_value))
    if source == "snapshot":
        spark = session(cfg)
        frame, snap = read_snapshot(spark, cfg.lake_root, snapshot)
        items = Lake(cfg.lake_root).read_items(snap.snapshot_id)
        label = f"snapshot:{snap.snapshot_id}"
    elif source == "store":
        if not cfg.store_url.startswith("postgres"):
            raise ConfigurationError("--source store reads PostgreSQL over JDBC: set database_url to postgresql://…")
        spark = session(cfg, jdbc=True)
        frame = read_jdbc(spark, cfg.store_url)
        with store_from(ctx) as store:
            items = store.read_items()
        label = "store"
    else:
        raise typer.BadParameter("choose snapshot or store", param_hint="--source")
    with err_console.status("spark etl…") as status:
        report = run_etl(spark, frame, items, target, options, source=label, progress=status.update)
    console.print(
        f"etl ({cfg.spark_master}): {report.read:,} read, {report.rejected:,} rejected, "
        f"{report.duplicates:,} duplicates, {report.events:,} events, {report.pairs:,} pairs "
        f"in {report.seconds:.1f} s → {target}"
    )


@app.command("features")
def features(
    ctx: typer.Context,
    etl_dir: Annotated[Path | None, typer.Option("--etl", help="An ETL output; default: <home>/etl.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory; default: <home>/features.")] = None,
) -> None:
    """User and item features from an ETL run's events (the latest snapshot's catalogue joins in)."""
    from recstack.errors import NotFound
    from recstack.processing.spark.etl import run_features
    from recstack.storage.lake import Lake

    cfg = settings(ctx)
    source, target = _home_dir(cfg, "etl", etl_dir), _home_dir(cfg, "features", out)
    if not (source / "manifest.json").exists():
        raise ConfigurationError(f"no ETL output at {source}: run `recstack spark etl` first")
    try:
        items = Lake(cfg.lake_root).read_items()
    except NotFound:
        items = None
    rows = run_features(session(cfg), source, items, target)
    console.print(", ".join(f"{name}: {n:,} rows" for name, n in rows.items()) + f" → {target}")


@app.command("recommend")
def recommend(
    ctx: typer.Context,
    version: Annotated[int | None, typer.Option(help="Model version; default: the champion.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Items per user.")] = 10,
    out: Annotated[Path | None, typer.Option(help="Output directory; default: <home>/batch.")] = None,
    cache: Annotated[bool, typer.Option(
        "--cache/--no-cache", help="Also load the answers into the (shared) cache, where the API serves them."
    )] = False,
) -> None:
    """Top-k items for every user of a registered model, to Parquet (and, with --cache, the result cache)."""
    from recstack.errors import ConfigurationError, NotFound
    from recstack.processing.etl import read_output
    from recstack.processing.spark.recommend import recommend_all
    from recstack.registry import Registry
    from recstack.serving.batch import load_cache, model_label
    from recstack.storage.cache import MemoryCache, open_cache

    cfg = settings(ctx)
    the_cache = open_cache(cfg.cache_url) if cache else None
    if isinstance(the_cache, MemoryCache):
        raise ConfigurationError(
            "--cache needs a cache the API shares (cache_url redis://…): memory:// lives in this process only"
        )
    registry = Registry.from_settings(cfg)
    chosen = registry.get(version) if version is not None else registry.champion()
    if chosen is None:
        raise NotFound("no champion model: train one first or pass --version")
    model = registry.load(chosen)
    target = _home_dir(cfg, "batch", out)
    rows = recommend_all(session(cfg), model, target / "recommendations", k)
    console.print(f"{rows:,} recommendations of version {chosen.version} → {target / 'recommendations'}")
    if the_cache is not None:
        users = load_cache(read_output(target, "recommendations"), the_cache,
                           model_label(chosen.model_kind, chosen.version), cfg.batch_ttl_s)
        console.print(f"{users:,} users' answers loaded into the cache for {cfg.batch_ttl_s:,.0f} s")
