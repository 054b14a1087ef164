"""Request and response bodies of the `/v1` API (they also make the OpenAPI document).

Request fields are typed loosely where the ingestion rules decide (ids, values, times): the API validates
with exactly the functions ingestion uses (`recstack.schema`), so a record the API accepts is a record a
file import would accept, and a batch gets a report per record instead of failing as a whole. Unknown fields
are rejected, so a typo in a field name is a 422 naming it rather than a silently dropped value.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

__all__ = [
    "ErrorOut",
    "EventBatch",
    "EventIn",
    "EventReport",
    "Health",
    "ItemIn",
    "ItemsOut",
    "KeyCreated",
    "KeyIn",
    "KeyOut",
    "ModelDecision",
    "ModelVersionOut",
    "Ready",
    "RecommendationsOut",
    "RecordResult",
    "ScoredItem",
    "SimilarOut",
    "UpsertResult",
    "UserIn",
    "validation_body",
]

Reason = Literal["collaborative", "content", "trending"]
# Strict: a JSON `false` is not the integer 0 and `"1.5"` is not a number, exactly as the document says.
Scalar = StrictStr | StrictInt | StrictFloat


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
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        for name in type(self).model_fields:
            found = _nul_at(getattr(self, name), name)
            if found:
                raise ValueError(f"{found} contains a NUL character")
        return self


def _examples(*values: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(values)})


class EventIn(_Strict):
    """One interaction. `timestamp` (ISO-8601 or epoch s/ms/µs) defaults to the time it is received;
    `event_type` defaults to `view`. Without `event_id`, one is derived from the other fields, so a
    retried post is stored once."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"user_id": "u1", "item_id": "i42", "event_type": "click", "timestamp": "2026-01-01T12:00:00Z"}]})

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
    model_config = _examples({"accepted": 1, "duplicates": 0, "rejected": 0,
                              "records": [{"index": 0, "status": "accepted", "event_id": "e1"}]})

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
    model_config = _examples({"user_id": "u1", "source": "model", "model": "als", "model_version": 3,
                              "items": [{"item_id": "i42", "score": 0.93, "reason": "collaborative"}]})

    user_id: str
    source: Literal["batch", "model", "trending"] = Field(
        description="batch: a batch job's list for this model version, filtered now; model: computed by the "
        "champion; trending: popularity (no champion, or a user it does not know).",
    )


class SimilarOut(ItemsOut):
    model_config = _examples({"item_id": "i42", "model": "als", "model_version": 3,
                              "items": [{"item_id": "i7", "score": 0.81, "reason": "collaborative"}]})

    item_id: str


class ItemIn(_Strict):
    """A catalogue record; `available: false` keeps the item out of every answer."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"title": "Blue Train", "category": "jazz", "tags": ["hard bop"], "duration_s": 643, "available": True}]})

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

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"created_at": "2026-01-01T00:00:00Z", "attributes": {"country": "NL"},
         "preferences": {"categories": ["jazz"]}}]})

    created_at: Scalar | None = None
    attributes: dict[str, Any] | None = None
    preferences: dict[str, Any] | None = None


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error answer: `detail` says what is wrong (naming the field); `errors` lists each field for a
    request that failed validation."""

    model_config = _examples({"detail": "query.k: Input should be less than or equal to 1000", "errors": [
        {"field": "query.k", "message": "Input should be less than or equal to 1000"}]})

    detail: str
    errors: list[FieldError] | None = None


def validation_body(errors: Any, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """The 422 body for pydantic errors: `detail` names the first fields, `errors` lists each one. Only
    each error's location and message go out (never the input, which may be huge or sensitive)."""
    fields = [
        {"field": ".".join(str(p) for p in (*prefix, *e["loc"])), "message": str(e["msg"])} for e in errors
    ]
    return {"detail": "; ".join(f"{f['field']}: {f['message']}" for f in fields[:10]) or "invalid request",
            "errors": fields}


class UpsertResult(BaseModel):
    model_config = _examples({"id": "i42", "created": True})

    id: str
    created: bool


class Health(BaseModel):
    model_config = _examples({"status": "ok"})

    status: Literal["ok"]


class KeyIn(_Strict):
    """A key to create: its scope (`read`, `write` or `admin`) and an optional name."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"scope": "read", "name": "web"}]})

    scope: Literal["read", "write", "admin"]
    name: str | None = Field(default=None, max_length=128)


class KeyOut(BaseModel):
    """A stored key: never the key itself. Times are epoch milliseconds."""

    model_config = _examples({"id": "3f9a0c1d2e4b", "name": "web", "scope": "read", "created_at": 1767225600000,
                              "revoked_at": None})

    id: str
    name: str
    scope: str
    created_at: int
    revoked_at: int | None = None


class KeyCreated(KeyOut):
    """A key just created; `key` is shown once (the server keeps only its hash)."""

    model_config = _examples({"id": "3f9a0c1d2e4b", "name": "web", "scope": "read", "created_at": 1767225600000,
                              "revoked_at": None, "key": "rk_3f9a0c1d2e4b_Xq…"})

    key: str


class ModelVersionOut(BaseModel):
    model_config = _examples({"version": 3, "kind": "als", "champion": True, "metrics": {"ndcg@10": 0.31},
                              "created_at": "2026-01-01T12:00:00+00:00"})

    version: int
    kind: str
    champion: bool
    metrics: dict[str, float]
    created_at: str


class ModelDecision(BaseModel):
    """What a promotion or rollback did: `changed` is false when the champion stayed."""

    model_config = _examples({"changed": True, "champion": {"version": 3, "kind": "als", "champion": True,
                                                            "metrics": {"ndcg@10": 0.31},
                                                            "created_at": "2026-01-01T12:00:00+00:00"}})

    changed: bool
    champion: ModelVersionOut


class Ready(BaseModel):
    model_config = _examples({"ready": True, "checks": {"model": True, "store": True, "cache": True, "bus": True,
                                                        "online": True},
                              "model": "als", "model_version": 3, "detail": {}})

    ready: bool
    checks: dict[str, bool]
    model: str | None
    model_version: int | None
    detail: dict[str, str]
