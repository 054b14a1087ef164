"""Request and response bodies of the `/v1` API (they also make the OpenAPI document).

Request fields are typed loosely where the ingestion rules decide (ids, values, times): the API validates
with exactly the functions ingestion uses (`recstack.schema`), so a record the API accepts is a record a
file import would accept, and a batch gets a report per record instead of failing as a whole. Unknown fields
are rejected, so a typo in a field name is a 422 naming it rather than a silently dropped value.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ErrorOut",
    "EventBatch",
    "EventIn",
    "EventReport",
    "ItemIn",
    "ItemsOut",
    "Ready",
    "RecommendationsOut",
    "RecordResult",
    "ScoredItem",
    "SimilarOut",
    "UpsertResult",
    "UserIn",
]

Reason = Literal["collaborative", "content", "trending"]
Scalar = str | int | float


def _nul_at(value: Any, path: str) -> str | None:
    """The path of the first string holding a NUL character (PostgreSQL cannot store one), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, inner in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key!r}"
        found = _nul_at(inner, f"{path}.{key}")
        if found:
            return found
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        for name in type(self).model_fields:
            found = _nul_at(getattr(self, name), name)
            if found:
                raise ValueError(f"{found} contains a NUL character")
        return self


class EventIn(_Strict):
    """One interaction. `timestamp` (ISO-8601 or epoch s/ms/µs) defaults to the time it is received;
    `event_type` defaults to `view`. Without `event_id`, one is derived from the other fields, so a
    retried post is stored once."""

    event_id: Scalar | None = None
    user_id: Scalar | None = None
    item_id: Scalar | None = None
    event_type: str | None = None
    value: Scalar | None = None
    timestamp: Scalar | None = None


class EventBatch(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=10_000)


class RecordResult(BaseModel):
    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None = None
    reason: str | None = None


class EventReport(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    records: list[RecordResult]


class ScoredItem(BaseModel):
    item_id: str
    score: float
    reason: Reason


class ItemsOut(BaseModel):
    model: str | None = Field(description="Kind of the champion model; null when none is loaded.")
    model_version: int | None
    items: list[ScoredItem]


class RecommendationsOut(ItemsOut):
    user_id: str
    source: Literal["model", "trending"]


class SimilarOut(ItemsOut):
    item_id: str


class ItemIn(_Strict):
    """A catalogue record; `available: false` keeps the item out of every answer."""

    title: str | None = None
    category: str | None = Field(default=None, max_length=256)
    tags: list[str] | str | None = None
    description: str | None = None
    duration_s: float | None = Field(default=None, ge=0, le=7 * 86_400)
    created_at: Scalar | None = None
    available: bool = True
    attributes: dict[str, Any] | None = None


class UserIn(_Strict):
    """A user record; `preferences` is the user's preference document (e.g. `{"categories": ["jazz"]}`),
    which cold-start answers follow."""

    created_at: Scalar | None = None
    attributes: dict[str, Any] | None = None
    preferences: dict[str, Any] | None = None


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error answer: `detail` says what is wrong (naming the field); `errors` lists each field for a
    request that failed validation."""

    detail: str
    errors: list[FieldError] | None = None


class UpsertResult(BaseModel):
    id: str
    created: bool


class Ready(BaseModel):
    ready: bool
    checks: dict[str, bool]
    model: str | None
    model_version: int | None
    detail: dict[str, str]
