"""Files into both stores: replay stores nothing twice; bad input is quarantined, good input kept."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recstack.ingestion import IngestOptions, ingest
from recstack.ingestion.files import read_file
from recstack.storage import Store

BAD_FILE = """event_id,user_id,item_id,event_type,value,timestamp
e1,u1,v1,watch,31.5,2025-03-01T10:00:00Z
e2,u1,v2,like,1,2025-03-01T10:01:00Z
e3,u2,v1,watch,not-a-number,2025-03-01T10:02:00Z
e4,u2,v3,watch,-20,2025-03-01T10:03:00Z
e5,u3,v2,teleport,1,2025-03-01T10:04:00Z
e6,,v2,like,1,2025-03-01T10:05:00Z
e7,u3,v4,share,1,31/02/2025
e8,u3,v4
e2,u1,v2,like,1,2025-03-01T10:01:00Z
e9,u4,v1,rating,12,2025-03-01T10:06:00Z
e10,u4,v5,skip,2,1740823620
"""


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(BAD_FILE)
    return path


def test_bad_input_keeps_good_rows_and_quarantines_the_rest(store: Store, bad_file: Path) -> None:
    run = ingest(store, read_file(bad_file, chunk_size=4), str(bad_file), IngestOptions("interactions"))
    assert (run.read, run.accepted, run.duplicates, run.rejected) == (11, 3, 1, 7)
    stored = pd.concat(store.iter_interactions()).set_index("event_id")
    assert sorted(stored.index) == ["e1", "e10", "e2"]
    q = store.list_quarantine(run_id=run.run_id)
    reasons = dict(zip(q["location"], q["reason"], strict=True))
    assert reasons == {
        "line 4": "value 'not-a-number' is not a number",
        "line 5": "value '-20' is below 0",
        "line 6": "event_type 'teleport' is not one of click, like, purchase, rating, share, skip, view, watch",
        "line 7": "user_id is missing",
        "line 8": "timestamp '31/02/2025' is not a valid time",
        "line 9": "expected 6 fields, found 3",
        "line 11": "value '12' is outside the rating range 0..10",
    }
    record = json.loads(q.set_index("location").loc["line 4", "record"])
    assert record["event_id"] == "e3"
    assert stored.loc["e10", "timestamp"] == 1_740_823_620_000


def test_replaying_a_file_changes_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "clean.csv"
    rows = pd.DataFrame(
        {"user_id": [f"u{i % 13}" for i in range(500)], "item_id": [f"v{i % 37}" for i in range(500)],
         "event_type": "watch", "value": [i % 90 for i in range(500)],
         "timestamp": [1_735_689_600 + 60 * i for i in range(500)]}
    )
    rows.to_csv(path, index=False)
    first = ingest(store, read_file(path, chunk_size=128), str(path), IngestOptions("interactions"))
    counts = store.counts()
    second = ingest(store, read_file(path, chunk_size=77), str(path), IngestOptions("interactions"))
    assert (first.accepted, first.duplicates) == (500, 0)
    assert (second.accepted, second.duplicates, second.rejected) == (0, 500, 0)
    assert store.counts() == counts
    assert (counts["interactions"], counts["users"], counts["items"]) == (500, 13, 37)


def test_items_and_users_files(store: Store, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(
        "\n".join(
            [
                json.dumps({"item_id": "v1", "title": "Cat piano", "category": "pets", "tags": ["cats", "music"],
                            "duration_s": 31, "created_at": "2025-01-01T00:00:00Z", "creator": "kim"}),
                json.dumps({"item_id": "v2", "title": "Long", "duration_s": 10**9}),
                "{broken",
            ]
        )
    )
    run = ingest(store, read_file(items), str(items), IngestOptions("items"))
    assert (run.accepted, run.rejected) == (1, 2)
    item = store.read_items().set_index("item_id").loc["v1"]
    assert item["tags"] == ["cats", "music"] and item["attributes"] == {"creator": "kim"}
    assert item["created_at"] == 1_735_689_600_000
    users = tmp_path / "users.parquet"
    pd.DataFrame({"uid": ["a", "b"], "country": ["NZ", "FR"]}).to_parquet(users)
    run = ingest(store, read_file(users), str(users), IngestOptions("users", mapping={"uid": "user_id"}))
    assert run.accepted == 2
    assert store.read_users().set_index("user_id").loc["b", "attributes"] == {"country": "FR"}
