"""Split invariants: the parts partition the input, ratios hold per user/item, seeds decide, time orders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.evaluation.splits import leave_last_out, stratified_by_item, stratified_by_user, temporal


@pytest.fixture
def interactions() -> pd.DataFrame:
    """40 users with 1..40 interactions each over 60 items; a `row` column identifies each input row."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        items = rng.choice(60, size=u + 1, replace=False)
        for i in items:
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), int(rng.integers(0, 10**6)) * 1000))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "value", "timestamp"])
    frame["row"] = np.arange(len(frame))
    return frame


def assert_partition(frame: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> None:
    assert len(train) + len(test) == len(frame)
    assert set(train["row"]).isdisjoint(test["row"])
    assert set(train["row"]) | set(test["row"]) == set(frame["row"])
    assert list(train.columns) == list(frame.columns)
    # input order is kept inside each part
    assert train["row"].is_monotonic_increasing and test["row"].is_monotonic_increasing


def test_stratified_by_user_counts_and_partition(interactions: pd.DataFrame) -> None:
    train, test = stratified_by_user(interactions, ratio=0.75, seed=42)
    assert_partition(interactions, train, test)
    n = interactions.groupby("user_id").size()
    n_train = train.groupby("user_id").size().reindex(n.index, fill_value=0)
    # floor(0.75 n), at least 1 and at most n - 1 for n >= 2; a single interaction stays in train
    expected = np.where(n >= 2, np.clip(np.floor(0.75 * n + 1e-9), 1, n - 1), n)
    assert n_train.tolist() == expected.astype(int).tolist()
    assert (n_train[n >= 2] >= 1).all()
    assert set(test["user_id"]) == set(n.index[n >= 2])


def test_stratified_by_user_small_ratio_keeps_one_in_train(interactions: pd.DataFrame) -> None:
    train, test = stratified_by_user(interactions, ratio=0.1, seed=1)
    assert set(train["user_id"]) == set(interactions["user_id"])
    assert set(test["user_id"]) == set(interactions.groupby("user_id").size().loc[lambda s: s >= 2].index)


def test_stratified_by_user_is_deterministic_and_seeded(interactions: pd.DataFrame) -> None:
    a = stratified_by_user(interactions, 0.75, seed=7)
    b = stratified_by_user(interactions, 0.75, seed=7)
    c = stratified_by_user(interactions, 0.75, seed=8)
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert set(a.test["row"]) != set(c.test["row"])


def reference_ms_item_split(data: pd.DataFrame, ratio: float, seed: int) -> tuple[set[int], set[int]]:
    """Microsoft Recommenders' `_do_stratification(filter_by="item", is_random=True)`, transcribed."""
    data = data.copy()
    np.random.seed(seed)
    data["random"] = np.random.rand(data.shape[0])
    data = data.sort_values(["item_id", "random"])
    groups = data.groupby("item_id")
    data["count"] = groups["item_id"].transform("count")
    data["rank"] = (groups.cumcount() + 1) / data["count"]
    return set(data.loc[data["rank"] <= ratio, "row"]), set(data.loc[data["rank"] > ratio, "row"])


def test_stratified_by_item_matches_microsoft_recommenders(interactions: pd.DataFrame) -> None:
    train, test = stratified_by_item(interactions, ratio=0.75, seed=42)
    assert_partition(interactions, train, test)
    ref_train, ref_test = reference_ms_item_split(interactions, 0.75, 42)
    assert set(train["row"]) == ref_train
    assert set(test["row"]) == ref_test


def test_stratified_by_item_ratio_per_item(interactions: pd.DataFrame) -> None:
    train, _ = stratified_by_item(interactions, ratio=0.75, seed=42)
    n = interactions.groupby("item_id").size()
    n_train = train.groupby("item_id").size().reindex(n.index, fill_value=0)
    # positions j with j / n <= 0.75: floor(0.75 n); an item seen once goes wholly to test
    assert n_train.tolist() == np.floor(0.75 * n + 1e-9).astype(int).tolist()


def test_stratified_by_item_min_rating_drops_rare_items(interactions: pd.DataFrame) -> None:
    train, test = stratified_by_item(interactions, ratio=0.75, seed=42, min_rating=10)
    counts = interactions.groupby("item_id").size()
    kept = set(counts.index[counts >= 10])
    assert set(train["item_id"]) | set(test["item_id"]) == kept
    with pytest.raises(ConfigurationError):
        stratified_by_item(interactions, min_rating=0)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5])
def test_bad_ratio_is_rejected(interactions: pd.DataFrame, ratio: float) -> None:
    with pytest.raises(ConfigurationError):
        stratified_by_user(interactions, ratio=ratio)


def test_temporal_by_quantile_orders_time(interactions: pd.DataFrame) -> None:
    train, test = temporal(interactions, quantile=0.8)
    assert_partition(interactions, train, test)
    assert train["timestamp"].max() < test["timestamp"].min()
    assert len(train) / len(interactions) == pytest.approx(0.8, abs=0.02)


def test_temporal_by_cutoff(interactions: pd.DataFrame) -> None:
    cutoff = 500_000_000
    train, test = temporal(interactions, quantile=None, cutoff_ms=cutoff)
    assert (train["timestamp"] < cutoff).all() and (test["timestamp"] >= cutoff).all()
    with pytest.raises(ConfigurationError):
        temporal(interactions, quantile=None)


def test_leave_last_out(interactions: pd.DataFrame) -> None:
    train, test = leave_last_out(interactions, n=2)
    assert_partition(interactions, train, test)
    n = interactions.groupby("user_id").size()
    held = test.groupby("user_id").size().reindex(n.index, fill_value=0)
    assert held.tolist() == np.minimum(2, n - 1).tolist()
    # every held-out interaction is at least as recent as every kept one of the same user
    last_train = train.groupby("user_id")["timestamp"].max()
    first_test = test.groupby("user_id")["timestamp"].min()
    assert (first_test >= last_train.reindex(first_test.index)).all()


def test_leave_last_out_breaks_ties_by_row_order() -> None:
    frame = pd.DataFrame(
        {"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "value": 1.0, "timestamp": [5, 5, 1]}
    )
    train, test = leave_last_out(frame, n=1)
    # a and b share the latest time; b comes later in the input, so b is the most recent
    assert test["item_id"].tolist() == ["b"]
    assert train["item_id"].tolist() == ["a", "c"]
    with pytest.raises(ConfigurationError):
        leave_last_out(frame, n=0)


def test_input_is_not_modified(interactions: pd.DataFrame) -> None:
    before = interactions.copy()
    stratified_by_user(interactions)
    stratified_by_item(interactions)
    temporal(interactions)
    leave_last_out(interactions)
    pd.testing.assert_frame_equal(interactions, before)
