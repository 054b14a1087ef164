"""`/healthz` and `/readyz`: open to every caller, for probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from recstack.errors import RecstackError
from recstack.serving import data
from recstack.serving.deps import IntakeDep, ReloaderDep, ServiceDep
from recstack.serving.schemas import Health, Ready
from recstack.storage.cache import Cache

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers (liveness)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready, "description": "Not ready."}})
async def readyz(service: ServiceDep, reloader: ReloaderDep, intake: IntakeDep) -> JSONResponse:
    """Ready to serve: model loaded (or popularity fallback), store reachable, cache reachable. 503 when
    the store is down; a down cache is reported but the server still answers (uncached)."""
    store_ok = data.ping(service.store)
    cache_ok = _ping(service.cache)
    service.metrics.cache_up.set(1 if cache_ok else 0)
    bus_ok = intake.sender.bus_up
    online_ok = service.online is None or service.online.ping()
    model = service.model
    detail: dict[str, str] = {}
    if model is None:
        detail["model"] = "no champion: serving popularity"
    if reloader.last_error:
        detail["reload"] = "the last reload failed (see the server log)"
    if not cache_ok:
        detail["cache"] = "unreachable: answering uncached"
    if not bus_ok:
        detail["bus"] = f"unreachable: {intake.sender.pending} message(s) kept in the outbox until it answers"
    if not online_ok:
        detail["online"] = "online state unreachable: reading history from the store"
    body = Ready(
        ready=store_ok and service.catalog is not None,
        checks={"model": model is not None, "store": store_ok, "cache": cache_ok, "bus": bus_ok, "online": online_ok},
        model=model.kind if model else None,
        model_version=model.version if model else None,
        detail=detail,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


def _ping(cache: Cache) -> bool:
    try:
        return cache.ping()
    except RecstackError:
        return False
