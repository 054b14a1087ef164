"""The wire formats: what is published conforms to the shipped JSON Schema, every known version reads back,
and a message that cannot be read says why."""

from __future__ import annotations

import jsonschema
import numpy as np
import orjson
import pandas as pd
import pytest

from recstack.bus.base import Message
from recstack.bus.events import (
    KNOWN_EVENT_VERSIONS,
    dead_letter,
    decode_catalog,
    decode_events,
    encode_catalog,
    encode_events,
    read_dead_letter,
    schema,
)
from recstack.schema import validate_interactions

NOW_MS = 1_750_000_000_000


def _message(value: bytes, offset: int = 0, key: bytes | None = b"u1") -> Message:
    return Message("recstack.events", 0, offset, key, value)


def _accepted(n: int = 3) -> pd.DataFrame:
    raw = pd.DataFrame({
        "user_id": [f"u{i % 2}" for i in range(n)], "item_id": [f"i{i}" for i in range(n)],
        "event_type": ["view", "watch", "rating"][:n], "value": [np.nan, 30.0, 4.0][:n],
        "timestamp": [NOW_MS - 1000 * i for i in range(n)],
    })
    return validate_interactions(raw, now_ms=NOW_MS).accepted.drop(columns=["_location"], errors="ignore")


def test_published_events_conform_to_the_current_schema_and_are_keyed_by_user() -> None:
    accepted = _accepted()
    validator = jsonschema.Draft202012Validator(schema("event.v2"))
    pairs = encode_events(accepted, context={"model_version": 3})
    for (key, value), user in zip(pairs, accepted["user_id"], strict=True):
        validator.validate(orjson.loads(value))
        assert key == user.encode()


def test_encode_decode_round_trip_gives_the_same_validated_rows() -> None:
    accepted = _accepted()
    decoded = decode_events([_message(v, i) for i, (_, v) in enumerate(encode_events(accepted))])
    assert decoded.broken.empty
    again = validate_interactions(decoded.frame, now_ms=NOW_MS).accepted.drop(columns=["_location"])
    pd.testing.assert_frame_equal(again.reset_index(drop=True), accepted.reset_index(drop=True))


def test_version_1_messages_are_still_read() -> None:
    v1 = {"schema_version": 1, "user_id": "u1", "item_id": "i1", "timestamp": "2025-01-02T03:04:05Z"}
    jsonschema.Draft202012Validator(schema("event.v1")).validate(v1)
    decoded = decode_events([_message(orjson.dumps(v1))])
    assert decoded.broken.empty
    checked = validate_interactions(decoded.frame, now_ms=NOW_MS)
    assert checked.n_rejected == 0
    assert checked.accepted["timestamp"].iloc[0] == 1_735_787_045_000
    assert checked.accepted["event_id"].iloc[0]  # derived from the content, as ingestion does
    assert {1, 2} == KNOWN_EVENT_VERSIONS


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"user_id": "u1"}', "schema_version is missing"),
        (b'{"schema_version": 9, "user_id": "u1"}', "schema_version 9 is not one this reader knows"),
        (b'{"schema_version": "2"}', "is not an integer"),
        (b'{"schema_version": 2, "user_id": "u", "item_id": "i", "timestamp": 1}', "event_id is missing"),
        (b'{"schema_version": 2, "event_id": "e", "colour": "red"}', "unknown field(s) ['colour']"),
    ],
)
def test_unreadable_messages_are_broken_with_their_reason(value: bytes, reason: str) -> None:
    decoded = decode_events([_message(b'{"schema_version": 1, "user_id": "a", "item_id": "b", "timestamp": 1}', 0),
                             _message(value, 1)])
    assert len(decoded.frame) == 1
    assert decoded.broken["location"].tolist() == ["recstack.events[0]@1"]
    assert reason in decoded.broken["reason"].iloc[0]
    assert decoded.originals["recstack.events[0]@1"] == value


def test_rule_violations_are_left_to_the_ingestion_rules() -> None:
    body = {"schema_version": 2, "event_id": "e1", "user_id": "u1", "item_id": "i\x00", "event_type": "dance",
            "value": -3, "timestamp": NOW_MS}
    nested = {**body, "item_id": {"x": 1}}
    decoded = decode_events([_message(orjson.dumps(body)), _message(orjson.dumps(nested), 1)])
    assert decoded.broken["reason"].tolist() == ["item_id must be a string or number, got an object"]
    checked = validate_interactions(decoded.frame, now_ms=NOW_MS)
    assert checked.n_rejected == 1
    assert checked.rejected["reason"].iloc[0] == "item_id contains a NUL character"
    body["item_id"] = "i1"
    checked = validate_interactions(decode_events([_message(orjson.dumps(body))]).frame, now_ms=NOW_MS)
    assert "event_type 'dance' is not one of" in checked.rejected["reason"].iloc[0]


def test_dead_letters_keep_reason_location_and_exact_bytes() -> None:
    original = bytes(range(256))
    key, value = dead_letter("recstack.events[2]@17", "not valid JSON", original, b"u9")
    body = read_dead_letter(value)
    assert key == b"u9"
    assert body == {"reason": "not valid JSON", "location": "recstack.events[2]@17", "original": original}


def test_catalogue_changes_round_trip_and_conform() -> None:
    key, value = encode_catalog("user", {"user_id": "u1", "created_at": None}, {"categories": ["jazz"]})
    jsonschema.Draft202012Validator(schema("catalog.v1")).validate(orjson.loads(value))
    assert key == b"u1"
    body = decode_catalog(Message("recstack.catalog", 0, 0, key, value))
    assert isinstance(body, dict) and body["preferences"] == {"categories": ["jazz"]}
    assert "kind 'item' or 'user'" in str(decode_catalog(Message("c", 0, 0, None, b'{"schema_version": 1}')))
