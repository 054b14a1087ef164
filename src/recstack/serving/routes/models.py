"""`/v1/models`: the registry's versions, promotion and rollback over HTTP (admin). The server switches to
the new champion before answering; other servers follow on their next reload check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from recstack.errors import NotFound
from recstack.serving.deps import AdminCaller, ReloaderDep
from recstack.serving.routes.common import errors
from recstack.serving.schemas import ModelDecision, ModelVersionOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"])
_ERRORS = errors(401, 403, 404, 422, 429, 503)


def _registry(reloader: Any) -> Any:
    source = reloader.source
    if source is None or not hasattr(source, "promote") or not hasattr(source, "versions"):
        raise NotFound("this server has no model registry")
    return source


def _out(version: Any) -> ModelVersionOut:
    return ModelVersionOut(
        version=version.version, kind=version.model_kind, champion=version.is_champion,
        metrics={k: v for k, v in version.metrics.items() if v == v and abs(v) != float("inf")},
        created_at=version.created_at.isoformat(),
    )


@router.get("", response_model=list[ModelVersionOut], responses=_ERRORS)
async def list_models(reloader: ReloaderDep, _: AdminCaller) -> list[ModelVersionOut]:
    """Every registered version, newest first, with its metrics and whether it is the champion. Needs
    scope `admin`."""
    registry = _registry(reloader)
    return [_out(v) for v in await run_in_threadpool(registry.versions)]


@router.post("/{version}/promote", response_model=ModelDecision, responses=_ERRORS)
async def promote(
    version: Annotated[int, Path(ge=1, le=2**31 - 1, examples=[3])], reloader: ReloaderDep, _: AdminCaller,
    force: Annotated[bool, Query(description="Promote even if it does not beat the champion.")] = False,
) -> ModelDecision:
    """Make `version` the champion if it beats the current one on the champion metric (or with `force`).
    `changed` is false when it did not (or already is the champion). Needs scope `admin`."""
    registry = _registry(reloader)
    changed = await run_in_threadpool(registry.promote, version, force=force)
    if changed:
        await run_in_threadpool(reloader.check)
    return ModelDecision(changed=changed, champion=_out(await run_in_threadpool(registry.get, version)))


@router.post("/rollback", response_model=ModelDecision, responses=_ERRORS)
async def rollback(reloader: ReloaderDep, _: AdminCaller) -> ModelDecision:
    """Make the previous champion the champion again (a second rollback undoes the first); 404 when there
    is none. Needs scope `admin`."""
    registry = _registry(reloader)
    restored = await run_in_threadpool(registry.rollback)
    await run_in_threadpool(reloader.check)
    return ModelDecision(changed=True, champion=_out(restored))
