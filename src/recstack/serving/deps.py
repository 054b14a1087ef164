"""FastAPI dependencies and their aliases, as the full-stack template lays them out: a route names what it
needs (`service: ServiceDep`, `caller: WriteCaller`) instead of reaching into `request.app.state`.

`require(scope)` is the auth dependency: it yields the `Caller` or raises 401 (no or bad key), 403 (scope
too low) or 429 (rate limit). The app keeps the guard in `app.state.guard` and the key ring in
`app.state.keyring` (None with `auth: none`, where every caller is an admin).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from recstack.config import Settings
from recstack.serving.auth import Caller, Scope
from recstack.serving.guard import Guard
from recstack.serving.intake import Intake
from recstack.serving.metrics import Metrics
from recstack.serving.recommender_service import RecommendationService
from recstack.serving.reload import Reloader

__all__ = [
    "AdminCaller",
    "IntakeDep",
    "MetricsDep",
    "ReadCaller",
    "ReloaderDep",
    "ServiceDep",
    "SettingsDep",
    "WriteCaller",
    "client_of",
    "guard_of",
    "require",
]

# Declared so the OpenAPI document says how to authenticate; the guard reads the headers itself.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer rk_…`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: rk_…`")


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def guard_of(request: Request) -> Guard:
    guard: Guard | None = getattr(request.app.state, "guard", None)
    if guard is None:  # an app assembled without create_app: authenticate with its key ring, no rate limit
        guard = Guard(getattr(request.app.state, "keyring", None), None)
    return guard


def require(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency yielding the request's Caller when its key has at least `scope`."""

    async def caller(
        request: Request,
        _bearer_key: Annotated[object, Security(_bearer)] = None,
        _header_key: Annotated[object, Security(_api_key)] = None,
    ) -> Caller:
        return guard_of(request).admit(request.headers, client_of(request), scope)

    caller.__name__ = f"require_{scope.label}"
    return caller


def _service(request: Request) -> RecommendationService:
    return request.app.state.service  # type: ignore[no-any-return]


def _intake(request: Request) -> Intake:
    return request.app.state.intake  # type: ignore[no-any-return]


def _reloader(request: Request) -> Reloader:
    return request.app.state.reloader  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


ReadCaller = Annotated[Caller, Depends(require(Scope.READ))]
WriteCaller = Annotated[Caller, Depends(require(Scope.WRITE))]
AdminCaller = Annotated[Caller, Depends(require(Scope.ADMIN))]
ServiceDep = Annotated[RecommendationService, Depends(_service)]
IntakeDep = Annotated[Intake, Depends(_intake)]
ReloaderDep = Annotated[Reloader, Depends(_reloader)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
