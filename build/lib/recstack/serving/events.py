"""`POST /v1/events`: feedback through the ingestion pipeline, then onto the bus.

The records are checked by `ingestion/pipeline.py` exactly as a file's would be (rules, id policy,
repeats), rejects go to the quarantine, and the good ones are handed back for publishing: the stream
processor is the one writer of events. Each record ends up accepted (new), duplicate (its `event_id` is
stored already or came earlier in the batch: posting again is safe) or rejected (with the reason).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd

from recstack.config import UnknownIdPolicy
from recstack.ingestion.pipeline import IngestOptions, RawBatch, check_batch, id_policies, outcomes
from recstack.schema import INTERACTION_COLUMNS, LOCATION, ValidationRules
from recstack.serving.schemas import EventIn, EventReport, RecordResult
from recstack.storage import Store

__all__ = ["Intake", "take_events"]

SOURCE = "POST /v1/events"


@dataclass(frozen=True)
class Intake:
    """The per-record report and the new events to publish (INTERACTION_COLUMNS)."""

    report: EventReport
    fresh: pd.DataFrame


def _index(location: str) -> int:
    return int(location.rsplit(" ", 1)[-1])


def take_events(
    store: Store,
    events: list[EventIn],
    rules: ValidationRules,
    unknown_users: UnknownIdPolicy = "create",
    unknown_items: UnknownIdPolicy = "create",
) -> Intake:
    """Check `events` (read-only but for the quarantine); see the module docstring."""
    now_ms = int(time.time() * 1000)
    records: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        record = event.model_dump()
        if record["timestamp"] is None:
            record["timestamp"] = now_ms
        record[LOCATION] = f"record {i}"
        records.append(record)
    options = IngestOptions(kind="interactions", unknown_users=unknown_users, unknown_items=unknown_items, rules=rules)
    checked = check_batch(RawBatch(pd.DataFrame.from_records(records)), options, id_policies(store, options, False))
    accepted = checked.accepted
    stored = store.existing_ids("interactions", accepted["event_id"].tolist()) if not accepted.empty else set()
    verdicts = outcomes(checked, "interactions", stored)
    refused = checked.refused
    if not refused.empty:
        store.quarantine(f"api-{uuid.uuid4().hex[:12]}", "interactions", SOURCE, refused)
    results = [
        RecordResult(index=_index(v.location), status=v.status, reason=v.reason, event_id=v.record_id)
        for v in verdicts.values()
    ]
    results.sort(key=lambda r: r.index)
    fresh = accepted.loc[~accepted["event_id"].isin(stored), list(INTERACTION_COLUMNS)] if not accepted.empty else (
        pd.DataFrame(columns=list(INTERACTION_COLUMNS)))
    report = EventReport(
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        records=results,
    )
    return Intake(report, fresh.reset_index(drop=True))
