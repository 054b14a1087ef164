"""`POST /v1/events`: feedback (write). The body is one event, `{"events": [...]}` or a list; it is parsed
here rather than by FastAPI so a batch can get a report per record instead of failing as a whole."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError

from recstack.errors import InvalidRecord
from recstack.serving.deps import IntakeDep, MetricsDep, ServiceDep, SettingsDep, WriteCaller
from recstack.serving.events import take_events
from recstack.serving.routes.common import ERRORS
from recstack.serving.routes.upserts import rules_of
from recstack.serving.schemas import EventBatch, EventIn, EventReport, validation_body

__all__ = ["BATCH", "router"]

router = APIRouter(prefix="/v1", tags=["feedback"])

_EVENT = TypeAdapter(EventIn)
BATCH = TypeAdapter(EventBatch)
_EVENT_LIST = TypeAdapter(list[EventIn])
_EXAMPLE = {"user_id": "u1", "item_id": "i42", "event_type": "click", "timestamp": "2026-01-01T12:00:00Z"}


@router.post(
    "/events",
    response_model=EventReport,
    status_code=202,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/EventIn"},
                            {"$ref": "#/components/schemas/EventBatch"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}, "minItems": 1},
                        ]
                    },
                    "examples": {
                        "one": {"summary": "One event", "value": _EXAMPLE},
                        "batch": {"summary": "A batch", "value": {"events": [_EXAMPLE, {**_EXAMPLE, "item_id": "i7"}]}},
                    },
                }
            },
        }
    },
)
async def post_events(
    request: Request, service: ServiceDep, intake: IntakeDep, settings: SettingsDep, metrics: MetricsDep,
    _: WriteCaller,
) -> Response:
    """Feedback: one event, `{"events": [...]}` or a list: at most the server's `max_events_per_batch`
    events (422 beyond) in at most `max_body_bytes` (413 beyond). The user's next answer reflects it at
    once. A single invalid event is a 422 naming the field; a batch answers 202 with a report per record
    (accepted, duplicate — the event_id was stored before — or rejected with the reason). Needs scope
    `write`."""
    try:
        payload = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRecord("body: not valid JSON") from exc
    if isinstance(payload, dict):
        adapter: TypeAdapter[Any] = BATCH if "events" in payload else _EVENT
        count = len(payload["events"]) if isinstance(payload.get("events"), list) else 1
    elif isinstance(payload, list):
        adapter, count = _EVENT_LIST, len(payload)
    else:
        raise InvalidRecord('body: must be an event object, {"events": [...]} or a list of events')
    if count > settings.max_events_per_batch:
        raise InvalidRecord(f"body.events: at most {settings.max_events_per_batch} events per request")
    try:
        parsed = adapter.validate_python(payload)
    except ValidationError as exc:
        return JSONResponse(validation_body(exc.errors(), ("body",)), status_code=422)
    events: list[EventIn]
    if isinstance(parsed, EventIn):
        events = [parsed]
    elif isinstance(parsed, EventBatch):
        events = parsed.events
    else:
        events = list(parsed)
    if not events:
        raise InvalidRecord("body.events: the batch is empty")
    taken = take_events(service.store, events, rules_of(settings), settings.unknown_users, settings.unknown_items)
    report = taken.report
    if isinstance(parsed, EventIn) and report.rejected:
        metrics.events.labels("rejected").inc()
        raise InvalidRecord(str(report.records[0].reason))
    delivery = await intake.events(taken.fresh)
    for outcome, n in (("accepted", report.accepted), ("duplicate", report.duplicates), ("rejected", report.rejected)):
        if n:
            metrics.events.labels(outcome).inc(n)
    return Response(
        report.model_dump_json(), status_code=202, media_type="application/json",
        headers={"X-Recstack-Delivery": delivery},
    )
