"""Impressions on every store backend: written in batches, joined with positive feedback per model version."""

from __future__ import annotations

import time

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from recstack.serving.impressions import ImpressionLog
from recstack.storage import Store
from recstack.storage.impressions import IMPRESSION_COLUMNS, PositiveRule
from recstack.storage.sql import SqlStore

T = 1_750_000_000_000
HOUR = 3_600_000


def events(rows: list[tuple[str, str, str, float | None, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"e{n}", u, i, kind, value, at) for n, (u, i, kind, value, at) in enumerate(rows)],
        columns=["event_id", "user_id", "item_id", "event_type", "value", "timestamp"],
    )


def shown(rows: list[tuple[int, str, str, int | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(at, u, i, n + 1, version, f"r{n}") for n, (at, u, i, version) in enumerate(rows)],
        columns=list(IMPRESSION_COLUMNS),
    )


def test_feedback_rate_per_version_counts_positives_inside_the_window(store: Store) -> None:
    store.write_interactions(events([
        ("u1", "a", "like", 1.0, T + 10_000),        # positive, 10 s after
        ("u1", "b", "watch", 5.0, T + 10_000),       # a bounce: not positive
        ("u2", "a", "rating", 4.5, T + 2 * HOUR),    # positive, but after the one-hour window
        ("u2", "c", "watch", 30.0, T + 100_000),     # a real watch: positive
        ("u3", "d", "click", None, T - 1_000),       # before the impression: not feedback on it
        ("u3", "e", "rating", 3.0, T + 1_000),       # a low rating: not positive
    ]))
    written = store.write_impressions(shown([
        (T, "u1", "a", 1), (T, "u1", "b", 1), (T, "u2", "a", 1),
        (T, "u2", "c", 2), (T, "u3", "d", 2), (T, "u3", "e", 2),
        (T, "u1", "a", None),
        (T + 5 * HOUR, "u1", "a", 1),                # outside the range asked for
    ]))
    assert written == 8
    rates = store.feedback_rates(T, T + HOUR, HOUR)
    by_version = {(None if pd.isna(v) else int(v)): (n, p) for v, n, p, _ in rates.itertuples(index=False)}
    assert by_version == {1: (3, 1), 2: (3, 1), None: (1, 1)}
    assert rates.loc[rates["model_version"] == 1, "rate"].iloc[0] == 1 / 3

    only_two = store.feedback_rates(T, T + HOUR, HOUR, model_versions=[2])
    assert only_two["model_version"].tolist() == [2]
    strict = store.feedback_rates(T, T + HOUR, HOUR, PositiveRule(event_types=(), watch_min_s=60.0), [1, 2])
    assert strict["positives"].tolist() == [0, 0]
    assert store.feedback_rates(T + 9 * HOUR, T + 10 * HOUR, HOUR).empty


def test_impression_rows_go_in_one_transaction_and_read_back_in_order(store: Store) -> None:
    assert store.write_impression_rows([
        (T + 1, "u2", "a", 1, None, "r2"), (T, "u1", "b", 2, 3, "r1"), (T, "u1", "a", 1, 3, "r1"),
    ]) == 3
    with pytest.raises(sa.exc.IntegrityError):  # the second row breaks a constraint: the first is not kept
        store.write_impression_rows([(T + 2, "u3", "c", 1, 3, "r3"), (T + 2, None, "d", 2, 3, "r3")])  # type: ignore[list-item]
    back = store.read_impressions(T, T + 10)
    assert list(back.columns) == list(IMPRESSION_COLUMNS) and str(back["model_version"].dtype) == "Int64"
    assert [tuple(None if pd.isna(v) else v for v in row) for row in back.itertuples(index=False, name=None)] == [
        (T, "u1", "a", 1, 3, "r1"), (T, "u1", "b", 2, 3, "r1"), (T + 1, "u2", "a", 1, None, "r2"),
    ]
    assert store.read_impressions(T, T + 1)["user_id"].tolist() == ["u1", "u1"]
    assert store.read_impressions(T, T + 10, model_versions=[3])["request_id"].tolist() == ["r1", "r1"]
    assert store.read_impressions(T + 10, T + 20).empty


def test_answers_are_stored_one_row_each_and_read_back_one_row_per_item_in_order(store: Store) -> None:
    def body(*items: str) -> bytes:
        return orjson.dumps({"user_id": "x", "items": [{"item_id": i, "score": 0.5, "reason": "é"} for i in items]})

    written = store.write_answer_impressions([
        (T, "u1", 3, "r1", body("a", "b", "c")),
        (T + 1, 'u"2é', None, "r\\2", body("c")),
        (T + 2, "u3", 3, "r3", orjson.dumps({"items": []})),
        (T + 3, "u4", 3, "r4", orjson.dumps({"detail": "no items key"})),
    ])
    assert written == 4
    expected = [
        (T, "u1", "a", 1, 3, "r1"), (T, "u1", "b", 2, 3, "r1"), (T, "u1", "c", 3, 3, "r1"),
        (T + 1, 'u"2é', "c", 1, None, "r\\2"),
    ]
    back = store.read_impressions(T, T + 10).astype(object)
    assert [tuple(None if pd.isna(v) else v for v in row) for row in back.itertuples(index=False)] == expected
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.execute(sa.text("SELECT count(*) FROM served_answers")).scalar() == 4  # one row per answer
    with pytest.raises(sa.exc.DBAPIError):  # not JSON: the whole batch fails, the log falls back to reading it
        store.write_answer_impressions([(T + 5, "u5", 1, "r5", body("z")), (T + 5, "u6", 1, "r6", b"not json")])
    assert len(store.read_impressions(T, T + 10)) == 4
    # JSON, but an item without an id: stored as served (no item taken apart on writing), never read as one.
    store.write_answer_impressions([(T + 6, "u7", 1, "r7", orjson.dumps({"items": [{"score": 1.0}]}))])
    assert len(store.read_impressions(T, T + 10)) == 4


def test_impression_log_writes_in_batches_off_the_request_path_and_flushes_on_stop(store: Store) -> None:
    log = ImpressionLog(store, batch_size=3, flush_interval_s=30.0, max_buffered=5)
    log.start()
    body = orjson.dumps({"user_id": "u1", "items": [{"item_id": "a"}, {"item_id": "b"}]})
    for _ in range(3):
        log.record("u1", body, 4)
    deadline = time.monotonic() + 10
    while log.written < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.written == 6  # a full batch woke the writer long before its 30 s interval
    log.record("u2", orjson.dumps({"items": [{"item_id": "c"}]}), None)
    log.record("u2", b"not json", None)
    log.stop()
    assert log.written == 7
    rates = store.feedback_rates(0, 2**62, 1000)
    assert sorted(zip(rates["model_version"].astype(object).where(rates["model_version"].notna(), None),
                      rates["impressions"], strict=True), key=str) == [(4, 6), (None, 1)]


def test_impression_log_buffer_is_bounded(store: Store) -> None:
    log = ImpressionLog(store, batch_size=100, max_buffered=2)
    body = orjson.dumps({"items": [{"item_id": "a"}]})
    for _ in range(5):
        log.record("u1", body, 1)
    assert log.dropped == 3
    assert log.flush() == 2


def test_the_migration_moves_per_item_rows_into_one_row_per_answer(store_url: str) -> None:
    store = SqlStore(store_url)
    store.migrate("0003")
    old = [  # as the per-item table held them, not in position order
        (T, "u1", "b", 2, 3, "r1"), (T, "u1", "a", 1, 3, "r1"), (T, "u1", "c", 3, 3, "r1"),
        (T + 1, 'u"2é', "a", 1, None, "r2"), (T + 2, "u3", "d", 4, 3, "r3"),
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO impressions (served_at, user_id, item_id, position, model_version, request_id) "
            "VALUES (:s, :u, :i, :p, :v, :r)"
        ), [dict(zip("suipvr", row, strict=True)) for row in old])
    store.migrate()
    try:
        assert store.revision() == "0004"
        with store.engine.connect() as conn:
            assert not sa.inspect(conn).has_table("impressions")
            answers = conn.execute(sa.text("SELECT request_id, body FROM served_answers ORDER BY id")).all()
        assert [request for request, _ in answers] == ["r1", "r2", "r3"]
        first = answers[0][1] if isinstance(answers[0][1], dict) else orjson.loads(answers[0][1])
        assert [item["item_id"] for item in first["items"]] == ["a", "b", "c"]
        back = store.read_impressions(T, T + 10)
        assert [tuple(None if pd.isna(v) else v for v in row) for row in back.itertuples(index=False, name=None)] == [
            (T, "u1", "a", 1, 3, "r1"), (T, "u1", "b", 2, 3, "r1"), (T, "u1", "c", 3, 3, "r1"),
            (T + 1, 'u"2é', "a", 1, None, "r2"), (T + 2, "u3", "d", 4, 3, "r3"),
        ]
        assert sorted(store.feedback_rates(T, T + 10, HOUR)["impressions"].tolist()) == [1, 4]
    finally:
        store.close()
