"""Train/test splits of an interactions frame.

Every function is pure: it takes an interactions frame (columns `user_id`, `item_id`, `value`, `timestamp`
in epoch milliseconds, optionally `event_type`) and returns a `Split` of two frames that partition its rows.
Row order inside each part follows the input's order, and the index is reset. The input is never modified.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd

from recstack.errors import ConfigurationError

__all__ = [
    "Split",
    "has_timestamps",
    "leave_last_out",
    "stratified_by_item",
    "stratified_by_user",
    "temporal",
    "temporal_by_user",
]

logger = logging.getLogger(__name__)

# j/n <= ratio is compared in floating point; without the slack 0.7 * 10 would give 6 items, not 7.
_EPS = 1e-9


class Split(NamedTuple):
    """Two disjoint parts of one interactions frame: `train` and `test`."""

    train: pd.DataFrame
    test: pd.DataFrame


def has_timestamps(interactions: pd.DataFrame) -> bool:
    """Whether every row carries a time: the condition for validating on each user's newest interactions
    (what `auto`, `recstack train` and `recstack evaluate --split auto` decide on)."""
    if "timestamp" not in interactions.columns or interactions.empty:
        return False
    return bool(interactions["timestamp"].notna().all())


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise ConfigurationError(f"split ratio must be strictly between 0 and 1, got {ratio}")


def _require(interactions: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in interactions.columns]
    if missing:
        raise ConfigurationError(f"interactions frame lacks column(s) {missing}")


def _partition(interactions: pd.DataFrame, in_train: np.ndarray) -> Split:
    train = interactions.loc[in_train].reset_index(drop=True)
    test = interactions.loc[~in_train].reset_index(drop=True)
    logger.debug("split %d rows into %d train / %d test", len(interactions), len(train), len(test))
    return Split(train, test)


def _positions_in_random_order(groups: pd.Series, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row: its 1-based position inside its group after a seeded shuffle, and the group's size.

    The random keys are drawn with the legacy `np.random.RandomState(seed).rand(n)` in row order, as
    Microsoft Recommenders' `python_stratified_split` does after `np.random.seed(seed)`; the rows of a group
    are then ranked by that key, so the outcome matches theirs row for row on the same input order.
    """
    keys = np.random.RandomState(seed).rand(len(groups))
    codes = pd.factorize(groups)[0]
    order = np.lexsort((keys, codes))
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    sizes_sorted = np.diff(np.r_[starts, len(order)])
    run_start = np.repeat(starts, sizes_sorted)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - run_start + 1
    size = np.empty(len(order), dtype=np.int64)
    size[order] = np.repeat(sizes_sorted, sizes_sorted)
    return position, size


def stratified_by_user(interactions: pd.DataFrame, ratio: float = 0.75, seed: int = 42) -> Split:
    """Per-user stratified random split: about `ratio` of each user's interactions go to train.

    A user with n interactions keeps floor(ratio * n) of them in train, chosen at random with `seed`, but
    never fewer than 1 nor more than n - 1 when n >= 2, so every such user appears in both parts. A user with
    a single interaction keeps it in train (there is nothing to evaluate them on). Deterministic for a given
    input order and seed; the draw follows `stratified_by_item`'s, grouped by user instead of item.
    """
    _check_ratio(ratio)
    _require(interactions, ("user_id", "item_id"))
    position, size = _positions_in_random_order(interactions["user_id"], seed)
    n_train = np.floor(ratio * size + _EPS).astype(np.int64)
    n_train = np.where(size >= 2, np.clip(n_train, 1, size - 1), size)
    return _partition(interactions, position <= n_train)


def stratified_by_item(
    interactions: pd.DataFrame, ratio: float = 0.75, seed: int = 42, min_rating: int = 1
) -> Split:
    """Microsoft Recommenders' `python_stratified_split(ratio, min_rating, filter_by="item", seed)`.

    For each item, the interactions are shuffled with `seed` and those whose 1-based position j among the
    item's n interactions satisfies j / n <= `ratio` go to train, the rest to test: an item with a single
    interaction goes wholly to test, exactly as in their implementation. Items with fewer than `min_rating`
    interactions are dropped first. On the same row order the assignment is identical to theirs.
    """
    _check_ratio(ratio)
    _require(interactions, ("user_id", "item_id"))
    if min_rating < 1:
        raise ConfigurationError(f"min_rating must be >= 1, got {min_rating}")
    if min_rating > 1:
        counts = interactions.groupby("item_id")["item_id"].transform("size")
        interactions = interactions.loc[counts.to_numpy() >= min_rating]
    position, size = _positions_in_random_order(interactions["item_id"], seed)
    return _partition(interactions, position / size <= ratio + _EPS)


def temporal(interactions: pd.DataFrame, quantile: float | None = 0.8, cutoff_ms: int | None = None) -> Split:
    """Global temporal split: rows before a moment go to train, rows at or after it go to test.

    The moment is `cutoff_ms` (epoch milliseconds) when given, otherwise the `quantile` of all timestamps.
    Every train timestamp is strictly earlier than every test timestamp. Users or items that appear only
    after the cutoff are left in test; callers that need warm users filter them.
    """
    _require(interactions, ("timestamp",))
    timestamps = interactions["timestamp"].to_numpy(dtype=np.int64)
    if cutoff_ms is None:
        if quantile is None:
            raise ConfigurationError("temporal split needs a quantile or a cutoff")
        _check_ratio(quantile)
        cutoff_ms = int(np.quantile(timestamps, quantile, method="higher"))
    return _partition(interactions, timestamps < cutoff_ms)


def leave_last_out(interactions: pd.DataFrame, n: int = 1) -> Split:
    """Per-user leave-last-n-out: each user's `n` most recent interactions go to test.

    Ties in timestamp are broken by input order (a later row counts as more recent). A user with n or fewer
    interactions keeps the oldest in train and gives the rest to test, so each user with >= 2 interactions
    appears in both parts; a user with one interaction stays wholly in train.
    """
    if n < 1:
        raise ConfigurationError(f"leave_last_out needs n >= 1, got {n}")
    _require(interactions, ("user_id", "timestamp"))
    frame = pd.DataFrame(
        {"user": interactions["user_id"].to_numpy(), "ts": interactions["timestamp"].to_numpy()}
    )
    frame["row"] = np.arange(len(frame))
    order = frame.sort_values(["user", "ts", "row"], kind="stable")
    from_end = order.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    size = order.groupby("user", sort=False)["row"].transform("size").to_numpy()
    held = np.minimum(n, size - 1)
    in_train = np.empty(len(frame), dtype=bool)
    in_train[order["row"].to_numpy()] = from_end >= held
    return _partition(interactions, in_train)


def temporal_by_user(interactions: pd.DataFrame, ratio: float = 0.8) -> Split:
    """Per-user temporal split: each user's newest share of interactions goes to test.

    A user with n interactions keeps their floor(ratio * n) oldest in train, but never fewer than 1 nor more
    than n - 1 when n >= 2 (as in `stratified_by_user`); a user with one interaction stays in train. Ties in
    timestamp are broken by input order (a later row counts as more recent).
    """
    _check_ratio(ratio)
    _require(interactions, ("user_id", "timestamp"))
    frame = pd.DataFrame({"user": interactions["user_id"].to_numpy(), "ts": interactions["timestamp"].to_numpy()})
    frame["row"] = np.arange(len(frame))
    order = frame.sort_values(["user", "ts", "row"], kind="stable")
    position = order.groupby("user", sort=False).cumcount().to_numpy() + 1
    size = order.groupby("user", sort=False)["row"].transform("size").to_numpy()
    n_train = np.floor(ratio * size + _EPS).astype(np.int64)
    n_train = np.where(size >= 2, np.clip(n_train, 1, size - 1), size)
    in_train = np.empty(len(frame), dtype=bool)
    in_train[order["row"].to_numpy()] = position <= n_train
    return _partition(interactions, in_train)
