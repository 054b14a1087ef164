"""The `OnlineState` contract: a backend's suite subclasses `OnlineStateContract` and provides an `online`
fixture (a fresh, empty state) and a `feed` fixture — the function that makes events visible to it. For
`memory://` and Redis `feed` is `online.apply`; for `sql` it writes the events to the store, which is what
the stream processor does before it applies them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from recstack.processing.online import HOUR_MS, OnlineState

Feed = Callable[[pd.DataFrame], None]
BASE_MS = 1_700_000_000_000


def events(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """`(event_id, user_id, item_id, event_type, value, timestamp_ms)` rows as a validated frame."""
    frame = pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type", "value", "timestamp"])
    frame["value"] = frame["value"].astype("float64")
    frame["timestamp"] = frame["timestamp"].astype("int64")
    return frame


class OnlineStateContract:
    def test_history_is_newest_first_and_keeps_values(self, online: OnlineState, feed: Feed) -> None:
        feed(events([
            ("e1", "u1", "i1", "view", np.nan, BASE_MS),
            ("e2", "u1", "i2", "watch", 120.0, BASE_MS + 1000),
            ("e3", "u2", "i1", "like", np.nan, BASE_MS + 2000),
        ]))
        history = online.history("u1")
        assert history.item_ids == ["i2", "i1"]
        assert history.event_types == ["watch", "view"]
        assert history.values == [120.0, None]
        assert online.history("nobody").item_ids == []

    def test_replaying_events_changes_nothing(self, online: OnlineState, feed: Feed) -> None:
        batch = events([(f"e{i}", "u1", f"i{i % 3}", "view", np.nan, BASE_MS + i) for i in range(6)])
        feed(batch)
        before, trending = online.history("u1"), online.trending(HOUR_MS * 24)
        feed(batch)
        feed(batch.iloc[2:4])
        assert online.history("u1") == before
        assert online.trending(HOUR_MS * 24) == trending == {"i0": 2, "i1": 2, "i2": 2}

    def test_trending_counts_non_skips_in_the_window_before_the_newest_event(
        self, online: OnlineState, feed: Feed
    ) -> None:
        day = 24 * HOUR_MS
        feed(events([
            ("old", "u1", "i9", "view", np.nan, BASE_MS),
            ("a", "u1", "i1", "view", np.nan, BASE_MS + 10 * day),
            ("b", "u2", "i1", "like", np.nan, BASE_MS + 10 * day + 1),
            ("c", "u3", "i2", "skip", np.nan, BASE_MS + 10 * day + 2),
            ("d", "u3", "i3", "purchase", 1.0, BASE_MS + 11 * day),
        ]))
        assert online.trending(3 * day) == {"i1": 2, "i3": 1}
        assert online.trending(20 * day) == {"i1": 2, "i3": 1, "i9": 1}

    def test_history_is_bounded(self, online: OnlineState, feed: Feed) -> None:
        limit = int(getattr(online, "limit", getattr(getattr(online, "reader", None), "limit", 500)))
        n = limit + 7
        feed(events([(f"e{i}", "heavy", f"i{i}", "view", np.nan, BASE_MS + i) for i in range(n)]))
        history = online.history("heavy")
        assert len(history.item_ids) == limit
        assert history.item_ids[0] == f"i{n - 1}"

    def test_ping(self, online: OnlineState) -> None:
        assert online.ping() is True
