"""The CLI as a user runs it (a real process), against both stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from recstack.storage.lake import Lake

EVENTS = """user_id,item_id,event_type,value,timestamp
u1,v1,watch,31.5,2025-03-01T10:00:00Z
u1,v2,like,1,2025-03-01T10:01:00Z
u2,v1,watch,oops,2025-03-01T10:02:00Z
u2,v3,watch,12,2025-03-02T10:03:00Z
"""


def recstack(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECSTACK_HOME": str(home), "RECSTACK_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "recstack", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_ingest_quarantine_snapshot_stats(store_url: str, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(EVENTS)
    assert recstack(tmp_path, store_url, "init").returncode == 0

    first = recstack(tmp_path, store_url, "ingest", str(events), "--kind", "interactions")
    assert first.returncode == 4, first.stderr
    assert "line 4: value 'oops' is not a number" in first.stdout
    assert "1 interactions rejected" in first.stderr

    replay = recstack(tmp_path, store_url, "ingest", str(events), "--tolerate-rejects")
    assert replay.returncode == 0, replay.stderr

    stats = recstack(tmp_path, store_url, "stats", "--json")
    assert json.loads(stats.stdout) == {"users": 2, "items": 3, "interactions": 3, "quarantined": 2, "preferences": 0}

    export = tmp_path / "rejects.csv"
    assert recstack(tmp_path, store_url, "quarantine", "export", str(export)).returncode == 0
    rejects = pd.read_csv(export)
    assert rejects["location"].tolist() == ["line 4", "line 4"]

    listed = recstack(tmp_path, store_url, "quarantine", "list")
    assert "is not a number" in listed.stdout

    snap = recstack(tmp_path, store_url, "snapshot")
    assert snap.returncode == 0, snap.stderr
    lake = Lake(str(tmp_path / "lake"))
    frame = lake.read_interactions()
    assert len(frame) == 3
    by_day = lake.query("SELECT date, count(*) AS n FROM interactions GROUP BY date ORDER BY date")
    assert by_day.to_dict("records") == [{"date": "2025-03-01", "n": 2}, {"date": "2025-03-02", "n": 1}]


def test_mapping_options_and_bad_arguments(sqlite_url: str, tmp_path: Path) -> None:
    source = tmp_path / "plays.csv"
    source.write_text("account,video,seconds,at\na1,x9,40,1735689600\n")
    ok = recstack(tmp_path, sqlite_url, "ingest", str(source), "--map", "account=user_id", "--map", "video=item_id",
                  "--map", "seconds=value", "--map", "at=timestamp", "--set", "event_type=watch")
    assert ok.returncode == 0, ok.stderr
    bad = recstack(tmp_path, sqlite_url, "ingest", str(source), "--map", "account")
    assert bad.returncode == 2
    assert "not of the form name=value" in bad.stderr
    wrong_url = recstack(tmp_path, "mysql://nowhere/db", "stats")
    assert wrong_url.returncode != 0
    assert "unsupported database URL scheme" in wrong_url.stderr


def test_produce_through_the_in_process_bus_twice_stores_each_event_once(store_url: str, tmp_path: Path) -> None:
    events = tmp_path / "plays.csv"
    events.write_text(EVENTS.replace("user_id,", "account,", 1))
    first = recstack(tmp_path, store_url, "produce", str(events), "--map", "account=user_id")
    assert first.returncode == 4, first.stderr
    assert "line 4: value 'oops' is not a number" in first.stdout
    assert "stored 3 new events" in first.stdout
    again = recstack(tmp_path, store_url, "produce", str(events), "--map", "account=user_id", "--tolerate-rejects")
    assert again.returncode == 0, again.stderr
    assert "stored 0 new events (3 already stored)" in again.stdout
    stats = json.loads(recstack(tmp_path, store_url, "stats", "--json").stdout)
    assert (stats["interactions"], stats["quarantined"]) == (3, 2)
