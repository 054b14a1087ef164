"""Overview, search, sign-in and sign-out, and the live figures the overview polls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from recstack.errors import Forbidden, InvalidRecord, RateLimited, RecstackError, Unauthenticated
from recstack.schema import MAX_ID_LENGTH
from recstack.serving.auth import Scope
from recstack.serving.dashboard import charts, queries
from recstack.serving.dashboard.access import Sessions, check_form
from recstack.serving.dashboard.web import PREFIX, dashboard_of, form_of, off_loop, page, refuse, viewer_or_login
from recstack.serving.data import Catalog
from recstack.storage import Store

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def overview_data(store: Store, catalog: Catalog | None) -> dict[str, Any]:
    """Everything the overview shows from the store (a few scans of the interaction log)."""
    counts = store.counts()
    events = queries.event_series(store)
    by_type = queries.event_types(store)
    popular = queries.popular_items(store, 10)
    trending: list[tuple[str, float]] = []
    if catalog is not None:
        for pos in catalog.trending_order[:10].tolist():
            if catalog.trending[pos] > 0:
                trending.append((str(catalog.ids[pos]), float(catalog.trending[pos])))
    named = queries.titles(store, [i for i, _ in popular] + [i for i, _ in trending])
    tail = queries.item_popularity(store)
    activity = queries.activity_counts(store)
    bins, users = charts.log_bins(activity)
    return {
        "counts": counts,
        "popular": [(i, n, named.get(i, {}).get("title")) for i, n in popular],
        "trending": [(i, s, named.get(i, {}).get("title")) for i, s in trending],
        "charts": [
            (charts.line_chart(
                {kind: [(float(x), float(y)) for x, y in points] for kind, points in events.series.items()},
                title="Events over time", x_label="time (UTC)", y_label=f"events per {events.bucket.name}",
                time_x=True,
            ), f"{events.outside:,} event(s) outside {charts.date_of(events.start_ms)} – "
               f"{charts.date_of(events.end_ms)} not drawn" if events.outside else ""),
            (charts.column_chart(list(by_type), list(by_type.values()), title="Events by type",
                                 x_label="event type", y_label="events"), ""),
            (charts.line_chart({"items": charts.rank_points(tail)}, title="Item popularity (long tail)",
                               x_label="item rank (most popular first)", y_label="events per item (log scale)",
                               log_y=True), ""),
            (charts.column_chart(bins, users, title="User activity",
                                 x_label="events per user (bins double: 16 means 16 to 31)", y_label="users"), ""),
        ],
    }


@router.get("")
async def overview(request: Request) -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    board = dashboard_of(request)
    service = board.service(request)
    try:
        data = await off_loop(board.memo.get, ("overview",), lambda: overview_data(service.store, service.catalog))
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    model = service.model
    return page(request, "overview.html", viewer, live=board.figures(request), model=model, **data)


@router.get("/live.json")
async def live(request: Request) -> Response:
    """The overview's live serving figures (requests/s, p50/p99 latency, cache hit rate, errors, champion)."""
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return JSONResponse({"detail": "sign in first"}, status_code=401)
    board = dashboard_of(request)
    model = board.service(request).model
    figures = board.figures(request)
    figures["champion"] = f"{model.kind} v{model.version}" if model is not None else "none (popularity)"
    return JSONResponse(figures, headers={"Cache-Control": "no-store"})


@router.get("/search")
async def search(request: Request, q: Annotated[str, Query(max_length=MAX_ID_LENGTH)] = "") -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    text = q.replace("\x00", "").strip()
    found = queries.Found([], [])
    if text:
        store = dashboard_of(request).service(request).store
        try:
            found = await off_loop(queries.search, store, text)
        except RecstackError as exc:
            return refuse(request, viewer, exc)
    return page(request, "search.html", viewer, q=text, found=found)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path of this site only (no open redirect)."""
    if target and (target == PREFIX or target.startswith((f"{PREFIX}/", f"{PREFIX}?"))) and "\\" not in target:
        return target
    return PREFIX


@router.get("/login")
async def login_form(request: Request, next: Annotated[str, Query(max_length=2048)] = PREFIX) -> Response:
    board = dashboard_of(request)
    return page(request, "login.html", None, next=_safe_next(next), csrf=board.sessions.open_csrf("login"),
                message=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with an API key: checks it like any API call, then sets the session cookie."""
    sessions = dashboard_of(request).sessions
    csrf = sessions.open_csrf("login")
    target = PREFIX
    try:
        form = await form_of(request)
        target = _safe_next(form.get("next"))
        if getattr(request.app.state, "keyring", None) is None:
            return RedirectResponse(target, status_code=303)
        sessions.check_open_csrf(form.get("csrf"), "login")
        key = form.get("key", "").strip()
        sessions.authenticate(request, key)
    except (Unauthenticated, Forbidden, InvalidRecord, RateLimited) as exc:
        return page(request, "login.html", None, status=exc.status_code, next=target, csrf=csrf, message=str(exc))
    response = RedirectResponse(target, status_code=303)
    sessions.issue(response, key, secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    sessions = dashboard_of(request).sessions
    viewer = sessions.viewer(request)
    if viewer is not None and viewer.via == "session":
        try:
            check_form(viewer, (await form_of(request)).get("csrf"), Scope.READ)
        except (Forbidden, InvalidRecord) as exc:
            return refuse(request, viewer, exc)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    Sessions.end(response)
    return response
