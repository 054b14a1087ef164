"""Tuning against a fake model: the search finds the good parameter, respects its budgets, never sees test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError, RecstackError
from recstack.evaluation.tuning import TrialProgress, tune, tune_objective, validation_split
from recstack.testing.clock import ManualClock


@pytest.fixture
def train() -> pd.DataFrame:
    """30 users; item popularity falls with the item number, so 'most popular first' is a good ranking."""
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 41)
    rows = []
    for u in range(30):
        for i in rng.choice(40, size=12, replace=False, p=weights / weights.sum()):
            rows.append((f"u{u}", f"i{i}", 1.0, 1_700_000_000_000 + int(i)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "value", "timestamp"])


class ShiftedPopularity:
    """Recommends items by training popularity, skipping the `shift` most popular: shift 0 is best."""

    fitted_on: ClassVar[list[pd.DataFrame]] = []
    fit_seconds: ClassVar[float] = 0.0
    clock: ClassVar[ManualClock] = ManualClock()

    def __init__(self, shift: int = 0) -> None:
        if shift == 7:
            raise ValueError("shift 7 is not supported")
        self.shift = shift

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"shift": trial.suggest_int("shift", 0, 8)}

    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> ShiftedPopularity:
        type(self).fitted_on.append(interactions)
        type(self).clock.advance(type(self).fit_seconds)
        self.ranking = interactions["item_id"].value_counts().index[self.shift :].tolist()
        self.seen = interactions.groupby("user_id")["item_id"].agg(set).to_dict()
        return self

    def recommend(self, user_ids: Sequence[str], k: int, exclude_seen: bool = True) -> pd.DataFrame:
        rows = []
        for user in user_ids:
            seen = self.seen.get(user, set()) if exclude_seen else set()
            chosen = [item for item in self.ranking if item not in seen][:k]
            rows += [(user, item, rank + 1, 1.0 / (rank + 1)) for rank, item in enumerate(chosen)]
        return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])


@pytest.fixture(autouse=True)
def reset_fake() -> None:
    ShiftedPopularity.fitted_on = []
    ShiftedPopularity.fit_seconds = 0.0
    ShiftedPopularity.clock = ManualClock()


def test_finds_the_best_parameter_and_reports_each_trial(train: pd.DataFrame) -> None:
    seen: list[TrialProgress] = []
    result = tune(ShiftedPopularity, train, n_trials=25, k=5, progress=seen.append)
    assert result.best_params == {"shift": 0}
    assert len(result.trials) == 25 and len(seen) == 25
    assert result.best_value == pytest.approx(result.trials["value"].max())
    assert [p.number for p in seen] == list(range(25))
    assert seen[-1].best_value == pytest.approx(result.best_value)
    assert result.to_dict()["metric"] == "ndcg@5"


def test_failed_trials_are_recorded_and_skipped(train: pd.DataFrame) -> None:
    seen: list[TrialProgress] = []
    result = tune(ShiftedPopularity, train, n_trials=25, k=5, progress=seen.append)
    failed = result.trials["state"] == "FAIL"
    assert failed.any()  # shift 7 raises ValueError; TPE tries it within 25 trials of 9 values
    assert all(p.value is None for p in seen if p.params.get("shift") == 7)


def test_only_the_training_data_is_used_and_split_again(train: pd.DataFrame) -> None:
    tune(ShiftedPopularity, train, n_trials=2, k=5)
    fit_part, held_out = validation_split(train)
    for fitted in ShiftedPopularity.fitted_on:
        assert len(fitted) == len(fit_part) < len(train)
        pd.testing.assert_frame_equal(fitted, fit_part)
    assert not held_out.empty


def test_several_folds_score_each_trial_by_its_mean_over_fresh_splits(train: pd.DataFrame) -> None:
    from recstack.evaluation import metrics as m

    result = tune(ShiftedPopularity, train, n_trials=1, k=5, folds=3)
    splits = [validation_split(train, seed=seed) for seed in (1, 2, 3)]
    assert len(ShiftedPopularity.fitted_on) == 3
    for fitted, (fit_part, _) in zip(ShiftedPopularity.fitted_on, splits, strict=True):
        pd.testing.assert_frame_equal(fitted, fit_part)
    expected = np.mean(
        [
            m.ndcg(ShiftedPopularity(**result.best_params).fit(f).recommend(list(pd.unique(h["user_id"])), 5), h, 5)
            for f, h in splits
        ]
    )
    assert result.best_value == pytest.approx(expected)
    with pytest.raises(ConfigurationError):
        tune(ShiftedPopularity, train, n_trials=1, folds=0)


def test_fixed_keywords_reach_every_trial_without_being_searched(train: pd.DataFrame) -> None:
    built: list[dict[str, Any]] = []
    original = ShiftedPopularity.__init__

    def spy(self: ShiftedPopularity, **params: Any) -> None:
        built.append(params)
        original(self, shift=params.get("shift", 0))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ShiftedPopularity, "__init__", spy)
        result = tune(ShiftedPopularity, train, n_trials=3, k=5, fixed={"flavour": "x"})
    trials = [params for params in built if "shift" in params]
    assert trials and all(params["flavour"] == "x" for params in trials)
    assert "flavour" not in result.best_params


def test_the_first_trial_is_the_models_defaults(train: pd.DataFrame) -> None:
    from recstack.models.ease import EASE

    result = tune(EASE, train, n_trials=2, k=5)  # type: ignore[arg-type]
    assert result.trials["params_l2"].iloc[0] == EASE().config.l2


def test_time_budget_stops_the_search(train: pd.DataFrame) -> None:
    ShiftedPopularity.fit_seconds = 0.25
    clock = ShiftedPopularity.clock
    result = tune(ShiftedPopularity, train, n_trials=1000, timeout_s=1.0, k=5, clock=clock)
    # each trial takes 0.25 s on the test's clock: after the 4th the budget is spent, so a 5th is declined
    assert len(result.trials) == 4
    assert result.elapsed_s == 1.0


def test_a_trial_that_would_overrun_is_not_started(train: pd.DataFrame) -> None:
    ShiftedPopularity.fit_seconds = 0.4
    result = tune(ShiftedPopularity, train, n_trials=1000, timeout_s=1.0, k=5, clock=ShiftedPopularity.clock)
    # 0.4 s then 0.8 s: a third 0.4 s trial would end at 1.2 s, past the budget
    assert len(result.trials) == 2
    assert result.elapsed_s == pytest.approx(0.8)


def test_at_least_one_trial_runs_even_with_a_tiny_budget(train: pd.DataFrame) -> None:
    ShiftedPopularity.fit_seconds = 0.05
    result = tune(ShiftedPopularity, train, n_trials=None, timeout_s=0.001, k=5, clock=ShiftedPopularity.clock)
    assert len(result.trials) == 1


def test_same_seed_same_search(train: pd.DataFrame) -> None:
    a = tune(ShiftedPopularity, train, n_trials=6, k=5, seed=3)
    b = tune(ShiftedPopularity, train, n_trials=6, k=5, seed=3)
    assert a.trials["params_shift"].tolist() == b.trials["params_shift"].tolist()


def test_bad_arguments(train: pd.DataFrame) -> None:
    with pytest.raises(ConfigurationError):
        tune(ShiftedPopularity, train, metric="auc", n_trials=1)
    with pytest.raises(ConfigurationError):
        tune(ShiftedPopularity, train, n_trials=None, timeout_s=None)


def test_all_trials_failing_raises(train: pd.DataFrame) -> None:
    class Broken(ShiftedPopularity):
        @classmethod
        def search_space(cls, trial: Any) -> dict[str, Any]:
            return {"shift": trial.suggest_int("shift", 7, 7)}

    with pytest.raises(RecstackError):
        tune(Broken, train, n_trials=2, k=5)


def test_tune_objective_tries_the_start_points_first_and_returns_derived_keywords() -> None:
    seen: list[dict[str, Any]] = []

    def space(trial: Any) -> dict[str, Any]:
        x = trial.suggest_float("x", -5.0, 5.0)
        return {"x": x, "square": x * x}

    def objective(params: dict[str, Any]) -> float:
        seen.append(params)
        return -((params["x"] - 1.0) ** 2)

    result = tune_objective(space, objective, start=[{"x": 1.0}], n_trials=5, seed=3)
    assert seen[0]["x"] == 1.0
    assert result == ({"x": 1.0, "square": 1.0}, 0.0)


def test_tune_objective_with_every_trial_failing_returns_none() -> None:
    def objective(params: dict[str, Any]) -> float:
        raise ValueError("no")

    assert tune_objective(lambda t: {"x": t.suggest_int("x", 0, 3)}, objective, n_trials=3) is None


def test_temporal_validation_holds_out_each_users_newest_and_backtests_with_later_seeds() -> None:
    # one user with 8 events at t = 0..7, one with 4 at t = 10..13
    frame = pd.DataFrame(
        {
            "user_id": ["a"] * 8 + ["b"] * 4,
            "item_id": [f"i{n}" for n in range(12)],
            "timestamp": [*range(8), *range(10, 14)],
        }
    )
    fit_part, held_out = validation_split(frame, ratio=0.75, temporal=True)
    assert sorted(held_out["timestamp"]) == [6, 7, 13]
    assert len(fit_part) == 9
    # seed 3 steps back a whole window (2 × half of 25 %): a's newest 2 and b's newest 1 are set aside first
    fit_back, held_back = validation_split(frame, ratio=0.75, seed=3, temporal=True)
    assert sorted(held_back["timestamp"]) == [4, 5, 12]
    assert sorted(fit_back["timestamp"]) == [0, 1, 2, 3, 10, 11]


def test_tuning_validates_temporally_when_asked(train: pd.DataFrame) -> None:
    ShiftedPopularity.fitted_on = []
    tune(ShiftedPopularity, train, n_trials=1, temporal=True)  # type: ignore[arg-type]
    fitted = ShiftedPopularity.fitted_on[0]
    pd.testing.assert_frame_equal(fitted, validation_split(train, temporal=True).train)
    assert not fitted.equals(validation_split(train).train)
