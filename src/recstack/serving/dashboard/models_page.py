"""The models page: every registered version with its metrics, champion and previous champion, a metric
comparison, the online positive-feedback rate per version; promote and roll back (admin scope)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from recstack.errors import InvalidRecord, NotFound, RecstackError
from recstack.serving.auth import Scope
from recstack.serving.dashboard import charts
from recstack.serving.dashboard.access import check_form
from recstack.serving.dashboard.web import PREFIX, dashboard_of, form_of, off_loop, page, refuse, viewer_or_login
from recstack.serving.reload import Reloader

__all__ = ["registry_versions", "router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

FEEDBACK_DAYS = 7
MAX_METRICS = 6
PREFERRED = ("ndcg@10", "recall@10", "precision@10", "map@10", "hit_rate@10", "coverage@10")


@dataclass(frozen=True)
class Rate:
    """Impressions of one version (None: the popularity fallback) and how many were followed by a positive."""

    version: int | None
    impressions: int
    positives: int
    rate: float


def registry_versions(reloader: Reloader) -> list[Any] | None:
    """Every registered version, newest first; None when the model source is not a registry."""
    versions = getattr(reloader.source, "versions", None)
    return None if versions is None else list(versions())


def _unit_metrics(versions: list[Any]) -> list[str]:
    """Metrics every value of which lies in [0, 1] (ratios share one axis), `@10` ones first."""
    names: dict[str, bool] = {}
    for version in versions:
        for name, value in version.metrics.items():
            ok = isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0
            names[name] = names.get(name, True) and ok
    chosen = [n for n, ok in names.items() if ok]
    first = {name: i for i, name in enumerate(PREFERRED)}
    chosen.sort(key=lambda n: (first.get(n, len(first)), not n.endswith("@10"), n))
    return chosen[:MAX_METRICS]


def _models_data(reloader: Reloader, window_s: float) -> dict[str, Any]:
    versions = registry_versions(reloader)
    store = reloader.service.store
    now = int(time.time() * 1000)
    rates = store.feedback_rates(now - FEEDBACK_DAYS * 86_400_000, now, int(window_s * 1000))
    feedback = [
        Rate(None if pd.isna(r["model_version"]) else int(r["model_version"]), int(r["impressions"]),
             int(r["positives"]), float(r["rate"]))
        for r in rates.to_dict("records")
    ]
    if not versions:
        return {"versions": versions or [], "metrics": [], "comparison": None, "feedback": feedback,
                "feedback_chart": None}
    shown = versions[:8]
    metrics = _unit_metrics(shown)
    comparison = charts.bar_chart(
        metrics, {f"v{v.version} {v.model_kind}": [float(v.metrics.get(m, math.nan)) for m in metrics] for v in shown},
        title="Offline metrics by version (holdout)", value_label="metric value (0 to 1, higher is better)",
    ) if metrics else None
    feedback_chart = charts.bar_chart(
        [f"v{f.version}" if f.version is not None else "popularity" for f in feedback],
        {"rate": [f.rate for f in feedback]}, title=f"Positive-feedback rate, last {FEEDBACK_DAYS} days",
        value_label=f"share of impressions followed by a positive event within {window_s / 60:g} min", percent=True,
    ) if feedback else None
    all_metrics = sorted({m for v in versions for m in v.metrics}, key=lambda n: (n not in metrics, n))
    return {"versions": versions, "metrics": all_metrics, "comparison": comparison, "feedback": feedback,
            "feedback_chart": feedback_chart}


@router.get("/models")
async def models(request: Request, done: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    board = dashboard_of(request)
    reloader = board.reloader(request)
    try:
        data = await off_loop(_models_data, reloader, board.settings.feedback_window_s)
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    serving = reloader.service.model
    previous = next((v for v in data["versions"] if "previous-champion" in v.aliases), None)
    return page(request, "models.html", viewer, serving=serving, previous=previous, done=done,
                registry=hasattr(reloader.source, "promote"), **data)


async def _act(request: Request, action: str) -> Response:
    viewer = viewer_or_login(request)
    if isinstance(viewer, Response):
        return viewer
    reloader = dashboard_of(request).reloader(request)
    source: Any = reloader.source
    try:
        form = await form_of(request)
        check_form(viewer, form.get("csrf"), Scope.ADMIN)
        if source is None or not hasattr(source, "promote"):
            raise NotFound("the model source is not a registry: nothing to promote or roll back")
        if action == "promote":
            raw = form.get("version", "")
            if not raw.isdigit():
                raise InvalidRecord("version: a registered version number")
            version = int(raw)
            changed = await off_loop(lambda: source.promote(version, force=True))
            done = f"v{version} is the champion" if changed else f"v{version} already was the champion"
        else:
            target = await off_loop(source.rollback)
            done = f"rolled back: v{target.version} is the champion"
        await off_loop(reloader.check)
    except RecstackError as exc:
        return refuse(request, viewer, exc)
    dashboard_of(request).memo.clear()
    return RedirectResponse(f"{PREFIX}/models?done={done.replace(' ', '+')}", status_code=303)


@router.post("/models/promote")
async def promote(request: Request) -> Response:
    """Make the form's `version` the champion (forced: a person decided); admin scope."""
    return await _act(request, "promote")


@router.post("/models/rollback")
async def rollback(request: Request) -> Response:
    """Make the previous champion the champion again; admin scope."""
    return await _act(request, "rollback")
