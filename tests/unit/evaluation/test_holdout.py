"""The hold-outs the champion decision uses, on hand-computed cases."""

from __future__ import annotations

import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.evaluation.holdout import Holdout, evaluation_split
from recstack.evaluation.splits import has_timestamps, temporal_by_user


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["a", "a", "a", "a", "a", "b", "b", "c"],
        "item_id": ["1", "2", "3", "4", "5", "1", "2", "9"],
        "timestamp": [50, 10, 40, 20, 30, 7, 5, 1],
    })


def test_temporal_by_user_holds_out_each_users_newest_share() -> None:
    train, test = temporal_by_user(frame(), ratio=0.6)
    # a: floor(0.6 * 5) = 3 oldest (10, 20, 30) train; b: floor(1.2) = 1 oldest; c: a single row stays in train.
    assert sorted(zip(test["user_id"], test["item_id"], strict=True)) == [("a", "1"), ("a", "3"), ("b", "1")]
    assert train["item_id"].tolist() == ["2", "4", "5", "2", "9"]  # input order kept


def test_holdout_kinds_split_and_describe_themselves() -> None:
    temporal = Holdout("temporal", 0.25)
    train, test = temporal.split(frame())
    assert train["timestamp"].max() < test["timestamp"].min() and len(test) == 2
    assert temporal.describe() == "temporal(quantile=0.75)"
    assert Holdout("user", 0.2, seed=3).describe() == "stratified_by_user(ratio=0.8, seed=3)"
    assert len(Holdout("user-temporal", 0.4).split(frame()).test) == 3
    with pytest.raises(ConfigurationError):
        Holdout("user", 1.0)


def test_the_data_picks_the_holdout_as_it_picks_autos_validation() -> None:
    timed = frame()
    assert has_timestamps(timed) and Holdout.for_data(timed, 0.4).kind == "user-temporal"
    untimed = timed.drop(columns="timestamp")
    assert not has_timestamps(untimed) and Holdout.for_data(untimed, 0.4, seed=3) == Holdout("user", 0.4, 3)
    partly = timed.assign(timestamp=[50, None, 40, 20, 30, 7, 5, 1])
    assert Holdout.for_data(partly).kind == "user"


def test_evaluate_splits_by_name_and_auto_resolves_from_the_data() -> None:
    kind, parts = evaluation_split(frame(), "user-temporal", ratio=0.6)
    assert kind == "user-temporal"
    held = sorted(zip(parts.test["user_id"], parts.test["item_id"], strict=True))
    assert held == [("a", "1"), ("a", "3"), ("b", "1")]
    assert evaluation_split(frame(), "auto", ratio=0.6)[0] == "user-temporal"
    kind, parts = evaluation_split(frame().drop(columns="timestamp"), "auto", ratio=0.6, seed=1)
    assert kind == "user" and len(parts.train) + len(parts.test) == len(frame())
    with pytest.raises(ConfigurationError, match="empty part"):
        evaluation_split(frame().loc[lambda f: f["user_id"] == "c"], "user-temporal", ratio=0.6)


def test_each_split_asks_its_question_and_self_validating_models_are_told_it() -> None:
    from recstack.evaluation.holdout import question_of, told_question
    from recstack.models import catalog

    assert [question_of(k) for k in ("user", "item")] == ["random", "random"]
    assert [question_of(k) for k in ("user-temporal", "temporal", "leave-last")] == ["temporal"] * 3
    with pytest.raises(ConfigurationError, match="unknown split"):
        question_of("auto")
    auto = catalog.resolve("auto")
    assert told_question(auto, {"time_budget_s": 5.0}, "random") == {"time_budget_s": 5.0, "validation": "random"}
    assert told_question(auto, {"validation": "temporal"}, "random") == {"validation": "temporal"}
    assert told_question(catalog.resolve("ease"), {"l2": 10.0}, "temporal") == {"l2": 10.0}


def test_evaluate_trains_auto_validated_the_way_the_split_judges_it() -> None:
    from recstack.cli.evaluate import train_models

    rows = [
        (f"u{u}", f"i{(u * 7 + j * 3) % 40}", float(1 + j % 5), 1_000 + 10 * j + u)
        for u in range(30)
        for j in range(12)
    ]
    columns = ["user_id", "item_id", "value", "timestamp"]
    train = pd.DataFrame(rows, columns=columns).drop_duplicates(["user_id", "item_id"])
    params = {"auto": {"time_budget_s": 3.0, "candidates": ["ease", "item_knn"], "max_trials": 2, "folds": 1}}
    trained, failed = train_models(["auto"], train, None, params, question="random")
    assert not failed
    assert trained[0].model.report_["validation_protocol"] == "random"
    trained, _ = train_models(["auto"], train, None, params, question="temporal")
    assert trained[0].model.report_["validation_protocol"] == "temporal"
