"""The ingestion pipeline on the embedded store: mapping, id policies, idempotence, quarantine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recstack.ingestion import IngestOptions, RawBatch, ingest
from recstack.ingestion.pipeline import apply_mapping
from recstack.schema import LOCATION
from recstack.storage import open_store


def batch(**columns: list[object]) -> RawBatch:
    n = len(next(iter(columns.values())))
    return RawBatch(pd.DataFrame({**columns, LOCATION: [f"row {i + 1}" for i in range(n)]}))


def test_mapping_renames_and_defaults_fill_only_missing() -> None:
    raw = pd.DataFrame({"uid": ["1", "2"], "movie": ["10", "20"], "event_type": ["like", ""]})
    out = apply_mapping(raw, {"uid": "user_id", "movie": "item_id"}, {"event_type": "rating", "value": "1"})
    assert out.to_dict("records") == [
        {"user_id": "1", "item_id": "10", "event_type": "like", "value": "1"},
        {"user_id": "2", "item_id": "20", "event_type": "rating", "value": "1"},
    ]


def test_unknown_items_rejected_by_policy(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    ingest(store, [batch(item_id=["i1"], title=["known"])], "items", IngestOptions("items"))
    run = ingest(
        store,
        [batch(user_id=["u1", "u2"], item_id=["i1", "ghost"], timestamp=["1700000000", "1700000001"])],
        "events",
        IngestOptions("interactions", unknown_items="reject"),
    )
    assert (run.accepted, run.rejected) == (1, 1)
    q = store.list_quarantine(run_id=run.run_id)
    assert q[["location", "reason"]].values.tolist() == [["row 2", "item_id 'ghost' is not a known item"]]
    assert store.counts()["users"] == 1


def test_unknown_ids_created_by_default(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    run = ingest(store, [batch(user_id=["u1", "u2", "u1"], item_id=["a", "b", "c"], timestamp=["1700000000"] * 3)],
                 "events", IngestOptions("interactions"))
    assert run.accepted == 3
    counts = store.counts()
    assert (counts["users"], counts["items"]) == (2, 3)


def test_summary_counts_and_progress(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    broken = pd.DataFrame({"location": ["line 9"], "reason": ["expected 3 fields, found 1"], "record": ["x"]})
    batches = [
        batch(
            event_id=["e1", "e2", "e1"], user_id=["u", "u", "u"], item_id=["a", "b", "a"], timestamp=["1700000000"] * 3
        ),
        RawBatch(batch(event_id=["e3"], user_id=["u"], item_id=["c"], timestamp=["never"]).frame, broken),
    ]
    seen: list[int] = []
    run = ingest(store, batches, "events.csv", IngestOptions("interactions"), seen.append)
    assert (run.read, run.accepted, run.duplicates, run.rejected) == (5, 2, 1, 2)
    assert sum(seen) == 5
    runs = store.list_runs()
    assert runs.loc[0, "run_id"] == run.run_id and runs.loc[0, "rejected"] == 2
