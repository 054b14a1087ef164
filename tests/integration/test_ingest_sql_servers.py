"""`ingest-sql` against the real PostgreSQL and MariaDB as SOURCE databases (the application's database, not
recstack's store): through the library and the CLI, bad rows to the quarantine, a replay storing nothing twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import POSTGRES_URL, unavailable
from recstack.ingestion import IngestOptions, ingest
from recstack.ingestion.sql import display_url, read_sql
from recstack.storage import Store

MARIADB_URL = os.environ.get("RECSTACK_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
MAPPING = {"play_id": "event_id", "handle": "user_id", "sku": "item_id", "action": "event_type",
           "seconds": "value", "played_at": "timestamp"}
# 12 plays; three break a rule, with the reason the quarantine must give
BAD = {4: "value '-5.0' is below 0", 8: "timestamp is missing", 11: "event_type 'teleport' is not one of"}


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"play_id": n, "handle": f"user-{n % 3}", "sku": f"sku-{n % 4}", "action": "watch",
         "seconds": n * 10.0, "played_at": f"2025-02-{n:02d} 10:00:00"}
        for n in range(1, 13)
    ]
    rows[3]["seconds"] = -5.0
    rows[7]["played_at"] = None
    rows[10]["action"] = "teleport"
    return rows


@pytest.fixture(params=["postgresql", "mariadb"])
def source(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(URL, query) of a `plays` table of this test's own in the real server, dropped afterwards."""
    from recstack.ingestion.sql import _source_url

    url = POSTGRES_URL if request.param == "postgresql" else MARIADB_URL
    try:
        engine = sa.create_engine(_source_url(url), poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except ImportError as exc:
        unavailable(f"the {request.param} driver", f"{exc}: pip install -e '.[all]'")
    except sa.exc.OperationalError as exc:
        unavailable(f"{request.param} at {url}", str(exc).splitlines()[0])
    name = f"plays_{uuid.uuid4().hex[:10]}"
    table = f"{name}.plays" if request.param == "postgresql" else name
    with engine.begin() as conn:
        if request.param == "postgresql":
            conn.execute(sa.text(f"CREATE SCHEMA {name}"))
        conn.execute(sa.text(f"CREATE TABLE {table} (play_id INTEGER PRIMARY KEY, handle VARCHAR(40), "
                             "sku VARCHAR(40), action VARCHAR(40), seconds DOUBLE PRECISION, "
                             "played_at TIMESTAMP NULL)"))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (:play_id, :handle, :sku, :action, :seconds, :played_at)"),
                     _rows())
    yield url, f"SELECT play_id, handle, sku, action, seconds, played_at FROM {table} ORDER BY play_id"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {name} CASCADE" if request.param == "postgresql" else f"DROP TABLE {table}"))
    engine.dispose()


def test_library_quarantines_bad_rows_and_a_replay_stores_nothing_twice(source: tuple[str, str], store: Store) -> None:
    url, query = source
    options = IngestOptions(kind="interactions", mapping=MAPPING)
    run = ingest(store, read_sql(url, query, chunk_size=5), display_url(url), options)
    assert (run.read, run.accepted, run.duplicates, run.rejected) == (12, 9, 0, 3)
    stored = next(store.iter_interactions()).set_index("event_id")
    assert sorted(stored.index, key=int) == [str(n) for n in range(1, 13) if n not in BAD]
    assert stored.loc["2", ["user_id", "item_id", "value"]].tolist() == ["user-2", "sku-2", 20.0]
    reasons = dict(zip(*store.list_quarantine(run_id=run.run_id)[["location", "reason"]].T.values, strict=True))
    assert set(reasons) == {f"row {n}" for n in BAD}
    for n, reason in BAD.items():
        assert reasons[f"row {n}"].startswith(reason)

    again = ingest(store, read_sql(url, query, chunk_size=5), display_url(url), options)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 9, 3)
    assert store.counts()["interactions"] == 9


def test_cli_exit_codes_and_replay(source: tuple[str, str], sqlite_url: str, tmp_path: Path) -> None:
    url, query = source
    env = {**os.environ, "RECSTACK_HOME": str(tmp_path), "RECSTACK_DATABASE_URL": sqlite_url, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recstack", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    assert cli("init").returncode == 0
    mapping = [arg for src, dst in MAPPING.items() for arg in ("--map", f"{src}={dst}")]
    first = cli("ingest-sql", url, "--query", query, *mapping)
    assert first.returncode == 4, first.stderr
    assert "3 interactions rejected" in first.stderr
    replay = cli("ingest-sql", url, "--query", query, *mapping, "--tolerate-rejects")
    assert replay.returncode == 0, replay.stderr
    stats = cli("stats", "--json")
    assert '"interactions": 9' in stats.stdout
    good = cli("ingest-sql", url, "--query", query.replace("ORDER BY", "WHERE play_id IN (1, 2) ORDER BY"), *mapping)
    assert good.returncode == 0, good.stderr
