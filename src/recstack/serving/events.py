"""`POST /v1/events`: feedback through the same validation, id policy and idempotence as ingestion.

Each record ends up accepted (stored now), duplicate (its `event_id` was stored before: posting again is
safe) or rejected (with the reason naming the field, and kept in the quarantine like any ingestion reject).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pandas as pd

from recstack.config import UnknownIdPolicy
from recstack.schema import LOCATION, ValidationRules, validate_interactions
from recstack.serving.data import existing_ids, stored_event_ids
from recstack.serving.schemas import EventIn, EventReport, RecordResult
from recstack.storage import Store

__all__ = ["record_events"]

SOURCE = "POST /v1/events"


def _index(location: str) -> int:
    return int(location.rsplit(" ", 1)[-1])


def record_events(
    store: Store,
    events: list[EventIn],
    rules: ValidationRules,
    unknown_users: UnknownIdPolicy = "create",
    unknown_items: UnknownIdPolicy = "create",
) -> tuple[EventReport, set[str]]:
    """Validate and store `events`; returns the per-record report and the users whose state changed."""
    now_ms = int(time.time() * 1000)
    records: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        record = event.model_dump()
        if record["timestamp"] is None:
            record["timestamp"] = now_ms
        record[LOCATION] = f"record {i}"
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    checked = validate_interactions(frame, rules, now_ms=now_ms)
    results: dict[int, RecordResult] = {}
    for location, reason in checked.rejected[["location", "reason"]].itertuples(index=False):
        results[_index(location)] = RecordResult(index=_index(location), status="rejected", reason=str(reason))
    accepted = checked.accepted
    for column, kind, policy in (("user_id", "users", unknown_users), ("item_id", "items", unknown_items)):
        if accepted.empty:
            break
        ids = accepted[column].unique().tolist()
        if policy == "reject":
            known = existing_ids(store, kind, ids)
            unknown = ~accepted[column].isin(known)
            for location, value in accepted.loc[unknown, [LOCATION, column]].itertuples(index=False):
                what = "user" if kind == "users" else "item"
                results[_index(location)] = RecordResult(
                    index=_index(location), status="rejected", reason=f"{column} '{value}' is not a known {what}"
                )
            accepted = accepted.loc[~unknown]
        else:
            store.ensure_ids(kind, ids)  # type: ignore[arg-type]
    changed: set[str] = set()
    if not accepted.empty:
        already = stored_event_ids(store, accepted["event_id"].tolist())
        repeat = accepted["event_id"].duplicated(keep="first") | accepted["event_id"].isin(already)
        fresh = accepted.loc[~repeat].drop(columns=[LOCATION]).reset_index(drop=True)
        store.write_interactions(fresh)
        for location, event_id, is_repeat in zip(
            accepted[LOCATION], accepted["event_id"], repeat, strict=True
        ):
            results[_index(location)] = RecordResult(
                index=_index(location), status="duplicate" if is_repeat else "accepted", event_id=str(event_id)
            )
        changed = set(accepted["user_id"].astype(str))
    rejected = [r for r in results.values() if r.status == "rejected"]
    if rejected:
        store.quarantine(
            f"api-{uuid.uuid4().hex[:12]}",
            "interactions",
            SOURCE,
            pd.DataFrame(
                {
                    "location": [f"record {r.index}" for r in rejected],
                    "reason": [r.reason for r in rejected],
                    "record": [events[r.index].model_dump_json() for r in rejected],
                }
            ),
        )
    ordered = [results[i] for i in sorted(results)]
    report = EventReport(
        accepted=sum(r.status == "accepted" for r in ordered),
        duplicates=sum(r.status == "duplicate" for r in ordered),
        rejected=len(rejected),
        records=ordered,
    )
    return report, changed
