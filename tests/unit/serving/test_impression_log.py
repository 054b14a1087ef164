"""The impression log against the embedded store: one row per item shown, in order, with the version that
served it; a bounded buffer that drops and counts; a refused batch that is counted, never raised."""

from __future__ import annotations

import time

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from recstack.serving.impressions import ImpressionLog
from recstack.storage import Store


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    """A unit test: the shared `store` on the embedded default only (the store paths run on both in
    tests/integration/test_impressions.py)."""
    return sqlite_url


def answer(*items: str) -> bytes:
    return orjson.dumps({"user_id": "ignored", "items": [{"item_id": i, "score": 1.0, "reason": "x"} for i in items]})


def test_every_item_shown_is_one_row_with_its_position_version_and_answer(store: Store) -> None:
    log = ImpressionLog(store, batch_size=2, flush_interval_s=30.0)
    before = time.time_ns() // 1_000_000
    log.record("u1", answer("a", "b", "c"), 7)
    log.record("u2", answer("c", "d"), None)
    log.record("u1", answer("b"), 8)
    log.record("u3", b"not json", 7)
    log.record("u3", orjson.dumps({"detail": "no items"}), 7)
    assert log.flush() == 6
    after = time.time_ns() // 1_000_000
    rows = store.read_impressions(0, 2**62)
    assert (log.answers, log.written, log.dropped) == (4, 6, 0)  # the answer without items has no rows
    assert len(rows) == 6 and rows["served_at"].between(before, after).all()
    shown = sorted(
        (r.user_id, r.item_id, r.position, None if pd.isna(r.model_version) else int(r.model_version))
        for r in rows.itertuples()
    )
    assert shown == [("u1", "a", 1, 7), ("u1", "b", 1, 8), ("u1", "b", 2, 7), ("u1", "c", 3, 7),
                     ("u2", "c", 1, None), ("u2", "d", 2, None)]
    per_answer = rows.groupby("request_id")["user_id"].agg(["first", "size"]).sort_values("size")
    assert per_answer["size"].tolist() == [1, 2, 3]  # three answers, three request ids
    assert store.read_impressions(0, 2**62, model_versions=[8])["item_id"].tolist() == ["b"]


def test_the_writer_thread_writes_a_full_batch_at_once_and_the_rest_on_stop(store: Store) -> None:
    log = ImpressionLog(store, batch_size=3, flush_interval_s=30.0)
    log.start()
    for n in range(3):
        log.record(f"u{n}", answer("a", "b"), 1)
    deadline = time.monotonic() + 10
    while log.written < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.written == 6  # woken by the full batch, long before its 30 s interval
    log.record("u9", answer("z"), 2)
    log.stop()
    assert (log.answers, log.written) == (4, 7) and len(store.read_impressions(0, 2**62)) == 7


def test_a_full_buffer_drops_new_answers_and_counts_them(store: Store) -> None:
    log = ImpressionLog(store, batch_size=100, max_buffered=3)
    for n in range(8):
        log.record(f"u{n}", answer("a", "b"), 1)
    assert log.dropped == 5
    assert log.flush() == 6
    assert sorted(set(store.read_impressions(0, 2**62)["user_id"])) == ["u0", "u1", "u2"]
    log.record("u8", answer("a"), 1)  # room again once written
    assert log.flush() == 1 and log.dropped == 5


def test_a_batch_the_store_refuses_is_dropped_and_counted_and_the_log_goes_on(sqlite_url: str, store: Store) -> None:
    log = ImpressionLog(store, batch_size=10)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE served_answers RENAME TO served_answers_away"))
    log.record("u1", answer("a", "b"), 1)
    log.record("u2", answer("c"), 1)
    assert log.flush() == 0
    assert (log.dropped, log.written) == (2, 0)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE served_answers_away RENAME TO served_answers"))
    engine.dispose()
    log.record("u3", answer("d"), 1)
    assert log.flush() == 1 and (log.dropped, log.written) == (2, 1)
