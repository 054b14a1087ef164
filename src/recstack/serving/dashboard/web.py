"""What every dashboard page shares: the templates, the per-app dashboard state, the viewer check, and
how a page, a refusal or an error is rendered (HTML with the right status, never a 500 for bad input).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from recstack import __version__
from recstack.config import Settings
from recstack.errors import InvalidRecord, RecstackError
from recstack.serving.dashboard.access import Sessions, Viewer
from recstack.serving.dashboard.charts import compact, date_of
from recstack.serving.dashboard.live import LiveFigures
from recstack.serving.dashboard.previews import Previews
from recstack.serving.dashboard.queries import Memo
from recstack.serving.recommender_service import RecommendationService
from recstack.serving.reload import Reloader

__all__ = [
    "PREFIX", "Dashboard", "dashboard_of", "form_of", "off_loop", "page", "refuse", "templates", "viewer_or_login",
]

T = TypeVar("T")
PREFIX = "/dashboard"
HERE = Path(__file__).parent
MAX_FORM_BYTES = 16_384
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["seg"] = lambda value: quote(str(value), safe="")
templates.env.filters["date"] = date_of
templates.env.filters["compact"] = compact
templates.env.globals["version"] = __version__
templates.env.globals["base"] = PREFIX


@dataclass
class Dashboard:
    """The dashboard's state in one app: sessions, previews, memoised aggregates, live figures."""

    settings: Settings
    sessions: Sessions
    previews: Previews = field(default_factory=Previews)
    memo: Memo = field(default_factory=Memo)
    live: LiveFigures | None = None
    started: float = field(default_factory=time.monotonic)

    def service(self, request: Request) -> RecommendationService:
        return request.app.state.service  # type: ignore[no-any-return]

    def reloader(self, request: Request) -> Reloader:
        return request.app.state.reloader  # type: ignore[no-any-return]

    def figures(self, request: Request) -> dict[str, Any]:
        if self.live is None:
            self.live = LiveFigures(self.service(request).metrics.registry, started=self.started)
        return self.live.figures()


def dashboard_of(request: Request) -> Dashboard:
    return request.app.state.dashboard  # type: ignore[no-any-return]


def viewer_or_login(request: Request) -> Viewer | Response:
    """The viewer, or the redirect to the sign-in page for a browser without a session."""
    viewer = dashboard_of(request).sessions.viewer(request)
    if viewer is not None:
        return viewer
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def page(request: Request, name: str, viewer: Viewer | None, status: int = 200, **context: Any) -> Response:
    """Render template `name` for `viewer` (None: signed out), with the security headers."""
    response = templates.TemplateResponse(
        request, name, {"viewer": viewer, "path": request.url.path, **context}, status_code=status,
    )
    return _secure(response)


def refuse(request: Request, viewer: Viewer | None, exc: RecstackError) -> Response:
    """An error page with the error's status (403 for a scope too low, 404, 422, 503 …)."""
    return page(request, "error.html", viewer, status=exc.status_code, message=str(exc),
                status_code=exc.status_code)


async def form_of(request: Request) -> dict[str, str]:
    """The `application/x-www-form-urlencoded` body (at most `MAX_FORM_BYTES`); the last value of a field
    wins. `InvalidRecord` for another content type or a body too large."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidRecord("the dashboard's forms are sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InvalidRecord(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord("the form is not UTF-8") from exc
    return {name: value for name, value in parse_qsl(text, keep_blank_values=True) if "\x00" not in value}


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """Run a store read or a model load on a worker thread: the event loop keeps answering the API."""
    return await asyncio.to_thread(function, *args)
