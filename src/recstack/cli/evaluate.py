"""`recstack evaluate`: train several models on one split of the data and compare them on the held-out part.

The pieces are also what `batch-recommend` and `demo` use: building models from the catalogue, training
them under a progress bar, deciding which held-out interactions count as relevant, and turning
recommendations into a leaderboard.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from recstack import __version__
from recstack.cli.common import console, err_console, settings
from recstack.cli.files import INTERACTIONS_HEADER, read_training_files
from recstack.errors import ConfigurationError, RecstackError
from recstack.evaluation.holdout import (
    Question,
    SplitKind,
    evaluation_split,
    item_categories,
    question_of,
    relevant_pairs,
    told_question,
)
from recstack.jobs.training import build_model
from recstack.models import catalog
from recstack.models.base import Recommender
from recstack.schema import ValidationRules

DEFAULT_MODELS: tuple[str, ...] = ("popularity", "item_knn", "ease", "als", "pure_svd")
TEXT_MODELS: tuple[str, ...] = ("tfidf",)
HEADLINE_METRICS: tuple[str, ...] = ("ndcg", "precision", "recall", "coverage")
"""What the table shows by default (with the fit seconds), so it fits an 80-column terminal; `--all` and
the JSON report have every metric."""
SHOWN_METRICS: tuple[str, ...] = (
    "precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "novelty", "diversity",
    "ndcg[cold]", "ndcg[long_tail]",
)
PLOTTED_METRICS: tuple[str, ...] = (
    "precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "diversity", "ndcg[cold]",
    "ndcg[long_tail]",
)


# ---- models ----------------------------------------------------------------------------------------------


def parse_params(pairs: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """`--param ease.l2=500` options → {"ease": {"l2": 500}}; values are read as JSON, else kept as text."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs or []:
        target, eq, raw = pair.partition("=")
        model, dot, key = target.partition(".")
        if not (eq and dot and model.strip() and key.strip()):
            raise typer.BadParameter(f"{pair!r} is not of the form model.parameter=value", param_hint="--param")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.strip()
        out.setdefault(model.strip(), {})[key.strip()] = value
    return out


def check_models(names: Sequence[str]) -> None:
    """Fail before any training when a name is not in the catalogue (or its library is missing)."""
    for name in names:
        if name == "auto" and "auto" not in catalog.names():
            raise ConfigurationError(
                "model 'auto' is not available in this version of recstack; choose one with --model "
                f"({', '.join(catalog.names())})"
            )
        catalog.resolve(name)


@dataclass(frozen=True)
class TuneOptions:
    """Optuna search per model on a validation split carved from the training part only."""

    trials: int | None = 20
    time_budget_s: float | None = None
    k: int = 10
    seed: int = 42
    folds: int = 1


@dataclass
class Trained:
    name: str
    model: Recommender[Any]
    fit_s: float
    tuning: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)


@contextmanager
def live_progress() -> Iterator[Progress]:
    """One Rich progress display on stderr for a sequence of tuning and training steps.

    Optuna logs every trial at INFO on its own handler; the bar says the same, so it speaks only with -v.
    """
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        try:
            import optuna
        except ImportError:
            pass
        else:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
    columns = (
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        yield bar


def fit_with_bar(
    bar: Progress, name: str, model: Recommender[Any], train: pd.DataFrame, items: pd.DataFrame | None
) -> float:
    """Fit under a bar; a model that reports its own steps (`progress(message, share_of_budget)`, as "auto"
    does) moves the bar as it goes. Returns the seconds `fit` took."""
    task = bar.add_task(f"train {name}", total=100, note="")
    if hasattr(model, "progress"):

        def step(message: str, used: float) -> None:
            bar.update(task, completed=round(100 * used), note=message)

        model.progress = step
    started = time.perf_counter()
    model.fit(train, items=items)
    fit_s = time.perf_counter() - started
    bar.update(task, completed=100, note=f"{fit_s:.2f} s")
    return fit_s


def _tunable(name: str) -> bool:
    """Models that tune themselves under a budget are not tuned again from outside."""
    cls = catalog.resolve(name)
    own_budget = "time_budget_s" in cls.config_type.model_fields
    return not own_budget and cls.search_space.__func__ is not Recommender.search_space.__func__  # type: ignore[attr-defined]


def train_models(
    names: Sequence[str],
    train: pd.DataFrame,
    items: pd.DataFrame | None,
    params: dict[str, dict[str, Any]] | None = None,
    tune: TuneOptions | None = None,
    time_budget_s: float | None = None,
    question: Question | None = None,
) -> tuple[list[Trained], dict[str, str]]:
    """Fit each named model on `train` (tuning it first when asked) under one progress display.

    `question` is what the evaluation's split asks (`question_of`): tuning and models that validate
    themselves (`auto`) validate the same way, unless `params` say otherwise.

    A model that fails with a recstack error (say, a content model without item text) is reported and left
    out so the others still compare; returns the trained models and {name: reason} for the failures.
    """
    params = params or {}
    trained: list[Trained] = []
    failed: dict[str, str] = {}
    with live_progress() as bar:
        for name in names:
            chosen = dict(params.get(name, {}))
            tuning = None
            try:
                if question is not None:
                    chosen = told_question(catalog.resolve(name), chosen, question)
                if tune is not None and _tunable(name):
                    result = _tune_one(bar, name, train, items, tune, question == "temporal")
                    chosen = {**result.best_params, **chosen}
                    tuning = result.to_dict()
                model = build_model(name, chosen, time_budget_s)
                fit_s = fit_with_bar(bar, name, model, train, items)
            except RecstackError as exc:
                failed[name] = str(exc)
                err_console.print(f"[yellow]warning:[/] {name} left out: {exc}")
                continue
            trained.append(Trained(name, model, fit_s, tuning, model.params))
    return trained, failed


def _tune_one(
    bar: Progress, name: str, train: pd.DataFrame, items: pd.DataFrame | None, opts: TuneOptions, temporal: bool
) -> Any:
    from recstack.evaluation.tuning import TrialProgress, tune

    task = bar.add_task(f"tune {name}", total=opts.trials, note="")

    def advance(step: TrialProgress) -> None:
        best = "–" if step.best_value is None else f"{step.best_value:.4f}"
        bar.update(task, advance=1, note=f"trial {step.number + 1}, best ndcg@{opts.k} {best}")

    result = tune(
        catalog.resolve(name), train, items=items, k=opts.k, n_trials=opts.trials,  # type: ignore[arg-type]
        timeout_s=opts.time_budget_s, seed=opts.seed, progress=advance, folds=opts.folds, temporal=temporal,
    )
    bar.update(task, total=len(result.trials), completed=len(result.trials))
    return result


# ---- splitting and scoring -------------------------------------------------------------------------------


def split_interactions(
    interactions: pd.DataFrame, split: SplitKind, ratio: float, seed: int, leave_out: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test parts of `evaluation_split` (what `demo` uses)."""
    _, parts = evaluation_split(interactions, split, ratio, seed, leave_out)
    return parts.train, parts.test


def score_models(
    trained: Sequence[Trained], train: pd.DataFrame, relevant: pd.DataFrame, items: pd.DataFrame | None, k: int
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Recommend `k` unseen items to every user with relevant test items; the leaderboard and the lists."""
    from recstack.evaluation.report import EvaluationOptions, leaderboard

    users = pd.unique(relevant["user_id"])
    lists: dict[str, pd.DataFrame] = {}
    extra: dict[str, dict[str, float]] = {}
    for entry in trained:
        started = time.perf_counter()
        lists[entry.name] = entry.model.recommend(users, k)
        extra[entry.name] = {"fit_s": entry.fit_s, "recommend_s": time.perf_counter() - started}
    catalogue = list(pd.unique(train["item_id"].astype(str)))
    options = EvaluationOptions(k=k, catalogue=catalogue, item_categories=item_categories(items))
    return leaderboard(lists, relevant, train, options, extra=extra), lists


def metric_column(metric: str, k: int) -> str:
    """"ndcg[cold]" → the leaderboard's column "ndcg@10[cold]"."""
    name, bracket, label = metric.partition("[")
    return f"{name}@{k}{bracket}{label}"


def shown_columns(board: pd.DataFrame, k: int, every: bool = False) -> pd.DataFrame:
    """The table's columns (the headline metrics, or with `every` all of them), named without the `@k` the
    title already says (and without square brackets, which Rich would read as markup)."""
    metrics = SHOWN_METRICS if every else HEADLINE_METRICS
    rename = {metric_column(m, k): m.replace("[", "(").replace("]", ")") for m in metrics}
    kept = [c for c in rename if c in board.columns] + (["fit_s"] if "fit_s" in board.columns else [])
    return board[kept].rename(columns=rename)


def print_leaderboard(board: pd.DataFrame, k: int, title: str, every: bool = False) -> None:
    """The leaderboard table: headline metrics and fit seconds, or with `every` all metrics."""
    from recstack.evaluation.report import render_table

    console.print(render_table(shown_columns(board, k, every), title=f"{title} · k={k}"))


def write_report(board: pd.DataFrame, out: Path, k: int, meta: dict[str, Any]) -> tuple[Path, Path]:
    from recstack.evaluation.report import plot_comparison, write_json

    report = write_json(board, out / "report.json", meta)
    names = {metric_column(m, k) for m in PLOTTED_METRICS}
    plotted = [c for c in board.columns if c in names and board[c].notna().any()]
    plot = plot_comparison(board, out / "comparison.png", metrics=plotted, title=meta.get("title"))
    return report, plot


# ---- the command -----------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def _load(
    ctx: typer.Context, data: Path | None, items_file: Path | None, snapshot: str | None
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    cfg = settings(ctx)
    rules = ValidationRules(max_value=cfg.max_value)
    if data is not None:
        frame, items = read_training_files(data, items_file, rules)
        return frame, items, str(data)
    from recstack.storage.lake import Lake

    if items_file is not None:
        raise ConfigurationError("--items goes with --data; a snapshot brings its own catalogue")
    lake = Lake(cfg.lake_root)
    snapshot_id = snapshot or lake.latest().snapshot_id
    interactions = lake.read_interactions(snapshot_id).drop(columns=["event_id"])
    items = lake.read_items(snapshot_id)
    return interactions, (items if len(items) else None), f"snapshot {snapshot_id}"


def evaluate(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help=f"Interactions file (CSV/Parquet, {INTERACTIONS_HEADER}); default: latest snapshot.",
                     exists=True, dir_okay=False),
    ] = None,
    items: Annotated[
        Path | None, typer.Option("--items", help="Item metadata file for --data (title, category, tags…).",
                                  exists=True, dir_okay=False)
    ] = None,
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: the latest).")] = None,
    split: Annotated[
        SplitKind,
        typer.Option(help="Per-user random (user), each user's newest (user-temporal), per-item random, global "
                          "temporal, leave-last; auto: user-temporal when every interaction has a time, else user."),
    ] = "user",
    ratio: Annotated[float, typer.Option(help="Training share (temporal: the time quantile).")] = 0.75,
    leave_out: Annotated[int, typer.Option(min=1, help="Interactions per user held out by leave-last.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed of the split and the tuner.")] = 42,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help=f"Model to compare (repeatable); default {', '.join(DEFAULT_MODELS)}."),
    ] = None,
    param: Annotated[list[str] | None, typer.Option(help="model.parameter=value (repeatable).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Length of each recommendation list.")] = 10,
    tune: Annotated[bool, typer.Option("--tune", help="Search each model's hyperparameters first.")] = False,
    trials: Annotated[int, typer.Option(min=1, help="Tuning trials per model.")] = 20,
    tune_folds: Annotated[
        int, typer.Option(min=1, help="Validation splits each tuning trial is scored on (mean); more is steadier.")
    ] = 1,
    time_budget: Annotated[
        float | None, typer.Option(min=1, help="Seconds per model for tuning (and for 'auto').")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Directory for report.json and comparison.png (default under home).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Show every metric in the table (the JSON report always has them).")
    ] = False,
) -> None:
    """Train models on a split of the data and compare them on the held-out part: table, JSON and plot."""
    cfg = settings(ctx)
    names = list(dict.fromkeys(model or DEFAULT_MODELS))
    check_models(names)
    params = parse_params(param)
    interactions, item_frame, source = _load(ctx, data, items, snapshot)
    if model is None and item_frame is not None and "title" in item_frame and item_frame["title"].notna().any():
        names += [n for n in TEXT_MODELS if n not in names]
    resolved, (train, test) = evaluation_split(interactions, split, ratio, seed, leave_out)
    relevant = relevant_pairs(train, test, item_frame)
    if relevant.empty:
        raise ConfigurationError("the held-out part has no positive interaction to evaluate against")
    console.print(
        f"{source}: {len(interactions):,} interactions → {len(train):,} train / {len(test):,} test rows, "
        f"{relevant['user_id'].nunique():,} users with {len(relevant):,} relevant items"
    )
    tuning = TuneOptions(trials=trials, time_budget_s=time_budget, k=k, seed=seed, folds=tune_folds) if tune else None
    trained, failed = train_models(names, train, item_frame, params, tuning, time_budget, question_of(resolved))
    if not trained:
        raise RecstackError("no model could be trained: " + "; ".join(f"{n}: {r}" for n, r in failed.items()))
    board, _ = score_models(trained, train, relevant, item_frame, k)
    title = f"{source} · {resolved} split"
    print_leaderboard(board, k, title, every)
    target = out or cfg.home / "reports" / f"evaluate-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    meta = {
        "title": title,
        "source": source,
        "split": {"kind": resolved, "asked": split, "ratio": ratio, "seed": seed, "leave_out": leave_out},
        "k": k,
        "rows": {"interactions": len(interactions), "train": len(train), "test": len(test)},
        "relevant": {"users": int(relevant["user_id"].nunique()), "pairs": len(relevant)},
        "models": {t.name: {"params": t.params, "tuning": t.tuning} for t in trained},
        "failed": failed,
        "recstack": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    report, plot = write_report(board, target, k, meta)
    console.print(f"report: {report}\nplot:   {plot}")
