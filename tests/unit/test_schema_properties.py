"""Property-based: any value in any field of any record kind goes through validation without an exception,
and every rejected record's reason starts with the name of the field at fault."""

from __future__ import annotations

from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recstack.schema import (
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    LOCATION,
    USER_COLUMNS,
    validate_interactions,
    validate_items,
    validate_users,
)

NOW = 1_790_000_000_000
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-300, max_value=1e-300),
    st.text(max_size=300),
    st.sampled_from(["", " ", "\x00", "2026-01-01T00:00:00Z", "1700000000", "-1", "nan", "true", "like", "1e400"]),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def records(columns: tuple[str, ...]) -> st.SearchStrategy[pd.DataFrame]:
    row = st.fixed_dictionaries({}, optional={c: values for c in columns})
    return st.lists(row, min_size=1, max_size=5).map(
        lambda rows: pd.DataFrame(rows).assign(**{LOCATION: [f"row {i}" for i in range(len(rows))]})
    )


def check(validated: Any, frame: pd.DataFrame, fields: tuple[str, ...]) -> None:
    assert len(validated.accepted) + len(validated.rejected) <= len(frame)
    for reason in validated.rejected["reason"]:
        assert isinstance(reason, str) and reason.split(" ")[0].split(".")[0] in fields, reason


@SETTINGS
@given(records(INTERACTION_COLUMNS))
def test_any_interaction_field_is_validated_never_raised(frame: pd.DataFrame) -> None:
    validated = validate_interactions(frame, now_ms=NOW)
    check(validated, frame, INTERACTION_COLUMNS)
    assert validated.accepted["user_id"].str.len().between(1, 256).all()


@SETTINGS
@given(records(ITEM_COLUMNS))
def test_any_item_field_is_validated_never_raised(frame: pd.DataFrame) -> None:
    check(validate_items(frame, now_ms=NOW), frame, ITEM_COLUMNS)


@SETTINGS
@given(records(USER_COLUMNS))
def test_any_user_field_is_validated_never_raised(frame: pd.DataFrame) -> None:
    check(validate_users(frame, now_ms=NOW), frame, USER_COLUMNS)
