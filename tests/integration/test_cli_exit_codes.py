"""The exit code of every ingest command, as the README promises: 0 for a clean load, 4 when anything was
rejected (the good records stored, the bad quarantined) unless `--tolerate-rejects`, 2 for a usage or
configuration error (a missing file or database), 3 for an unreachable source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HEADER = "user_id,item_id,event_type,value,timestamp\n"
GOOD = HEADER + "u1,v1,watch,31.5,2025-03-01T10:00:00Z\nu2,v2,like,1,2025-03-01T10:01:00Z\n"
PARTIAL = GOOD + "u3,v3,watch,oops,2025-03-01T10:02:00Z\n"
Cli = Callable[..., subprocess.CompletedProcess[str]]
BAD = HEADER + "u4,v4,teleport,1,2025-03-01T10:00:00Z\nu5,v5,watch,-3,2025-03-01T10:00:00Z\n"


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path) -> Cli:
    env = {**os.environ, "RECSTACK_HOME": str(tmp_path), "RECSTACK_DATABASE_URL": sqlite_url, "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recstack", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    assert run("init").returncode == 0
    return run


def _stats(cli: Cli) -> dict[str, int]:
    return dict(json.loads(cli("stats", "--json").stdout))


def test_file_ingest_exit_codes(cli: Cli, tmp_path: Path) -> None:
    for name, text in {"good": GOOD, "partial": PARTIAL, "bad": BAD}.items():
        (tmp_path / f"{name}.csv").write_text(text)
    good = cli("ingest", str(tmp_path / "good.csv"))
    assert good.returncode == 0, good.stderr
    partial = cli("ingest", str(tmp_path / "partial.csv"))
    assert partial.returncode == 4 and "1 interactions rejected" in partial.stderr
    assert _stats(cli)["interactions"] == 2 and _stats(cli)["quarantined"] == 1
    bad = cli("ingest", str(tmp_path / "bad.csv"))
    assert bad.returncode == 4 and "2 interactions rejected" in bad.stderr
    tolerated = cli("ingest", str(tmp_path / "bad.csv"), "--tolerate-rejects")
    assert tolerated.returncode == 0, tolerated.stderr
    assert _stats(cli)["interactions"] == 2
    missing = cli("ingest", str(tmp_path / "absent.csv"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_sql_and_api_ingest_exit_codes(cli: Cli, tmp_path: Path) -> None:
    missing_db = cli("ingest-sql", f"sqlite:///{tmp_path / 'absent.db'}", "--query", "SELECT 1")
    assert missing_db.returncode == 2 and "no SQLite database" in missing_db.stderr
    down = cli("ingest-api", "http://127.0.0.1:1/videos")
    assert down.returncode == 3 and "Connection refused" in down.stderr
