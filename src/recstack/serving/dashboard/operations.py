"""The quarantine (rejected records, filterable, exportable as CSV) and the stream page (the bus, the
in-process consumer's lag and rate, the dead-letter queue)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from recstack.backends import scheme_of
from recstack.errors import RecstackError
from recstack.serving.dashboard import queries
from recstack.serving.dashboard.live import stream_figures
from recstack.serving.dashboard.web import PREFIX, dashboard_of, off_loop, page, refuse, viewer_or_login
from recstack.serving.intake import Intake
from recstack.storage import Store

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

Text = Annotated[str, Query(max_length=256)]


def _filter(kind: str, text: str, reason: str) -> queries.QuarantineFilter:
    clean = [v.replace("\x00", "").strip() for v in (kind, text, reason)]
    return queries.QuarantineFilter(kind=clean[0], text=clean[1], reason=clean[2])


@router.get("/quarantine")
async def quarantine(
    request: Request, kind: Text = "", text: Text = "", reason: Text = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    store = dashboard_of(request).service(request).store
    where = _filter(kind, text, reason)
    try:
        total, rows = await off_loop(queries.quarantine_rows, store, where, limit)
        kinds = await off_loop(queries.quarantine_kinds, store)
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    return page(request, "quarantine.html", viewer, where=where, total=total, rows=rows, kinds=kinds, limit=limit,
                query=request.url.query)


def _csv(store: Store, where: queries.QuarantineFilter) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(queries.QUARANTINE_COLUMNS)
    for chunk in queries.iter_quarantine(store, where):
        writer.writerows(chunk)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


@router.get("/quarantine.csv")
async def quarantine_csv(request: Request, kind: Text = "", text: Text = "", reason: Text = "") -> Response:
    """Every matching rejected record as CSV (columns `queries.QUARANTINE_COLUMNS`, times in epoch ms)."""
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    store = dashboard_of(request).service(request).store
    return StreamingResponse(
        _csv(store, _filter(kind, text, reason)), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="quarantine.csv"', "Cache-Control": "no-store"},
    )


def _stream_state(request: Request) -> dict[str, Any]:
    intake: Intake = request.app.state.intake
    settings = dashboard_of(request).settings
    embedded = intake.embedded
    figures = stream_figures(embedded.processor.metrics.registry) if embedded is not None else None
    if embedded is not None and figures is not None:
        figures["lag"] = float(embedded.processor.consumer.lag())
    return {
        "bus": scheme_of(settings.bus_url),
        "bus_up": intake.sender.bus_up,
        "outbox_pending": intake.sender.pending,
        "embedded": embedded is not None,
        "group": settings.stream_group,
        "topics": {"events": intake.topics.events, "catalog": intake.topics.catalog, "dead letters": intake.topics.dlq},
        "figures": figures,
    }


@router.get("/stream")
async def stream(request: Request) -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    store = dashboard_of(request).service(request).store
    try:
        state = await off_loop(_stream_state, request)
        total, dead = await off_loop(queries.dead_letters, store, 100)
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    return page(request, "stream.html", viewer, state=state, dead_total=total, dead=dead)


@router.get("/stream.json")
async def stream_json(request: Request) -> Response:
    """The stream page's live figures."""
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return JSONResponse({"detail": "sign in first"}, status_code=401)
    state = await off_loop(_stream_state, request)
    flat: dict[str, Any] = {"bus_up": state["bus_up"], "outbox_pending": state["outbox_pending"]}
    flat.update(state["figures"] or {})
    return JSONResponse(flat, headers={"Cache-Control": "no-store"})
