"""The change feed: per-user history versions from the SQLite store's row order, seen by every process."""

from __future__ import annotations

import itertools

import pandas as pd

from recstack.serving.data import ChangeFeed, HistoryReader, row_watermark
from recstack.storage import Store, open_store

_ids = itertools.count()


def stored(store: Store, *events: tuple[str, str, int]) -> None:
    store.write_interactions(pd.DataFrame([
        {"event_id": f"e{next(_ids)}", "user_id": user, "item_id": item, "event_type": "view", "value": None,
         "timestamp": ts}
        for user, item, ts in events
    ]))


def test_a_version_moves_exactly_when_the_user_s_history_does(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    stored(store, ("u1", "i1", 10), ("u2", "i1", 10))
    feed = ChangeFeed.open(store)
    assert feed is not None
    start = feed.sync()
    assert (feed.version("u1"), feed.version("u2")) == (0, 0)
    # Written by "another worker": a second store object over the same file.
    other = open_store(sqlite_url)
    stored(other, ("u1", "i2", 5))  # older in event time, still a change of u1's history
    assert feed.sync() == start + 1
    first = feed.version("u1")
    assert first > 0 and feed.version("u2") == 0
    stored(other, ("u1", "i3", 20), ("u3", "i1", 20))
    feed.sync()
    assert feed.version("u1") > first and feed.version("u3") > 0 and feed.version("u2") == 0
    other.close()
    feed.close()
    store.close()


def test_cover_accounts_for_rows_since_an_older_watermark(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    stored(store, ("u1", "i1", 1))
    planned_at = row_watermark(HistoryReader(store).engine)
    assert planned_at is not None
    stored(store, ("u2", "i1", 2))  # after the plans were made, before this worker started
    feed = ChangeFeed.open(store)
    assert feed is not None and feed.version("u2") == 0
    assert feed.cover(planned_at)
    assert feed.version("u2") > planned_at and feed.version("u1") == 0
    assert not feed.cover(planned_at + 100)  # plans of a store with more rows than this one: never vouched for
    feed.close()
    store.close()
