"""Point-in-time correctness of the ranking features, on hand-built events."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recstack.processing.features import EventLog, ItemAttributes, build_features, feature_names
from recstack.ranking.candidates import SOURCES, Candidates

DAY = 86_400_000
T0 = 1_700_000_000_000


def _events(rows: list[tuple[int, int, int, float, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_idx", "item_idx", "timestamp", "weight", "event_type", "value"])


def _attributes() -> ItemAttributes:
    # Items 0, 1 in category 0, item 2 in category 1; 100 s long; item 2 created on day 1.
    return ItemAttributes(
        np.array([0, 0, 1]), np.array([100.0, 100.0, 100.0]), np.array([np.nan, np.nan, T0 + DAY]), 2
    )


def _candidates(user: int, items: list[int]) -> Candidates:
    n = len(items)
    shape = (n, len(SOURCES))
    return Candidates(np.full(n, user), np.array(items), np.ones(shape, np.float32), np.ones(shape, np.float32),
                      np.full(n, -1))


BASE = [
    (0, 0, T0, 2.0, "watch", 80.0),            # user 0 watches item 0 (80%) on day 0
    (1, 0, T0 + DAY, 2.0, "watch", 50.0),      # user 1 watches item 0 on day 1
    (0, 1, T0 + 2 * DAY, -1.0, "skip", 2.0),   # user 0 skips item 1 on day 2
    (1, 2, T0 + 3 * DAY, 3.0, "like", 1.0),    # user 1 likes item 2 on day 3
]


def _column(matrix: np.ndarray, name: str) -> np.ndarray:
    return matrix[:, feature_names().index(name)]


def test_features_count_only_events_strictly_before_the_reference_time() -> None:
    log = EventLog(_events(BASE), 2, _attributes())
    at = T0 + 2 * DAY  # the skip happens exactly now: it is not yet history
    features = build_features(log, _candidates(0, [0, 2]), at)
    assert _column(features, "u_events").tolist() == [1.0, 1.0]
    assert _column(features, "u_skip_rate").tolist() == [0.0, 0.0]
    assert _column(features, "u_watch_fraction")[0] == np.float32(0.8)
    assert _column(features, "i_pop_all").tolist() == [2.0, 0.0]
    assert _column(features, "i_pop_1d").tolist() == [1.0, 0.0]  # only user 1's watch lies within a day
    assert _column(features, "u_days_since_last")[0] == 2.0
    assert _column(features, "i_age_days").tolist() == [2.0, 1.0]
    assert _column(features, "ui_category_share").tolist() == [1.0, 0.0]
    assert _column(features, "ui_category_is_top").tolist() == [1.0, 0.0]
    assert _column(features, "ctx_weekday")[0] == pd.Timestamp(at, unit="ms", tz="UTC").weekday()


def test_events_after_the_reference_time_change_nothing() -> None:
    at = np.array([T0 + DAY + 1, T0 + 3 * DAY, T0 + 10 * DAY])
    candidates = Candidates(
        np.array([0, 1, 0]), np.array([2, 1, 0]), np.zeros((3, len(SOURCES)), np.float32),
        np.zeros((3, len(SOURCES)), np.float32), np.full(3, -1),
    )
    before = build_features(EventLog(_events(BASE), 2, _attributes()), candidates, at)
    future = [(u, i, T0 + 11 * DAY + k, 4.0, "share", 1.0) for k, (u, i) in enumerate([(0, 2), (1, 1), (0, 0)])]
    after = build_features(EventLog(_events(BASE + future), 2, _attributes()), candidates, at)
    np.testing.assert_array_equal(np.isnan(before), np.isnan(after))
    np.testing.assert_array_equal(np.nan_to_num(before), np.nan_to_num(after))
    later = build_features(EventLog(_events(BASE + future), 2, _attributes()), candidates, T0 + 20 * DAY)
    assert not np.array_equal(np.nan_to_num(before), np.nan_to_num(later))


def test_an_item_not_yet_seen_has_no_age_and_a_user_without_history_no_recency() -> None:
    log = EventLog(_events(BASE), 2, _attributes())
    features = build_features(log, _candidates(1, [2]), T0 + DAY // 2)
    assert np.isnan(_column(features, "i_age_days")[0])
    assert np.isnan(_column(features, "u_days_since_last")[0])
    assert _column(features, "u_events")[0] == 0.0
