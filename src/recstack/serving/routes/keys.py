"""`/v1/keys`: API keys over HTTP (admin): list, create (the key is in the answer, once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool

from recstack.errors import Conflict, NotFound
from recstack.serving.auth import KeyRing, Scope, issue_key
from recstack.serving.deps import AdminCaller, ServiceDep
from recstack.serving.routes.common import errors
from recstack.serving.schemas import KeyCreated, KeyIn, KeyOut
from recstack.storage.store import ApiKey

__all__ = ["router"]

router = APIRouter(prefix="/v1/keys", tags=["keys"])
KeyId = Annotated[str, Path(min_length=1, max_length=32, pattern="^[0-9a-z]+$", examples=["3f9a0c1d2e4b"])]
_ERRORS = errors(400, 401, 403, 413, 422, 429, 503)


def _out(key: ApiKey) -> KeyOut:
    return KeyOut(id=key.key_id, name=key.name, scope=key.scope, created_at=key.created_at, revoked_at=key.revoked_at)


@router.get("", response_model=list[KeyOut], responses=_ERRORS)
async def list_keys(service: ServiceDep, _: AdminCaller) -> list[KeyOut]:
    """Every key (never the key itself), revoked ones included. Needs scope `admin`."""
    return [_out(k) for k in await run_in_threadpool(service.store.api_keys)]


@router.post("", response_model=KeyCreated, status_code=201, responses=_ERRORS)
async def create_key(body: KeyIn, service: ServiceDep, _: AdminCaller) -> KeyCreated:
    """A new key of `scope`; `key` is shown in this answer only. Needs scope `admin`."""
    issued = await run_in_threadpool(issue_key, service.store, Scope.parse(body.scope), body.name or "")
    return KeyCreated(**_out(issued.record).model_dump(), key=issued.token)


@router.delete("/{key_id}", response_model=KeyOut, responses={**_ERRORS, **errors(404, 409)})
async def revoke_key(
    request: Request, key_id: KeyId,
    service: ServiceDep, caller: AdminCaller,
) -> KeyOut:
    """Revoke a key: this server refuses it at once, others within their key-cache TTL. 404 for an
    unknown or already revoked key; 409 for the caller's own key (so no admin locks itself out by
    mistake: revoke it with another admin key or `recstack keys revoke`). Needs scope `admin`."""
    if key_id == caller.key_id:
        raise Conflict("a key cannot revoke itself: use another admin key or `recstack keys revoke`")
    if not await run_in_threadpool(service.store.revoke_api_key, key_id):
        raise NotFound(f"no active key {key_id!r}")
    keyring: KeyRing | None = request.app.state.keyring
    if keyring is not None:
        keyring.forget()
    found = next((k for k in await run_in_threadpool(service.store.api_keys) if k.key_id == key_id), None)
    assert found is not None
    return _out(found)
