"""Which events say something about taste, and how they move a query."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recstack.serving.data import Catalog, History
from recstack.serving.feedback import FeedbackConfig, adjust_query, signals


def catalog(ids: list[str], durations: list[float]) -> Catalog:
    n = len(ids)
    return Catalog(
        ids=np.array(ids, dtype=object), category=np.array([None] * n, dtype=object),
        category_code=np.full(n, -1, dtype=np.int32), codes={}, available=np.ones(n, dtype=bool),
        duration_s=np.array(durations), trending=np.zeros(n, dtype=np.float32), trending_order=np.arange(n),
        position=pd.Index(ids, dtype=object),
    )


def test_signals_read_likes_skips_long_and_short_watches_newest_first() -> None:
    cat = catalog(["a", "b", "c", "d", "e"], [100.0, 100.0, 100.0, np.nan, 100.0])
    history = History(
        item_ids=["a", "b", "c", "d", "e", "a"],
        event_types=["like", "view", "watch", "watch", "skip", "rating"],
        values=[None, None, 80.0, 5.0, None, 1.0],
    )
    cfg = FeedbackConfig(decay=0.5)
    found = [(s.item_id, s.weight) for s in signals(history, cat, cfg)]
    assert found == [("a", 1.0), ("c", 0.5), ("d", -0.25), ("e", -0.125), ("a", -0.0625)]


def test_a_like_moves_the_query_toward_the_item_and_a_skip_away() -> None:
    units = np.eye(3, dtype=np.float32)
    query = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    cfg = FeedbackConfig(strength=0.5)
    liked = adjust_query(query, units, [1], [1.0], cfg)
    skipped = adjust_query(query, units, [1], [-1.0], cfg)
    assert liked is not None and skipped is not None
    assert liked @ units[1] > query @ units[1] > skipped @ units[1]
    assert adjust_query(None, units, [2], [1.0], cfg) is not None
    assert adjust_query(None, units, [2], [-1.0], cfg) is None
