"""The SQL source: an "application" database with its own column names, pulled through a query + mapping."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import unavailable
from recstack.errors import BackendUnavailable, ConfigurationError
from recstack.ingestion import IngestOptions, ingest
from recstack.ingestion.sql import display_url, read_sql
from recstack.schema import LOCATION
from recstack.storage import Store, open_store

PLAYS_QUERY = """
    SELECT p.play_id, a.handle, p.sku, p.action, p.seconds, p.played_at
    FROM plays AS p JOIN accounts AS a ON a.acct_no = p.acct_no
    WHERE p.played_at >= :since OR p.played_at IS NULL
    ORDER BY p.play_id
"""
PLAYS_MAPPING = {
    "play_id": "event_id", "handle": "user_id", "sku": "item_id", "action": "event_type",
    "seconds": "value", "played_at": "timestamp",
}
# play ids whose rows break a rule, with the reason the quarantine must give
BAD_PLAYS = {
    7: "value '-5.0' is below 0",
    13: "timestamp is missing",
    19: "event_type 'teleport' is not one of",
}


@pytest.fixture
def app_db(tmp_path: Path) -> str:
    """An application database that knows nothing of recstack: accounts, a catalogue and plays."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE accounts (acct_no INTEGER PRIMARY KEY, handle TEXT NOT NULL, country TEXT);
            CREATE TABLE catalogue (sku TEXT PRIMARY KEY, label TEXT, section TEXT, runtime_min REAL,
                                    studio TEXT);
            CREATE TABLE plays (play_id INTEGER PRIMARY KEY, acct_no INTEGER, sku TEXT, action TEXT,
                                seconds REAL, played_at TEXT);
            """
        )
        conn.executemany("INSERT INTO accounts VALUES (?, ?, ?)",
                         [(n, f"user-{n}", "NZ" if n % 2 else "FR") for n in range(1, 6)])
        conn.executemany("INSERT INTO catalogue VALUES (?, ?, ?, ?, ?)",
                         [(f"sku-{n}", f"Film {n}", "drama", 90 + n, "Studio A") for n in range(1, 5)]
                         + [("sku-5", "Broken film", "drama", -3, "Studio B")])
        plays = [
            (n, 1 + n % 5, f"sku-{1 + n % 4}", "watch", n * 10.0, f"2025-02-{1 + n % 28:02d} 10:{n:02d}:00")
            for n in range(1, 26)
        ]
        plays[6] = (7, 3, "sku-2", "watch", -5.0, "2025-02-08 10:07:00")
        plays[12] = (13, 4, "sku-2", "watch", 30.0, None)
        plays[18] = (19, 5, "sku-4", "teleport", 1.0, "2025-02-20 10:19:00")
        plays.append((26, 1, "sku-1", "watch", 5.0, "2024-12-31 23:00:00"))  # before :since, not selected
        conn.executemany("INSERT INTO plays VALUES (?, ?, ?, ?, ?, ?)", plays)
    return f"sqlite:///{path}"


@pytest.fixture
def store(sqlite_url: str) -> Store:
    store = open_store(sqlite_url)
    store.migrate()
    return store


def test_rows_stream_in_chunks_with_row_locations(app_db: str) -> None:
    batches = list(read_sql(app_db, PLAYS_QUERY, chunk_size=10, params={"since": "2025-01-01"}))
    assert [len(b.frame) for b in batches] == [10, 10, 5]
    assert batches[1].frame[LOCATION].tolist()[:2] == ["row 11", "row 12"]
    assert list(batches[0].frame.columns) == [*PLAYS_MAPPING, LOCATION]
    assert all(b.broken.empty for b in batches)


def test_interactions_are_mapped_validated_and_bad_rows_quarantined(app_db: str, store: Store) -> None:
    batches = read_sql(app_db, PLAYS_QUERY, chunk_size=10, params={"since": "2025-01-01"})
    options = IngestOptions(kind="interactions", mapping=PLAYS_MAPPING)
    run = ingest(store, batches, display_url(app_db), options)
    assert (run.read, run.accepted, run.duplicates, run.rejected) == (25, 22, 0, 3)

    stored = next(store.iter_interactions())
    assert len(stored) == 22
    first = stored.set_index("event_id").loc["1"]
    assert first[["user_id", "item_id", "event_type", "value"]].tolist() == ["user-2", "sku-2", "watch", 10.0]
    assert first["timestamp"] == datetime(2025, 2, 2, 10, 1, tzinfo=UTC).timestamp() * 1000
    assert store.counts()["users"] == 5

    quarantined = store.list_quarantine(run_id=run.run_id)
    by_location = dict(zip(quarantined["location"], quarantined["reason"], strict=True))
    assert set(by_location) == {f"row {n}" for n in BAD_PLAYS}  # row n is play n: the query orders by play_id
    for play_id, reason in BAD_PLAYS.items():
        assert by_location[f"row {play_id}"].startswith(reason)

    again = ingest(store, read_sql(app_db, PLAYS_QUERY, 10, {"since": "2025-01-01"}), "app", options)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 22, 3)


def test_items_keep_unmapped_columns_as_attributes(app_db: str, store: Store) -> None:
    query = "SELECT sku, label, section, runtime_min * 60 AS duration, studio FROM catalogue"
    options = IngestOptions(kind="items", mapping={"sku": "item_id", "label": "title", "section": "category",
                                                   "duration": "duration_s"})
    run = ingest(store, read_sql(app_db, query, 2), "app", options)
    assert (run.accepted, run.rejected) == (4, 1)
    items = store.read_items().set_index("item_id")
    assert items.loc["sku-1", "duration_s"] == 91 * 60
    assert items.loc["sku-1", "attributes"] == {"studio": "Studio A"}
    rejected = store.list_quarantine(run_id=run.run_id)
    assert rejected[["location", "reason"]].values.tolist() == [["row 5", "duration_s '-180.0' is below 0"]]


def test_a_missing_sqlite_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no SQLite database"):
        list(read_sql(f"sqlite:///{tmp_path / 'absent.db'}", "SELECT 1", 10))
    assert not (tmp_path / "absent.db").exists()


def test_a_query_the_database_refuses_names_the_problem(app_db: str) -> None:
    with pytest.raises(ConfigurationError, match="refused the query: no such table: nope"):
        list(read_sql(app_db, "SELECT * FROM nope", 10))
    with pytest.raises(ConfigurationError, match="more than once"):
        list(read_sql(app_db, "SELECT sku, sku FROM catalogue", 10))
    with pytest.raises(ConfigurationError, match="bind parameter 'since'"):
        list(read_sql(app_db, PLAYS_QUERY, 10))


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://host/db"])
def test_a_wrong_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        list(read_sql(url, "SELECT 1", 10))


def test_an_unreachable_server_is_backend_unavailable_and_the_password_is_hidden() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg", "not installed: pip install -e '.[postgres]'")
    with pytest.raises(BackendUnavailable, match=r"cannot connect to postgresql\+psycopg://app:\*\*\*@127\.0\.0\.1:1/"):
        list(read_sql("postgresql://app:hunter2@127.0.0.1:1/app", "SELECT 1", 10))
