"""Catalogue changes (item and user upserts): validated like ingested records and applied in one place.

The API validates a change before it answers (a client hears about a bad record at once), publishes it to
the catalogue topic, and the stream processor applies it with `apply_change`; without a separate stream
process, the API's in-process worker calls the same function. Either way the store is written once, by
the same rules, and the online state's catalogue epoch moves so every API worker re-reads the catalogue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from recstack.errors import InvalidRecord
from recstack.processing.online import OnlineState
from recstack.schema import LOCATION, ValidationRules, validate_items, validate_users
from recstack.storage import Store

__all__ = ["Change", "apply_change", "check_change"]

ChangeKind = Literal["item", "user"]


@dataclass(frozen=True)
class Change:
    """One applied change: which record, whether it was new, and the validated row."""

    kind: ChangeKind
    record_id: str
    created: bool
    row: dict[str, Any]


def check_change(kind: ChangeKind, record: dict[str, Any], rules: ValidationRules) -> pd.DataFrame:
    """The validated one-row frame of an item or user record; raises `InvalidRecord` with the reason."""
    raw = dict(record)
    attributes = raw.get("attributes")
    if attributes is not None and not isinstance(attributes, str):
        raw["attributes"] = json.dumps(attributes)
    if kind == "item" and isinstance(raw.get("available"), bool):
        raw["available"] = "true" if raw["available"] else "false"
    raw[LOCATION] = "body"
    checked = (validate_items if kind == "item" else validate_users)(pd.DataFrame([raw]), rules)
    if checked.n_rejected:
        raise InvalidRecord(str(checked.rejected["reason"].iloc[0]))
    return checked.accepted.drop(columns=[LOCATION])


def apply_change(
    store: Store,
    online: OnlineState | None,
    kind: ChangeKind,
    record: dict[str, Any],
    rules: ValidationRules,
    preferences: dict[str, Any] | None = None,
) -> Change:
    """Validate and write one item or user upsert (and a user's preference document)."""
    row = check_change(kind, record, rules)
    written = store.upsert_items(row) if kind == "item" else store.upsert_users(row)
    record_id = str(row["item_id" if kind == "item" else "user_id"].iloc[0])
    if kind == "user" and preferences is not None:
        store.put_preferences(record_id, preferences)
    if kind == "item" and online is not None:
        online.catalog_changed([record_id])
    return Change(kind, record_id, bool(written.inserted), row.iloc[0].to_dict())
