"""`/metrics`: the Prometheus exposition (text); behind the admin scope when `protect_metrics` is set."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from recstack.serving.auth import Scope
from recstack.serving.deps import MetricsDep, SettingsDep, client_of, guard_of
from recstack.serving.metrics import CONTENT_TYPE_LATEST
from recstack.serving.routes.common import errors

__all__ = ["router"]

router = APIRouter(tags=["operations"])

_SAMPLE = '# HELP recstack_requests_total Requests answered.\n# TYPE recstack_requests_total counter\n'


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}, "example": _SAMPLE}},
              "description": "Prometheus text exposition (version 0.0.4)."},
        **errors(401, 403, 429),
    },
)
async def prometheus(request: Request, metrics: MetricsDep, settings: SettingsDep) -> Response:
    """Prometheus exposition of this process's metrics. Needs scope `admin` when the server sets
    `protect_metrics`; open otherwise."""
    if settings.protect_metrics:
        guard_of(request).admit(request.headers, client_of(request), Scope.ADMIN)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
