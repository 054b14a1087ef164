"""`recstack train`: latest snapshot → held-out evaluation → refit on everything → registry → champion?"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from recstack.cli.common import console, err_console, progress_bar, settings, store_from
from recstack.config import Settings
from recstack.errors import ConfigurationError, NotFound
from recstack.storage.lake import Lake, Snapshot

HOLDOUT = 0.2
K = 10
SHOWN_METRICS = ("ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10")


def register(app: typer.Typer) -> None:
    app.command("train")(train)


@dataclass(frozen=True)
class Evaluation:
    """Metrics of a model fitted on the training part and scored on the held-out part."""

    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    test_users: int


def default_model() -> str:
    """`auto` when the catalogue has it, else EASE (the strongest single model on the benchmarks)."""
    from recstack.models.catalog import MODELS

    return "auto" if "auto" in MODELS else "ease"


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
) -> None:
    """Train on the latest snapshot, evaluate on a per-user 20% hold-out, register, and promote if better."""
    from recstack.models import catalog
    from recstack.registry import Registry

    cfg = settings(ctx)
    name = model or default_model()
    params: dict[str, Any] = {}
    if time_budget is not None:
        if name != "auto":
            raise typer.BadParameter("only applies to --model auto", param_hint="--time-budget")
        params["time_budget_s"] = time_budget / 2
    catalog.resolve(name)  # an unknown name fails before any data is read
    if name == "auto":
        _quiet_optuna()

    snap = latest_snapshot(ctx, cfg)
    lake = Lake(cfg.lake_root)
    interactions = lake.read_interactions(snap.snapshot_id)
    if interactions.empty:
        raise ConfigurationError(f"snapshot {snap.snapshot_id} has no interactions: ingest some first")
    items, users = lake.read_items(snap.snapshot_id), lake.read_users(snap.snapshot_id)
    err_console.print(
        f"snapshot [bold]{snap.snapshot_id}[/]: {len(interactions):,} interactions, {len(items):,} items, "
        f"{len(users):,} users"
    )

    with err_console.status(f"fitting {name} on {1 - HOLDOUT:.0%} of each user's interactions…"):
        evaluation = evaluate(lambda: catalog.create(name, **params), interactions, items, users, seed)
    with err_console.status(f"refitting {name} on all interactions…"):
        fitted = catalog.create(name, **params).fit(interactions, items if not items.empty else None, users)

    registry = Registry.from_settings(cfg)
    run_params = {
        "snapshot_id": snap.snapshot_id,
        "split": f"stratified_by_user(ratio={1 - HOLDOUT}, seed={seed})",
        "interactions": len(interactions),
        "train_rows": evaluation.train_rows,
        "test_rows": evaluation.test_rows,
        "test_users": evaluation.test_users,
        "fit_seconds": round(fitted.fit_seconds_ or 0.0, 3),
    }
    with tempfile.TemporaryDirectory(prefix="recstack-report-") as scratch:
        report = write_report(Path(scratch) / "report", name, evaluation, run_params, fitted)
        with err_console.status("registering…"):
            version = registry.log(
                fitted, metrics=evaluation.metrics, params=run_params, report=report,
                tags={"recstack.snapshot": snap.snapshot_id},
            )
    incumbent = registry.champion()
    promoted = registry.promote(version.version, force=force) if promote or force else False

    console.print(f"registered [bold]{version.name}[/] version [bold]{version.version}[/] ({version.model_kind})")
    for metric in SHOWN_METRICS:
        console.print(f"  {metric:<14} {_fmt(evaluation.metrics.get(metric))}")
    console.print(champion_message(registry.champion_metric, version.metrics, version.version, incumbent,
                                   promoted=promoted, asked=promote or force))


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


def evaluate(
    make: Any, interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, seed: int
) -> Evaluation:
    """Fit `make()` on a per-user stratified (1 - HOLDOUT) share and score its top-K on the rest, with the
    protocol of `recstack evaluate` (same relevance rule and metric options), so the numbers compare."""
    from recstack.cli.evaluate import item_categories, relevant_pairs
    from recstack.evaluation.report import EvaluationOptions, evaluate_recommendations
    from recstack.evaluation.splits import stratified_by_user

    items_frame = items if not items.empty else None
    split = stratified_by_user(interactions, ratio=1 - HOLDOUT, seed=seed)
    relevant = relevant_pairs(split.train, split.test, items_frame)
    if relevant.empty:
        raise ConfigurationError("no held-out interaction is a positive, unseen signal: too little data to evaluate")
    model = make().fit(split.train, items_frame, users)
    test_users = pd.unique(relevant["user_id"])
    recommendations = model.recommend(test_users, k=K)
    options = EvaluationOptions(
        k=K, catalogue=list(pd.unique(split.train["item_id"].astype(str))), item_categories=item_categories(items_frame)
    )
    metrics = evaluate_recommendations(recommendations, relevant, split.train, options)
    return Evaluation(
        metrics={k: float(v) for k, v in metrics.items()},
        train_rows=len(split.train),
        test_rows=len(relevant),
        test_users=len(test_users),
    )


def write_report(directory: Path, name: str, evaluation: Evaluation, meta: dict[str, Any], model: Any) -> Path:
    """`evaluation.json` (the leaderboard format of `recstack.evaluation.report`) and, for a model that
    explains its own choices (`report_`, as auto does), `model_report.json`; returns the directory."""
    from recstack.evaluation.report import write_json

    board = pd.DataFrame.from_dict({name: evaluation.metrics}, orient="index")
    board.index.name = "model"
    write_json(board, directory / "evaluation.json", meta=meta)
    explained = getattr(model, "report_", None)
    if isinstance(explained, dict):
        (directory / "model_report.json").write_text(json.dumps(explained, indent=2, default=str) + "\n")
    return directory


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
