"""What the routers share: path and query parameter types, the documented error answers, and turning a
service `Answer` into a response."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.responses import Response

from recstack.config import Settings
from recstack.errors import InvalidRecord
from recstack.schema import MAX_ID_LENGTH
from recstack.serving.recommender_service import Answer
from recstack.serving.schemas import ErrorOut

__all__ = ["ERRORS", "IdPath", "ItemPath", "K", "UserPath", "answer", "errors", "once", "short"]

IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern="^[^\x00]+$")]
UserPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern="^[^\x00]+$", examples=["u000001"])]
ItemPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern="^[^\x00]+$", examples=["v000042"])]
K = Annotated[int, Query(ge=1, le=1000, description="How many items to return (at most the server's `max_k`).")]

_TEXT: dict[int, str] = {
    400: "The body could not be parsed.",
    401: "No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer`).",
    403: "The key's scope does not include this route.",
    404: "No such resource.",
    409: "The current state forbids it (a key revoking itself).",
    413: "The body (or the batch in it) is over the server's limit.",
    422: "A field is invalid; `detail` names it and `errors` lists each field.",
    429: "The key's rate limit is exhausted; `Retry-After` says when to retry (seconds).",
    503: "A backend (store, catalogue, registry) is unavailable.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer realm=\"recstack\"`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until a request is allowed.", "schema": {"type": "integer"}}},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can answer these error statuses (all in the one error schema)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorOut, "description": _TEXT[status]}
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


ERRORS = errors(400, 401, 403, 413, 422, 429, 503)
"""What every guarded route can answer besides its success."""


def short(settings: Settings, name: str, value: str) -> None:
    """422 for a path id over the server's `max_id_length` (the document's `maxLength` says the same)."""
    if len(value) > settings.max_id_length:
        raise InvalidRecord(f"path.{name}: at most {settings.max_id_length} characters")


def once(request: Request, *names: str) -> None:
    """422 when a scalar query parameter is given more than once (FastAPI would silently keep the last)."""
    for name in names:
        if len(request.query_params.getlist(name)) > 1:
            raise InvalidRecord(f"query.{name}: given more than once")


def answer(result: Answer) -> Response:
    return Response(result.body, media_type="application/json", headers=result.headers)
