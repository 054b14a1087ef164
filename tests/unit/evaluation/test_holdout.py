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
