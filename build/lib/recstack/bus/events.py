"""The wire formats on the bus, each a JSON Schema file shipped in `bus/schemas/`.

Interactions are published as version 2 (`event.v2.json`); a reader accepts every version it knows (1 and
2) and turns each into the raw record that ingestion validates, so the bus applies exactly the rules a file
does. Decoding only checks what the ingestion rules cannot see (is it JSON, an object, a known version);
the field rules themselves are `schema.validate_interactions`, run on the whole batch at once.
Catalogue changes (item and user upserts) use `catalog.v1.json`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final

import orjson
import pandas as pd

from recstack.bus.base import Message
from recstack.schema import LOCATION

__all__ = [
    "CATALOG_VERSION", "EVENT_VERSION", "KNOWN_EVENT_VERSIONS", "Decoded", "dead_letter", "decode_catalog",
    "decode_events", "encode_catalog", "encode_events", "location_of", "read_dead_letter", "schema",
]

EVENT_VERSION: Final = 2
KNOWN_EVENT_VERSIONS: Final = frozenset({1, 2})
CATALOG_VERSION: Final = 1
_EVENT_FIELDS: Final = ("event_id", "user_id", "item_id", "event_type", "value", "timestamp")
_CURRENT_KEYS: Final = frozenset({"schema_version", *_EVENT_FIELDS})
_STRING_FIELDS: Final = ("event_id", "user_id", "item_id", "event_type")


@cache
def schema(name: str) -> dict[str, Any]:
    """A shipped JSON Schema by file stem: `event.v1`, `event.v2`, `catalog.v1`."""
    text = (resources.files("recstack.bus") / "schemas" / f"{name}.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def location_of(message: Message) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"


def _key(user_id: Any) -> bytes:
    return str(user_id).encode()


def encode_events(accepted: pd.DataFrame, context: dict[str, Any] | None = None) -> list[tuple[bytes | None, bytes]]:
    """Validated interactions (INTERACTION_COLUMNS) → `(user_id, event.v2 JSON)` pairs, keyed by user."""
    out: list[tuple[bytes | None, bytes]] = []
    rows = zip(*(accepted[c].tolist() for c in _EVENT_FIELDS), strict=True)
    for event_id, user_id, item_id, event_type, value, ts in rows:
        body: dict[str, Any] = {
            "schema_version": EVENT_VERSION, "event_id": event_id, "user_id": user_id, "item_id": item_id,
            "event_type": event_type, "value": None if value is None or math.isnan(value) else value,
            "timestamp": int(ts),
        }
        if context:
            body["context"] = context
        out.append((_key(user_id), orjson.dumps(body)))
    return out


@dataclass
class Decoded:
    """Raw records ready for validation (`frame`, with `_location`) and the messages that are not
    (`broken`: location, reason, record — the original bytes as text; `originals` their exact bytes)."""

    frame: pd.DataFrame
    broken: pd.DataFrame
    originals: dict[str, bytes] = field(default_factory=dict)


def _broken(rows: list[tuple[str, str, bytes]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "location": [r[0] for r in rows],
            "reason": [r[1] for r in rows],
            "record": [r[2].decode("utf-8", "replace").replace("\x00", "\\x00")[:10_000] for r in rows],
        }
    )


def _upgrade(body: dict[str, Any]) -> dict[str, Any] | str:
    """A known version's body → the raw record fields, or the reason it cannot be read."""
    version = body.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        return "schema_version is missing" if version is None else f"schema_version '{version}' is not an integer"
    if version not in KNOWN_EVENT_VERSIONS:
        return f"schema_version {version} is not one this reader knows ({sorted(KNOWN_EVENT_VERSIONS)})"
    if version == 2:
        extra = set(body) - {"schema_version", "context", *_EVENT_FIELDS}
        if extra:
            return f"unknown field(s) {sorted(extra)} in a version 2 event"
        if not isinstance(body.get("event_id"), str):
            return "event_id is missing (required from version 2)"
    return {f: body.get(f) for f in _EVENT_FIELDS}


def decode_events(messages: Sequence[Message]) -> Decoded:
    """Bytes → raw interaction records; a message that is not a JSON object of a known version is broken.

    `originals` holds the bytes of the broken messages (the caller has the rest in `messages`)."""
    columns: dict[str, list[Any]] = {name: [] for name in (*_EVENT_FIELDS, LOCATION)}
    event_ids, user_ids, item_ids = columns["event_id"], columns["user_id"], columns["item_id"]
    event_types, values, times, locations = (
        columns["event_type"], columns["value"], columns["timestamp"], columns[LOCATION]
    )
    broken: list[tuple[str, str, bytes]] = []
    originals: dict[str, bytes] = {}
    loads, current = orjson.loads, _CURRENT_KEYS
    for message in messages:
        location = f"{message.topic}[{message.partition}]@{message.offset}"
        try:
            body = loads(message.value)
        except orjson.JSONDecodeError as exc:
            broken.append((location, f"not valid JSON: {exc}", message.value))
            originals[location] = message.value
            continue
        # What recstack writes takes the short way; anything else is checked field by field.
        if type(body) is dict and body.keys() == current and body["schema_version"] == EVENT_VERSION:
            e, u, i, t = body["event_id"], body["user_id"], body["item_id"], body["event_type"]
            if type(e) is str and type(u) is str and type(i) is str and type(t) is str:
                event_ids.append(e)
                user_ids.append(u)
                item_ids.append(i)
                event_types.append(t)
                values.append(body["value"])
                times.append(body["timestamp"])
                locations.append(location)
                continue
        reason, upgraded = _slow_path(body)
        if upgraded is None:
            broken.append((location, reason, message.value))
            originals[location] = message.value
            continue
        for name in _EVENT_FIELDS:
            columns[name].append(upgraded[name])
        locations.append(location)
    return Decoded(pd.DataFrame(columns), _broken(broken), originals)


def _slow_path(body: Any) -> tuple[str, dict[str, Any] | None]:
    """Any readable body → its raw record fields (ids as text), or the reason it is broken."""
    if not isinstance(body, dict):
        return f"a message must be a JSON object, got {type(body).__name__}", None
    upgraded = _upgrade(body)
    if isinstance(upgraded, str):
        return upgraded, None
    wrong = next((n for n in _EVENT_FIELDS if isinstance(upgraded[n], dict | list)), None)
    if wrong is not None:
        kind = type(upgraded[wrong]).__name__.replace("dict", "an object").replace("list", "an array")
        return f"{wrong} must be a string or number, got {kind}", None
    for name in _STRING_FIELDS:
        v = upgraded[name]
        if v is not None and not isinstance(v, str):
            upgraded[name] = str(v)
    return "", upgraded


def encode_catalog(kind: str, record: dict[str, Any], preferences: dict[str, Any] | None = None) -> tuple[bytes, bytes]:
    """An item or user upsert as `catalog.v1`, keyed by its id."""
    key = record["item_id"] if kind == "item" else record["user_id"]
    body: dict[str, Any] = {"schema_version": CATALOG_VERSION, "kind": kind, "record": record}
    if preferences is not None:
        body["preferences"] = preferences
    try:
        return _key(key), orjson.dumps(body, default=str)
    except TypeError:  # an integer beyond 64 bits in free-form attributes: the standard encoder has no limit
        return _key(key), json.dumps(body, default=str).encode()


def decode_catalog(message: Message) -> dict[str, Any] | str:
    """A catalogue message's body, or the reason it cannot be read."""
    try:
        body = orjson.loads(message.value)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(body, dict):
        return "a catalogue message must be a JSON object"
    if body.get("schema_version") != CATALOG_VERSION:
        return f"schema_version {body.get('schema_version')!r} is not one this reader knows ([1])"
    if body.get("kind") not in ("item", "user") or not isinstance(body.get("record"), dict):
        return "a catalogue message needs kind 'item' or 'user' and a record object"
    prefs = body.get("preferences")
    if prefs is not None and not isinstance(prefs, dict):
        return "preferences must be a JSON object"
    return body


def dead_letter(location: str, reason: str, original: bytes, key: bytes | None = None) -> tuple[bytes | None, bytes]:
    """The DLQ message for one failed record: its reason, where it was read, and its original bytes."""
    body = {
        "reason": reason,
        "location": location,
        "original_b64": base64.b64encode(original).decode("ascii"),
    }
    return key, orjson.dumps(body)


def read_dead_letter(value: bytes) -> dict[str, Any]:
    """A DLQ message's fields, with `original` decoded back to the exact bytes."""
    body: dict[str, Any] = orjson.loads(value)
    body["original"] = base64.b64decode(body.pop("original_b64"))
    return body

