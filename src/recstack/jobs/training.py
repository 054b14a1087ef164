"""Train → evaluate → register → promote, as one library call over plain values.

`recstack train` is a shell over `train_and_register`; the feedback loop uses the same pieces and the same
hold-out rule (`Holdout.for_data`: each user's newest interactions when they are timestamped, as `auto`
validates) with its own head-to-head decision. Nothing here reads settings or prints: progress
goes to an optional callback taking a one-line message.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from recstack.errors import ConfigurationError
from recstack.evaluation.holdout import Evaluation, Holdout, evaluate_holdout
from recstack.models import catalog
from recstack.models.base import Recommender

if TYPE_CHECKING:
    from recstack.registry import ModelVersion, Registry
    from recstack.storage.lake import Lake, Snapshot

__all__ = [
    "K",
    "Progress",
    "TrainingData",
    "TrainingResult",
    "build_model",
    "default_model",
    "read_snapshot",
    "register_model",
    "train_and_register",
    "write_report",
]

logger = logging.getLogger(__name__)

K = 10
Progress = Callable[[str], None]
"""Told a one-line description of each step as it starts."""


@dataclass(frozen=True)
class TrainingData:
    """What a model is trained on: interactions (model contract, epoch-ms `timestamp`), the item catalogue
    and the users (None when there are none), and the snapshot they came from, when one did."""

    interactions: pd.DataFrame
    items: pd.DataFrame | None
    users: pd.DataFrame | None
    snapshot_id: str | None = None


@dataclass(frozen=True)
class TrainingResult:
    """A registered version, its hold-out evaluation, whether it became the champion, and the champion it
    was measured against (None when there was none)."""

    version: ModelVersion
    evaluation: Evaluation
    promoted: bool
    incumbent: ModelVersion | None
    model: Recommender[Any]


def default_model() -> str:
    """`auto` when the catalogue has it, else EASE (the strongest single model on the benchmarks)."""
    return "auto" if "auto" in catalog.MODELS else "ease"


def build_model(
    name: str, params: Mapping[str, Any] | None = None, time_budget_s: float | None = None
) -> Recommender[Any]:
    """A fresh model from the catalogue; a model with a `time_budget_s` setting ("auto") gets the budget."""
    cls = catalog.resolve(name)
    chosen = dict(params or {})
    if time_budget_s is not None and "time_budget_s" in cls.config_type.model_fields:
        chosen = {"time_budget_s": time_budget_s, **chosen}
    return cls(**chosen)


def read_snapshot(lake: Lake, snapshot: Snapshot) -> TrainingData:
    """A snapshot's interactions, items and users; `ConfigurationError` when it has no interactions."""
    interactions = lake.read_interactions(snapshot.snapshot_id)
    if interactions.empty:
        raise ConfigurationError(f"snapshot {snapshot.snapshot_id} has no interactions: ingest some first")
    items, users = lake.read_items(snapshot.snapshot_id), lake.read_users(snapshot.snapshot_id)
    return TrainingData(
        interactions, items if not items.empty else None, users if not users.empty else None, snapshot.snapshot_id
    )


def write_report(directory: Path, name: str, evaluation: Evaluation, meta: Mapping[str, Any], model: Any) -> Path:
    """`evaluation.json` (the leaderboard format of `recstack.evaluation.report`) and, for a model that
    explains its own choices (`report_`, as auto does), `model_report.json`; returns the directory."""
    from recstack.evaluation.report import write_json

    board = pd.DataFrame.from_dict({name: evaluation.metrics}, orient="index")
    board.index.name = "model"
    write_json(board, directory / "evaluation.json", meta=dict(meta))
    explained = getattr(model, "report_", None)
    if isinstance(explained, dict):
        (directory / "model_report.json").write_text(json.dumps(explained, indent=2, default=str) + "\n")
    return directory


def register_model(
    registry: Registry,
    name: str,
    fitted: Recommender[Any],
    evaluation: Evaluation,
    run_params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Log `fitted` with its evaluation and a report as the registry's next version (not promoted)."""
    with tempfile.TemporaryDirectory(prefix="recstack-report-") as scratch:
        report = write_report(Path(scratch) / "report", name, evaluation, run_params, fitted)
        return registry.log(fitted, metrics=evaluation.metrics, params=run_params, report=report, tags=tags)


def train_and_register(
    registry: Registry,
    data: TrainingData,
    model: str,
    params: Mapping[str, Any] | None = None,
    *,
    holdout: Holdout | None = None,
    promote: bool = True,
    force: bool = False,
    k: int = K,
    tags: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Fit `model` (a catalogue name or `module:Class`, with `params`) on the training part of `holdout`
    (default `Holdout.for_data`: each user's newest 20 % when every interaction has a timestamp, a random
    20 % per user otherwise), score it on the rest, refit it on all of `data`, register
    it, and make it the champion when it beats the current one on the registry's champion metric (always
    with `force`; never unless `promote` or `force`).

    The version's run params record the snapshot, the split and the row counts; its tags include
    `recstack.snapshot` when `data` came from a snapshot.
    """
    holdout = holdout or Holdout.for_data(data.interactions)
    step = progress or (lambda message: None)
    catalog.resolve(model)
    step(f"fitting {model} on {1 - holdout.share:.0%} of the interactions ({holdout.kind} hold-out)…")
    evaluation = evaluate_holdout(
        lambda: build_model(model, params), data.interactions, data.items, data.users, holdout, k
    )
    step(f"refitting {model} on all interactions…")
    fitted = build_model(model, params).fit(data.interactions, data.items, data.users)
    run_params: dict[str, Any] = {
        "snapshot_id": data.snapshot_id,
        "split": holdout.describe(),
        "interactions": len(data.interactions),
        "train_rows": evaluation.train_rows,
        "test_rows": evaluation.test_rows,
        "test_users": evaluation.test_users,
        "fit_seconds": round(fitted.fit_seconds_ or 0.0, 3),
    }
    all_tags = {**({"recstack.snapshot": data.snapshot_id} if data.snapshot_id else {}), **dict(tags or {})}
    step("registering…")
    version = register_model(registry, model, fitted, evaluation, run_params, all_tags)
    incumbent = registry.champion()
    promoted = registry.promote(version.version, force=force) if promote or force else False
    logger.info(
        "%s version %d (%s): %s %.4f, %s", registry.model_name, version.version, model, registry.champion_metric,
        evaluation.metrics.get(registry.champion_metric, float("nan")), "champion" if promoted else "not promoted",
    )
    return TrainingResult(version, evaluation, promoted, incumbent, fitted)
