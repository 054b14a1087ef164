"""The web dashboard served by the API process under `/dashboard`: server-rendered pages (Jinja2), a few
lines of plain JavaScript for the live figures, SVG charts drawn on the server, and every asset shipped in
the package (it works with no internet).

Pages: overview (`/dashboard`), models, the user explorer (`/dashboard/users/{id}`), items, quarantine,
stream, and search. Access (`access.py`): a session cookie from an API key, or the key in a header; read
scope sees, write scope posts test events, admin scope promotes and rolls back.

`install_dashboard(app, settings)` is all an app needs.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from recstack.config import Settings
from recstack.serving.dashboard import explorer, models_page, operations, pages
from recstack.serving.dashboard.access import Sessions
from recstack.serving.dashboard.web import HERE, PREFIX, Dashboard

__all__ = ["PREFIX", "install_dashboard"]


def install_dashboard(app: FastAPI, settings: Settings) -> None:
    """Add the dashboard's routes and static files to `app` (its state is `app.state.dashboard`)."""
    app.state.dashboard = Dashboard(settings, Sessions(settings.session_secret))
    for module in (pages, models_page, explorer, operations):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
