"""The records recstack stores and the rules a record must pass to be stored.

Validation is vectorised over a chunk (a pandas DataFrame of raw values) because ingestion runs at hundreds
of thousands of records per second; the API validates single records with the same functions on a one-row
frame, so there is exactly one rule set. Every rejected record keeps its source location and a reason that
names the field and the offending value.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

RecordKind = Literal["interactions", "items", "users"]
LOCATION: Final = "_location"
MAX_ID_LENGTH: Final = 256
# An interaction before 1995 or more than a day ahead is almost always a unit or parsing mistake.
MIN_TIMESTAMP_MS: Final = 788_918_400_000
# Catalogue and account dates may be old (a film from 1920), but not before 1800.
MIN_CREATED_MS: Final = -5_364_662_400_000
FUTURE_SLACK_MS: Final = 86_400_000


class EventType(StrEnum):
    VIEW = "view"
    WATCH = "watch"
    LIKE = "like"
    SKIP = "skip"
    SHARE = "share"
    RATING = "rating"
    CLICK = "click"
    PURCHASE = "purchase"


EVENT_TYPES: Final = frozenset(e.value for e in EventType)

INTERACTION_COLUMNS: Final = ("event_id", "user_id", "item_id", "event_type", "value", "timestamp")
ITEM_COLUMNS: Final = (
    "item_id", "title", "category", "tags", "description", "duration_s", "created_at", "available", "attributes",
)
USER_COLUMNS: Final = ("user_id", "created_at", "attributes")
ID_FIELD: Final[dict[str, str]] = {"interactions": "event_id", "items": "item_id", "users": "user_id"}


@dataclass(frozen=True)
class ValidationRules:
    """Limits that differ between deployments; everything else is fixed by the schema."""

    max_value: float = 1e7
    rating_range: tuple[float, float] = (0.0, 10.0)
    max_duration_s: float = 7 * 86_400
    default_event_type: str = EventType.VIEW.value


@dataclass
class Validated:
    """The outcome of validating one chunk: rows ready to store and rows for the quarantine."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame  # columns: location, reason, record

    @property
    def n_rejected(self) -> int:
        return len(self.rejected)


class _Reasons:
    """First failing rule wins, so a record gets one clear reason rather than a cascade."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)

    def flag(self, mask: np.ndarray | pd.Series, message: str | tuple[str, pd.Series, str]) -> None:
        """Give `message` to the rows in `mask` that have no reason yet.

        A `(field, values, verdict)` message becomes "field 'value' verdict" per row, built only for the
        rows flagged: most chunks have no bad rows, and formatting every value would cost more than checking.
        """
        mask_arr = np.asarray(mask, dtype=bool) & pd.isna(self.reason)
        if not mask_arr.any():
            return
        if isinstance(message, str):
            self.reason[mask_arr] = message
            return
        name, values, verdict = message
        shown = pd.Series(values).iloc[np.flatnonzero(mask_arr)].astype("string").fillna("").str.slice(0, 80)
        self.reason[mask_arr] = [f"{name} '{v}' {verdict}" for v in shown]

    @property
    def bad(self) -> np.ndarray:
        return ~pd.isna(self.reason)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    col = frame[column]
    out = col.astype("string").str.strip()
    return out.mask(out == "", pd.NA)


def _check_id(frame: pd.DataFrame, column: str, reasons: _Reasons, required: bool = True) -> pd.Series:
    ids = _text(frame, column)
    if required:
        reasons.flag(ids.isna(), f"{column} is missing")
    reasons.flag(ids.str.len().fillna(0) > MAX_ID_LENGTH, f"{column} is longer than {MAX_ID_LENGTH} characters")
    reasons.flag(ids.str.contains("\x00", regex=False).fillna(False), f"{column} contains a NUL character")
    return ids


def _check_text(frame: pd.DataFrame, columns: tuple[str, ...], reasons: _Reasons) -> None:
    """No store can keep a NUL character in text (PostgreSQL refuses it), so it is a reject, not a crash."""
    for column in columns:
        if column in frame:
            text = frame[column].astype("string")
            reasons.flag(text.str.contains("\x00", regex=False).fillna(False), f"{column} contains a NUL character")


def parse_timestamps(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse ISO-8601 strings, datetimes, or Unix epochs (seconds, milliseconds or microseconds).

    Returns epoch milliseconds (float, NaN where unparseable) and a mask of present-but-unparseable values.
    """
    if pd.api.types.is_datetime64_any_dtype(raw):
        dt = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
        ms = dt.astype("datetime64[ms, UTC]").astype("int64").astype("float64").where(dt.notna())
        return ms, pd.Series(False, index=raw.index)
    present = raw.notna() & (raw.astype("string").str.strip() != "")
    numeric = pd.to_numeric(raw, errors="coerce").astype("float64")
    magnitude = numeric.abs()
    scale = np.select([magnitude < 1e11, magnitude < 1e14], [1000.0, 1.0], default=0.001)
    ms = numeric * scale
    text_mask = present & numeric.isna()
    if text_mask.any():
        parsed = pd.to_datetime(raw[text_mask].astype(str), utc=True, errors="coerce", format="ISO8601")
        ms.loc[text_mask] = parsed.dt.as_unit("ms").astype("int64").astype("float64").where(parsed.notna())
    return ms, present & ms.isna()


def _check_time(
    frame: pd.DataFrame, column: str, reasons: _Reasons, required: bool, now_ms: int,
    floor_ms: int = MIN_CREATED_MS,
) -> pd.Series:
    if column not in frame:
        if required:
            reasons.flag(np.ones(len(frame), dtype=bool), f"{column} is missing")
        return pd.Series(np.nan, index=frame.index)
    ms, unparseable = parse_timestamps(frame[column])
    raw = frame[column]
    if required:
        reasons.flag(ms.isna() & ~unparseable, f"{column} is missing")
    reasons.flag(unparseable, (column, raw, "is not a valid time"))
    floor = pd.Timestamp(floor_ms, unit="ms").year
    reasons.flag(ms < floor_ms, (column, raw, f"is before {floor} (wrong unit?)"))
    reasons.flag(ms > now_ms + FUTURE_SLACK_MS, (column, raw, "is in the future"))
    return ms


def _check_number(
    frame: pd.DataFrame, column: str, reasons: _Reasons, low: float, high: float
) -> pd.Series:
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    raw = frame[column]
    present = raw.notna() & (raw.astype("string").str.strip() != "")
    number = pd.to_numeric(raw, errors="coerce").astype("float64")
    reasons.flag(present & number.isna(), (column, raw, "is not a number"))
    reasons.flag(present & ~np.isfinite(number.fillna(0.0)), (column, raw, "is not finite"))
    reasons.flag(number < low, (column, raw, f"is below {low:g}"))
    reasons.flag(number > high, (column, raw, f"is above {high:g}"))
    return number


def _rejected(frame: pd.DataFrame, reasons: _Reasons) -> pd.DataFrame:
    bad = reasons.bad
    if not bad.any():
        return pd.DataFrame({"location": [], "reason": [], "record": []})
    rows = frame.loc[bad]
    payload = rows.drop(columns=[LOCATION], errors="ignore")
    payload = payload.astype(object).where(payload.notna(), None)
    records = [json.dumps(r, default=str, ensure_ascii=False) for r in payload.to_dict("records")]
    location = rows[LOCATION] if LOCATION in rows else pd.Series("", index=rows.index)
    return pd.DataFrame(
        {"location": location.astype(str).to_numpy(), "reason": reasons.reason[bad], "record": records}
    )


def _result(accepted: pd.DataFrame, frame: pd.DataFrame, good: np.ndarray, reasons: _Reasons) -> Validated:
    """Accepted rows keep the source location (as `_location`) so later checks can still name it."""
    accepted = accepted.reset_index(drop=True)
    if LOCATION in frame:
        accepted[LOCATION] = frame.loc[good, LOCATION].astype(str).to_numpy()
    return Validated(accepted, _rejected(frame, reasons))


def derive_event_ids(accepted: pd.DataFrame) -> pd.Series:
    """Deterministic ids for events that came without one, so replaying a file stores nothing twice."""
    value = np.where(accepted["value"].isna(), "", accepted["value"].to_numpy().astype(str))
    parts = zip(
        accepted["user_id"].tolist(), accepted["item_id"].tolist(), accepted["event_type"].tolist(),
        accepted["timestamp"].tolist(), value.tolist(), strict=True,
    )
    return pd.Series(
        [hashlib.blake2b("\x1f".join(map(str, p)).encode(), digest_size=12).hexdigest() for p in parts],
        index=accepted.index,
        dtype=object,
    )


def validate_interactions(
    frame: pd.DataFrame, rules: ValidationRules = ValidationRules(), now_ms: int | None = None
) -> Validated:
    """Validate raw interaction records; accepted rows come out typed in INTERACTION_COLUMNS order."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    reasons = _Reasons(len(frame))
    event_id = _check_id(frame, "event_id", reasons, required=False)
    user_id = _check_id(frame, "user_id", reasons)
    item_id = _check_id(frame, "item_id", reasons)
    event_type = _text(frame, "event_type").str.lower().fillna(rules.default_event_type)
    reasons.flag(
        ~event_type.isin(EVENT_TYPES),
        ("event_type", event_type, "is not one of " + ", ".join(sorted(EVENT_TYPES))),
    )
    value = _check_number(frame, "value", reasons, 0.0, rules.max_value)
    low, high = rules.rating_range
    is_rating = (event_type == EventType.RATING.value).to_numpy()
    reasons.flag(is_rating & value.isna().to_numpy(), "value is missing for a rating")
    reasons.flag(
        is_rating & ((value < low) | (value > high)).to_numpy(),
        ("value", frame.get("value", value), f"is outside the rating range {low:g}..{high:g}"),
    )
    ts = _check_time(frame, "timestamp", reasons, required=True, now_ms=now_ms, floor_ms=MIN_TIMESTAMP_MS)
    good = ~reasons.bad
    accepted = pd.DataFrame(
        {
            "event_id": event_id[good].astype(object),
            "user_id": user_id[good].astype(str),
            "item_id": item_id[good].astype(str),
            "event_type": event_type[good].astype(str),
            "value": value[good].astype("float64"),
            "timestamp": ts[good].astype("int64"),
        }
    )
    missing = accepted["event_id"].isna()
    if missing.any():
        accepted.loc[missing, "event_id"] = derive_event_ids(accepted.loc[missing])
    accepted["event_id"] = accepted["event_id"].astype(str)
    return _result(accepted, frame, good, reasons)


def _tags(raw: pd.Series) -> pd.Series:
    def one(v: Any) -> list[str]:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return []
        if isinstance(v, list | tuple | np.ndarray):
            return [str(t).strip() for t in v if str(t).strip()]
        text = str(v).strip()
        if text.startswith("["):
            try:
                return [str(t).strip() for t in json.loads(text) if str(t).strip()]
            except json.JSONDecodeError:
                pass
        return [t.strip() for t in text.replace(",", "|").split("|") if t.strip()]

    return raw.map(one)


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def _attributes(frame: pd.DataFrame, known: tuple[str, ...]) -> list[dict[str, Any]]:
    extra = [c for c in frame.columns if c not in known and c != LOCATION]
    base: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    if "attributes" in frame:
        for i, v in enumerate(frame["attributes"]):
            if isinstance(v, dict):
                base[i] = dict(v)
            elif isinstance(v, str) and v.strip().startswith("{"):
                base[i] = json.loads(v)
    for c in extra:
        for i, v in enumerate(frame[c].tolist()):
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                base[i][c] = v.item() if isinstance(v, np.generic) else v
    return base


def _check_attributes(frame: pd.DataFrame, reasons: _Reasons) -> None:
    if "attributes" not in frame:
        return

    def broken(v: Any) -> bool:
        if not isinstance(v, str) or not v.strip():
            return False
        try:
            return not isinstance(json.loads(v), dict)
        except json.JSONDecodeError:
            return True

    reasons.flag(frame["attributes"].map(broken).to_numpy(dtype=bool), "attributes is not a JSON object")


def validate_items(
    frame: pd.DataFrame, rules: ValidationRules = ValidationRules(), now_ms: int | None = None
) -> Validated:
    """Validate catalogue records; unknown columns are kept as the item's attributes."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    reasons = _Reasons(len(frame))
    item_id = _check_id(frame, "item_id", reasons)
    _check_text(frame, ("title", "category", "tags", "description", "attributes"), reasons)
    duration = _check_number(frame, "duration_s", reasons, 0.0, rules.max_duration_s)
    created = _check_time(frame, "created_at", reasons, required=False, now_ms=now_ms)
    available_raw = _text(frame, "available").str.lower()
    reasons.flag(
        available_raw.notna() & ~available_raw.isin(_TRUE | _FALSE),
        ("available", available_raw, "is not a boolean"),
    )
    _check_attributes(frame, reasons)
    good = ~reasons.bad
    kept = frame.loc[good]
    tags = _tags(kept["tags"]) if "tags" in kept else pd.Series([[] for _ in range(len(kept))], index=kept.index)
    accepted = pd.DataFrame(
        {
            "item_id": item_id[good].astype(str),
            "title": _text(kept, "title").astype(object),
            "category": _text(kept, "category").astype(object),
            "tags": tags,
            "description": _text(kept, "description").astype(object),
            "duration_s": duration[good],
            "created_at": created[good].round().astype("Int64"),
            "available": ~available_raw[good].isin(_FALSE),
            "attributes": _attributes(kept, ITEM_COLUMNS),
        }
    )
    accepted = accepted.astype(object).where(accepted.notna(), None)
    return _result(accepted, frame, good, reasons)


def validate_users(
    frame: pd.DataFrame, rules: ValidationRules = ValidationRules(), now_ms: int | None = None
) -> Validated:
    """Validate user records; unknown columns are kept as the user's attributes."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    reasons = _Reasons(len(frame))
    user_id = _check_id(frame, "user_id", reasons)
    _check_text(frame, ("attributes",), reasons)
    created = _check_time(frame, "created_at", reasons, required=False, now_ms=now_ms)
    _check_attributes(frame, reasons)
    good = ~reasons.bad
    kept = frame.loc[good]
    accepted = pd.DataFrame(
        {
            "user_id": user_id[good].astype(str),
            "created_at": created[good].round().astype("Int64"),
            "attributes": _attributes(kept, USER_COLUMNS),
        }
    )
    accepted = accepted.astype(object).where(accepted.notna(), None)
    return _result(accepted, frame, good, reasons)


VALIDATORS: Final = {
    "interactions": validate_interactions,
    "items": validate_items,
    "users": validate_users,
}


def drop_repeats(accepted: pd.DataFrame, kind: RecordKind) -> tuple[pd.DataFrame, int]:
    """Within one chunk the first record with an id wins; the rest count as duplicates."""
    dup = accepted.duplicated(ID_FIELD[kind], keep="first")
    return accepted.loc[~dup].reset_index(drop=True), int(dup.sum())
