"""Hyperparameter search per model with Optuna, on a validation split carved out of the training data.

The test split never reaches this module: `tune` receives training interactions only and carves its own
validation split from them. Models are duck-typed (`TunableModel`): the class proposes its parameters for a
trial, is built with them, fitted and asked for recommendations, which are scored with a metric from
`recstack.evaluation.metrics`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import numpy as np
import pandas as pd

from recstack.errors import ConfigurationError, MissingExtra, RecstackError

from . import metrics as m
from .splits import Split, stratified_by_user, temporal_by_user

__all__ = [
    "TrialProgress",
    "TunableModel",
    "TuningResult",
    "default_params",
    "tune",
    "tune_objective",
    "validation_split",
]

logger = logging.getLogger(__name__)

# Trials that fail with one of these are recorded as failed and the search goes on; anything else is a bug.
TRIAL_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError, np.linalg.LinAlgError)


class TunableModel(Protocol):
    """What `tune` needs from a model class (see `recstack.models.base` for the full interface)."""

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Suggest constructor keywords on an `optuna.Trial` and return them."""
        ...

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> Self: ...

    def recommend(self, user_ids: Sequence[str], k: int, exclude_seen: bool = True) -> pd.DataFrame: ...


@dataclass(frozen=True)
class TrialProgress:
    """Reported after each finished trial. `value` is None for a failed trial; times are seconds."""

    number: int
    value: float | None
    best_value: float | None
    params: dict[str, Any]
    trial_s: float
    elapsed_s: float
    n_trials: int | None
    timeout_s: float | None


ProgressCallback = Callable[[TrialProgress], None]


@dataclass(frozen=True)
class TuningResult:
    """Outcome of a search: the winning constructor keywords and their validation score, plus every trial
    (`trials`: Optuna's trials table: number, value, state, duration, `params_*` columns)."""

    model: str
    metric: str
    k: int
    best_params: dict[str, Any]
    best_value: float
    trials: pd.DataFrame = field(repr=False)
    elapsed_s: float
    folds: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, to save with the fitted model."""
        return {
            "model": self.model,
            "metric": f"{self.metric}@{self.k}",
            "best_params": self.best_params,
            "best_value": self.best_value,
            "n_trials": len(self.trials),
            "folds": self.folds,
            "elapsed_s": round(self.elapsed_s, 3),
        }


_METRICS: Mapping[str, Callable[[pd.DataFrame, pd.DataFrame, int], float]] = {
    "ndcg": m.ndcg,
    "precision": m.precision,
    "recall": m.recall,
    "map": m.map_at_k,
    "hit_rate": m.hit_rate,
    "mrr": m.mrr,
}


def validation_split(train: pd.DataFrame, ratio: float = 0.75, seed: int = 1, temporal: bool = False) -> Split:
    """Carve a validation split out of training data, `ratio` of each user's interactions kept for fitting.

    Random (default): per-user stratified with `seed`, which differs from the usual test-split seed (42) on
    purpose, so that a caller who carves both from the same frame does not draw the same permutation twice.

    `temporal`: each user's newest `1 - ratio` is held out — the question production asks (what will this
    user pick next?), where co-occurrence within one sitting helps less than on a random split. Seed 1 cuts
    at the newest interactions; seed s > 1 first sets aside each user's newest (s − 1)/2 × (1 − ratio)
    (a rolling origin, half a window further back per seed, at most half the data), so several folds are
    several backtests rather than one split repeated. The set-aside rows are in neither part.
    """
    if not temporal:
        return stratified_by_user(train, ratio=ratio, seed=seed)
    back = min((seed - 1) * (1.0 - ratio) / 2.0, 0.5)
    frame = temporal_by_user(train, ratio=1.0 - back).train if back > 0 else train
    return temporal_by_user(frame, ratio=ratio)


def tune(
    model_cls: type[TunableModel],
    train: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    metric: str = "ndcg",
    k: int = 10,
    n_trials: int | None = 20,
    timeout_s: float | None = None,
    seed: int = 42,
    validation_ratio: float = 0.75,
    progress: ProgressCallback | None = None,
    fixed: Mapping[str, Any] | None = None,
    folds: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    temporal: bool = False,
) -> TuningResult:
    """Search `model_cls`'s hyperparameters to maximise `metric`@`k` on a validation split of `train`.

    Each trial builds `model_cls(**model_cls.search_space(trial))`, fits it on the fitting part, recommends
    `k` unseen items to every validation user and scores them. The search stops after `n_trials` trials or
    once `timeout_s` seconds have passed, whichever comes first; it also declines to start a trial that
    would, at the mean trial duration so far, end after the budget. At least one trial always runs. The
    sampler (TPE) is seeded with `seed`, so a search with the same budget in trials is reproducible; the
    first trial is the model's own defaults (where its instances expose `params`).
    `fixed` keywords (a weighting chosen earlier, say) go to every trial's constructor and are not searched.
    With `folds` > 1 a trial's score is its mean over that many validation splits (seeds 1, 2, …): slower,
    but the winner is less often one split's luck. `clock` measures the budget (tests pass one they control).
    `temporal` validates on each user's newest interactions (`validation_split`).

    Raises `ConfigurationError` for an unknown metric or no budget at all, `RecstackError` if every trial
    failed.
    """
    if metric not in _METRICS:
        raise ConfigurationError(f"unknown tuning metric {metric!r}; choose from {sorted(_METRICS)}")
    if n_trials is None and timeout_s is None:
        raise ConfigurationError("tuning needs n_trials, timeout_s or both")
    if folds < 1:
        raise ConfigurationError(f"tuning needs at least one fold, not {folds}")
    splits = [
        validation_split(train, ratio=validation_ratio, seed=seed, temporal=temporal) for seed in range(1, folds + 1)
    ]
    users = [list(pd.unique(held_out["user_id"])) for _, held_out in splits]
    score = _METRICS[metric]
    name = getattr(model_cls, "__name__", str(model_cls))

    def objective(params: dict[str, Any]) -> float:
        values = []
        for (fit_part, held_out), asked in zip(splits, users, strict=True):
            model = model_cls(**params, **(fixed or {})).fit(fit_part, items=items)
            values.append(score(model.recommend(asked, k, exclude_seen=True), held_out, k))
        return float(np.mean(values))

    start = default_params(model_cls)
    study, budget = _search(
        model_cls.search_space, objective, [start] if start else [], n_trials, timeout_s, seed, progress, clock
    )
    if study is None:
        raise RecstackError(f"every tuning trial of {name} failed; see the log for the errors")
    elapsed = clock() - budget.started
    logger.info(
        "tuned %s: %d trials in %.1fs, best %s@%d=%.4f with %s",
        name,
        len(study.trials),
        elapsed,
        metric,
        k,
        study.best_value,
        study.best_params,
    )
    return TuningResult(
        model=name,
        metric=metric,
        k=k,
        best_params=dict(study.best_trial.user_attrs["params"]),
        best_value=float(study.best_value),
        trials=study.trials_dataframe(),
        elapsed_s=elapsed,
        folds=folds,
    )


def tune_objective(
    space: Callable[[Any], dict[str, Any]],
    objective: Callable[[dict[str, Any]], float],
    *,
    start: Sequence[Mapping[str, Any]] = (),
    n_trials: int | None = 20,
    timeout_s: float | None = None,
    seed: int = 42,
) -> tuple[dict[str, Any], float] | None:
    """Maximise `objective(params)` over `space(trial)` with TPE, trying the `start` points first.

    For searches whose score is not one model's own metric (a member tuned for what it adds to a blend, say).
    Returns the best keywords and score, or None when every trial failed.
    """
    study, _ = _search(space, objective, start, n_trials, timeout_s, seed, None, time.perf_counter)
    if study is None:
        return None
    return dict(study.best_trial.user_attrs["params"]), float(study.best_value)


def _search(
    space: Callable[[Any], dict[str, Any]],
    objective: Callable[[dict[str, Any]], float],
    start: Sequence[Mapping[str, Any]],
    n_trials: int | None,
    timeout_s: float | None,
    seed: int,
    progress: ProgressCallback | None,
    clock: Callable[[], float],
) -> tuple[Any, _Budget]:
    """The seeded TPE study both searches run: `start` points first, each trial's keywords (which a space
    may derive from what it samples) kept as the `params` user attribute; the study is None when every trial
    failed. The time budget is enforced by `_Budget` on `clock` (Optuna checks the same thing between trials,
    but only on the wall clock)."""
    try:
        import optuna
    except ImportError as exc:
        raise MissingExtra("optuna", "models") from exc

    def run(trial: optuna.Trial) -> float:
        params = space(trial)
        trial.set_user_attr("params", params)
        return objective(params)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for point in start:
        study.enqueue_trial(dict(point), skip_if_exists=True)
    budget = _Budget(clock, clock(), timeout_s, n_trials, progress)
    study.optimize(run, n_trials=n_trials, catch=TRIAL_ERRORS, callbacks=[budget], gc_after_trial=False)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return (study if completed else None), budget


def default_params(model_cls: Any) -> dict[str, Any]:
    """The scalar constructor defaults of a model whose instances expose `params` (every Recommender): the
    starting point of a search, since a model's defaults are a considered choice."""
    try:
        params = getattr(model_cls(), "params", None)
    except (TypeError, ValueError):
        return {}
    if not isinstance(params, Mapping):
        return {}
    return {k: v for k, v in params.items() if isinstance(v, bool | int | float | str)}


@dataclass
class _Budget:
    """Optuna callback: reports progress and stops the study before a trial that would overrun the time.

    A trial's duration is the `clock` time since the previous trial ended (sampling included)."""

    clock: Callable[[], float]
    started: float
    timeout_s: float | None
    n_trials: int | None
    progress: ProgressCallback | None
    durations: list[float] = field(default_factory=list)

    def __call__(self, study: Any, trial: Any) -> None:
        elapsed = self.clock() - self.started
        duration = elapsed - sum(self.durations)
        self.durations.append(duration)
        value = float(trial.value) if trial.value is not None else None
        try:
            best: float | None = float(study.best_value)
        except ValueError:
            best = None
        if value is None:
            logger.warning("tuning trial %d failed with params %s", trial.number, trial.params)
        if self.progress is not None:
            self.progress(
                TrialProgress(
                    number=trial.number,
                    value=value,
                    best_value=best,
                    params=dict(trial.params),
                    trial_s=duration,
                    elapsed_s=elapsed,
                    n_trials=self.n_trials,
                    timeout_s=self.timeout_s,
                )
            )
        if self.timeout_s is not None and (
            elapsed >= self.timeout_s or elapsed + float(np.mean(self.durations)) > self.timeout_s
        ):
            logger.info(
                "tuning stops after %d trials: the next would overrun %.1fs", trial.number + 1, self.timeout_s
            )
            study.stop()
