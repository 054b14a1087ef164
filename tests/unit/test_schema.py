"""Validation rules: each reason names the field and the value; good records come out typed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recstack.schema import (
    LOCATION,
    ValidationRules,
    drop_repeats,
    parse_timestamps,
    validate_interactions,
    validate_items,
    validate_users,
)

NOW = 1_790_000_000_000  # 2026-09-21


def frame(**columns: list[object]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({**columns, LOCATION: [f"line {i + 2}" for i in range(n)]})


def test_timestamps_in_every_unit_parse_to_milliseconds() -> None:
    raw = pd.Series(
        [
            "1700000000", "1700000000000", "1700000000000000",
            "2023-11-14T22:13:20Z", "2023-11-14 22:13:20+00:00", "", "soon",
        ]
    )
    ms, bad = parse_timestamps(raw)
    assert ms.iloc[:5].tolist() == [1_700_000_000_000.0] * 5
    assert ms.iloc[5:].isna().all()
    assert bad.tolist() == [False] * 5 + [False, True]


def test_good_interactions_are_typed() -> None:
    result = validate_interactions(
        frame(event_id=["e1"], user_id=[" u1 "], item_id=["i1"], event_type=["WATCH"], value=["42.5"],
              timestamp=["2025-01-01T00:00:00Z"]),
        now_ms=NOW,
    )
    assert result.rejected.empty
    row = result.accepted.iloc[0]
    assert (row.event_id, row.user_id, row.item_id, row.event_type) == ("e1", "u1", "i1", "watch")
    assert row.value == 42.5
    assert row.timestamp == 1_735_689_600_000
    assert row[LOCATION] == "line 2"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"user_id": [""]}, "user_id is missing"),
        ({"item_id": [None]}, "item_id is missing"),
        ({"item_id": ["x" * 300]}, "item_id is longer than 256 characters"),
        ({"event_type": ["poke"]}, "event_type 'poke' is not one of"),
        ({"value": ["ten"]}, "value 'ten' is not a number"),
        ({"value": ["-1"]}, "value '-1' is below 0"),
        ({"value": ["inf"]}, "value 'inf' is not finite"),
        ({"value": ["1e9"]}, "value '1e9' is above 1e+07"),
        ({"timestamp": ["yesterday"]}, "timestamp 'yesterday' is not a valid time"),
        ({"timestamp": [""]}, "timestamp is missing"),
        ({"timestamp": ["12345"]}, "timestamp '12345' is before 1995"),
        ({"timestamp": ["2099-01-01T00:00:00Z"]}, "timestamp '2099-01-01T00:00:00Z' is in the future"),
        ({"event_type": ["rating"], "value": ["11"]}, "value '11' is outside the rating range 0..10"),
        ({"event_type": ["rating"], "value": [""]}, "value is missing for a rating"),
    ],
)
def test_each_rule_rejects_with_a_reason_naming_field(overrides: dict[str, list[object]], reason: str) -> None:
    columns: dict[str, list[object]] = {
        "user_id": ["u1"], "item_id": ["i1"], "event_type": ["watch"], "value": ["3"], "timestamp": ["1700000000"],
    }
    columns.update(overrides)
    result = validate_interactions(frame(**columns), now_ms=NOW)
    assert result.accepted.empty
    assert result.rejected["reason"].iloc[0].startswith(reason)
    assert result.rejected["location"].iloc[0] == "line 2"
    assert json.loads(result.rejected["record"].iloc[0])["user_id"] == columns["user_id"][0]


def test_bad_rows_do_not_take_their_neighbours_with_them() -> None:
    result = validate_interactions(
        frame(user_id=["u1", "u2", "u3"], item_id=["i1", "i2", "i3"], value=["1", "x", "2"],
              timestamp=["1700000000"] * 3),
        now_ms=NOW,
    )
    assert result.accepted["user_id"].tolist() == ["u1", "u3"]
    assert result.accepted[LOCATION].tolist() == ["line 2", "line 4"]
    assert result.rejected["location"].tolist() == ["line 3"]


def test_missing_event_ids_are_derived_deterministically() -> None:
    raw = frame(user_id=["u1", "u1"], item_id=["i1", "i2"], timestamp=["1700000000", "1700000000"])
    first = validate_interactions(raw, now_ms=NOW).accepted["event_id"].tolist()
    second = validate_interactions(raw, now_ms=NOW).accepted["event_id"].tolist()
    assert first == second
    assert first[0] != first[1]


def test_default_event_type_and_rules_are_configurable() -> None:
    rules = ValidationRules(default_event_type="rating", rating_range=(1, 5))
    result = validate_interactions(
        frame(user_id=["a", "b"], item_id=["x", "y"], value=["5", "6"], timestamp=["1700000000"] * 2), rules, now_ms=NOW
    )
    assert result.accepted["event_type"].tolist() == ["rating"]
    assert "outside the rating range 1..5" in result.rejected["reason"].iloc[0]


def test_items_keep_unknown_columns_as_attributes_and_parse_tags() -> None:
    result = validate_items(
        frame(item_id=["v1", "v2", "v3"], title=["Cats", "Dogs", "Owls"], tags=["funny|pets", '["a", "b"]', None],
              duration_s=["30", "-2", "10"], available=["yes", "1", "maybe"], language=["en", "fr", "de"]),
        now_ms=NOW,
    )
    assert result.accepted.to_dict("records")[0] | {LOCATION: None} == {
        "item_id": "v1", "title": "Cats", "category": None, "tags": ["funny", "pets"], "description": None,
        "duration_s": 30.0, "created_at": None, "available": True, "attributes": {"language": "en"}, LOCATION: None,
    }
    reasons = dict(zip(result.rejected["location"], result.rejected["reason"], strict=True))
    assert reasons == {"line 3": "duration_s '-2' is below 0", "line 4": "available 'maybe' is not a boolean"}


def test_users_need_an_id_and_valid_attributes() -> None:
    result = validate_users(frame(user_id=["u1", "", "u3"], attributes=['{"age": 30}', "{}", "[1]"]), now_ms=NOW)
    assert result.accepted["user_id"].tolist() == ["u1"]
    assert result.accepted["attributes"].iloc[0] == {"age": 30}
    assert result.rejected["reason"].tolist() == ["user_id is missing", "attributes is not a JSON object"]


def test_repeats_within_a_chunk_keep_the_first() -> None:
    accepted = pd.DataFrame({"event_id": ["a", "b", "a"], "value": [1, 2, 3]})
    kept, repeats = drop_repeats(accepted, "interactions")
    assert kept["value"].tolist() == [1, 2]
    assert repeats == 1
