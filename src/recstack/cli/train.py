"""`recstack train`: latest snapshot → held-out evaluation → refit on everything → registry → champion?"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

import typer

from recstack.cli.common import console, err_console, progress_bar, settings, store_from
from recstack.config import Settings
from recstack.errors import ConfigurationError, NotFound
from recstack.evaluation.holdout import Holdout
from recstack.storage.lake import Lake, Snapshot

HOLDOUT = 0.2
SHOWN_METRICS = ("ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10")


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name (see the catalogue), module:Class, or auto. Default: auto."),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget", min=2.0,
            help="Seconds for --model auto in all, half for the evaluation fit and half for the final refit.",
        ),
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Make it the champion if it beats the current one.")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Make it the champion even if it does not beat it.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 42,
    engine: Annotated[
        str, typer.Option(help="embedded (this process) or spark (the spark_master's executors, --model als).")
    ] = "embedded",
) -> None:
    """Train on the latest snapshot, evaluate on a 20% hold-out (each user's newest when timestamped, else at
    random), register, and promote if better."""
    from recstack.jobs.training import default_model, read_snapshot, train_and_register
    from recstack.models import catalog
    from recstack.registry import Registry

    cfg = settings(ctx)
    name = model or default_model()
    if engine == "spark":
        name = _spark_model(cfg, model)
    elif engine != "embedded":
        raise typer.BadParameter("choose embedded or spark", param_hint="--engine")
    params: dict[str, Any] = {}
    if time_budget is not None:
        if name != "auto":
            raise typer.BadParameter("only applies to --model auto", param_hint="--time-budget")
        params["time_budget_s"] = time_budget / 2
    catalog.resolve(name)  # an unknown name fails before any data is read
    if name == "auto":
        _quiet_optuna()

    snap = latest_snapshot(ctx, cfg)
    data = read_snapshot(Lake(cfg.lake_root), snap)
    err_console.print(
        f"snapshot [bold]{snap.snapshot_id}[/]: {len(data.interactions):,} interactions, "
        f"{len(data.items) if data.items is not None else 0:,} items, "
        f"{len(data.users) if data.users is not None else 0:,} users"
    )
    registry = Registry.from_settings(cfg)
    with err_console.status("training…") as status:
        result = train_and_register(
            registry, data, name, params, holdout=Holdout.for_data(data.interactions, HOLDOUT, seed),
            promote=promote, force=force, progress=status.update,
        )
    version = result.version
    console.print(f"registered [bold]{version.name}[/] version [bold]{version.version}[/] ({version.model_kind})")
    for metric in SHOWN_METRICS:
        console.print(f"  {metric:<14} {_fmt(result.evaluation.metrics.get(metric))}")
    console.print(champion_message(registry.champion_metric, version.metrics, version.version, result.incumbent,
                                   promoted=result.promoted, asked=promote or force))


def _spark_model(cfg: Settings, model: str | None) -> str:
    """The Spark-trained class for `--model` (default als), with the settings' SparkSession started."""
    from recstack.cli.spark import session
    from recstack.processing.spark import SPARK_MODELS

    chosen = model or "als"
    if chosen not in SPARK_MODELS:
        raise typer.BadParameter(f"--engine spark trains {', '.join(SPARK_MODELS)}", param_hint="--model")
    session(cfg)
    return SPARK_MODELS[chosen]


def latest_snapshot(ctx: typer.Context, cfg: Settings) -> Snapshot:
    """The newest snapshot, writing one from the store first when there is none."""
    lake = Lake(cfg.lake_root)
    try:
        return lake.latest()
    except NotFound:
        pass
    with store_from(ctx) as store:
        total = store.counts()["interactions"]
        if total == 0:
            raise ConfigurationError(f"the store at {cfg.store_url} has no interactions: ingest some first")
        with progress_bar("snapshot", total=total) as progress:
            return lake.write_snapshot(store, progress)


def champion_message(
    metric: str,
    metrics: dict[str, float],
    version: int,
    incumbent: Any,
    *,
    promoted: bool,
    asked: bool,
) -> str:
    value = _fmt(metrics.get(metric))
    if promoted:
        if incumbent is None:
            return f"[green]version {version} is the champion[/] (first champion; {metric} {value})"
        return (
            f"[green]version {version} is the champion[/] ({metric} {value} vs {_fmt(incumbent.metrics.get(metric))} "
            f"of version {incumbent.version})"
        )
    if not asked:
        return f"version {version} not promoted (--no-promote); `recstack models promote {version}` to do it"
    return (
        f"[yellow]version {version} is not the champion[/]: {metric} {value} does not beat "
        f"{_fmt(incumbent.metrics.get(metric)) if incumbent else '–'} of version "
        f"{incumbent.version if incumbent else '–'}; `recstack models promote {version} --force` to override"
    )


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO on its own handler; only `--verbose` should show them."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    try:
        import optuna
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4f}"
