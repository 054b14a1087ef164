"""`/v1/users`: a user's recommendations (read) and user upserts (write)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from recstack.errors import InvalidRecord
from recstack.processing.changes import check_change
from recstack.schema import MAX_ID_LENGTH
from recstack.serving.deps import IntakeDep, ReadCaller, ServiceDep, SettingsDep, WriteCaller
from recstack.serving.routes.common import ERRORS, K, UserPath, answer, errors, once, short
from recstack.serving.routes.upserts import rules_of, upserted
from recstack.serving.schemas import RecommendationsOut, UpsertResult, UserIn

__all__ = ["router"]

router = APIRouter(prefix="/v1/users", tags=["users"])

Category = Annotated[str | None, Query(max_length=MAX_ID_LENGTH, pattern="^[^\x00]*$")]
Exclude = Annotated[
    list[str] | None, Query(description="Item ids to leave out (repeat or comma-separate).", max_length=1000)
]


@router.get(
    "/{user_id}/recommendations", response_model=RecommendationsOut, responses={**ERRORS, **errors(404)},
    tags=["recommendations"],
)
async def recommendations(
    request: Request, user_id: UserPath, service: ServiceDep, settings: SettingsDep, _: ReadCaller,
    k: K = 10, category: Category = None, exclude: Exclude = None,
) -> Response:
    """The user's top-k items with scores, the model version, and why each item is there. Items the user
    has seen, unavailable items, other categories and excluded items never appear, even if fewer than k
    remain. Header `X-Recstack-Fallback` is set when the answer is popularity because no champion is
    loaded. Needs scope `read`."""
    once(request, "k", "category")
    short(settings, "user_id", user_id)
    if k > settings.max_k:
        raise InvalidRecord(f"query.k: at most {settings.max_k}")
    excluded = [part for value in exclude or [] for part in value.split(",") if part]
    return answer(service.recommend(user_id, k, category, excluded))


@router.put(
    "/{user_id}", response_model=UpsertResult,
    responses={202: {"model": UpsertResult, "description": "Queued on the bus; applied by the stream."}, **ERRORS},
)
async def put_user(
    user_id: UserPath, user: UserIn, service: ServiceDep, intake: IntakeDep, settings: SettingsDep, _: WriteCaller,
) -> Response:
    """Insert or replace a user; `preferences` replaces the user's preference document. 200 when applied
    by the time of the answer (embedded bus), 202 when queued. Needs scope `write`."""
    short(settings, "user_id", user_id)
    record = {"user_id": user_id, "created_at": user.created_at, "attributes": user.attributes}
    check_change("user", record, rules_of(settings))
    created = user_id not in service.store.existing_ids("users", [user_id])
    await intake.change("user", record, user.preferences)
    return upserted(user_id, created, intake)
