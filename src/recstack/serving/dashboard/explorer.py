"""The user explorer (history beside recommendations, another version side by side, a test event) and the
item page (metadata, similar items, who engages with it)."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from recstack.errors import InvalidRecord, NotFound, RecstackError
from recstack.schema import EVENT_TYPES, MAX_ID_LENGTH, ValidationRules
from recstack.serving.auth import Scope
from recstack.serving.dashboard import queries
from recstack.serving.dashboard.access import check_form
from recstack.serving.dashboard.models_page import registry_versions
from recstack.serving.dashboard.web import PREFIX, dashboard_of, form_of, off_loop, page, refuse, viewer_or_login
from recstack.serving.events import take_events
from recstack.serving.intake import Intake
from recstack.serving.schemas import EventIn

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

K = Annotated[int, Query(ge=1, le=100)]


def _titled(store: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("items", [])
    named = queries.titles(store, [i["item_id"] for i in items])
    return [{**i, **named.get(i["item_id"], {"title": None, "category": None})} for i in items]


def _id_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and "\x00" not in value


@router.get("/users/{user_id:path}")
async def user(
    request: Request,
    user_id: str,
    k: K = 10,
    compare: Annotated[int | None, Query(ge=1)] = None,
    posted: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
) -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    if not _id_ok(user_id):
        return refuse(request, viewer, InvalidRecord("user_id: 1 to 256 characters, no NUL"))
    board = dashboard_of(request)
    reloader = board.reloader(request)
    store = board.service(request).store
    try:
        total, history = await off_loop(queries.user_history, store, user_id, 50)
        known = total > 0 or await off_loop(queries.user_exists, store, user_id)
        current = await off_loop(board.previews.recommend, reloader, user_id, k)
        recommended = await off_loop(_titled, store, current)
        versions = await off_loop(board.memo.get, ("versions",), lambda: registry_versions(reloader))
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    other: dict[str, Any] | None = None
    other_error = None
    if compare is not None:
        try:
            body = await off_loop(board.previews.recommend, reloader, user_id, k, compare)
            other = {"body": body, "items": await off_loop(_titled, store, body)}
        except RecstackError as exc:
            other_error = str(exc)
    return page(
        request, "user.html", viewer, user_id=user_id, known=known, total=total, history=history, current=current,
        recommended=recommended, k=k, versions=versions, compare=compare, other=other, other_error=other_error,
        posted=posted, event_types=sorted(EVENT_TYPES),
    )


@router.post("/events")
async def post_event(request: Request) -> Response:
    """A test event from the explorer, through the same checks and bus as `POST /v1/events`."""
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    board = dashboard_of(request)
    settings = board.settings
    service = board.service(request)
    try:
        form = await form_of(request)
        check_form(viewer, form.get("csrf"), Scope.WRITE)
        raw: dict[str, Any] = {name: form.get(name) or None for name in ("user_id", "item_id", "event_type", "value")}
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as exc:
            raise InvalidRecord("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from exc
        rules = ValidationRules(max_value=settings.max_value)
        taken = await off_loop(take_events, service.store, [event], rules, settings.unknown_users,
                               settings.unknown_items)
        if taken.report.rejected:
            service.metrics.events.labels("rejected").inc()
            raise InvalidRecord(str(taken.report.records[0].reason))
        intake: Intake = request.app.state.intake
        await intake.events(taken.fresh)
        service.metrics.events.labels("accepted").inc(taken.report.accepted)
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    user_id = str(event.user_id)
    target = f"{PREFIX}/users/{quote(user_id, safe='')}?posted={quote(str(event.item_id), safe='')}"
    with contextlib.suppress(ValueError, TypeError):
        k = int(form.get("k", ""))
        if 1 <= k <= 100:
            target += f"&k={k}"
    if form.get("compare", "").isdigit():
        target += f"&compare={form['compare']}"
    return RedirectResponse(target, status_code=303)


@router.get("/items/{item_id:path}")
async def item(request: Request, item_id: str) -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    if not _id_ok(item_id):
        return refuse(request, viewer, InvalidRecord("item_id: 1 to 256 characters, no NUL"))
    service = dashboard_of(request).service(request)
    store = service.store
    try:
        row = await off_loop(queries.item_row, store, item_id)
        engagement = await off_loop(queries.item_engagement, store, item_id)
        if row is None and engagement.total == 0:
            raise NotFound(f"item_id {item_id!r} is not a known item")
        similar: list[dict[str, Any]] = []
        similar_error = None
        try:
            body = orjson.loads(service.similar(item_id, 10).body)
            similar = await off_loop(_titled, store, body)
        except NotFound as exc:
            similar_error = str(exc)
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    attributes = (row or {}).get("attributes") or {}
    return page(request, "item.html", viewer, item_id=item_id, row=row, attributes=attributes,
                engagement=engagement, similar=similar, similar_error=similar_error)
