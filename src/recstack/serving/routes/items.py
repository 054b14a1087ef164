"""`/v1/items`: similar items (read) and catalogue upserts (write)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from recstack.errors import InvalidRecord
from recstack.processing.changes import check_change
from recstack.serving.deps import IntakeDep, ReadCaller, ServiceDep, SettingsDep, WriteCaller
from recstack.serving.routes.common import ERRORS, ItemPath, K, answer, errors, once, short
from recstack.serving.routes.upserts import rules_of, upserted
from recstack.serving.schemas import ItemIn, SimilarOut, UpsertResult

__all__ = ["router"]

router = APIRouter(prefix="/v1/items", tags=["catalogue"])


@router.get(
    "/{item_id}/similar", response_model=SimilarOut, responses={**ERRORS, **errors(404)}, tags=["recommendations"]
)
async def similar(
    request: Request, item_id: ItemPath, service: ServiceDep, settings: SettingsDep, _: ReadCaller, k: K = 10
) -> Response:
    """The k items most similar to `item_id` (cosine of the champion's item vectors, or its own
    similarity); unavailable items are left out. 404 for an unknown item. Needs scope `read`."""
    once(request, "k")
    short(settings, "item_id", item_id)
    if k > settings.max_k:
        raise InvalidRecord(f"query.k: at most {settings.max_k}")
    return answer(service.similar(item_id, k))


@router.put(
    "/{item_id}", response_model=UpsertResult,
    responses={202: {"model": UpsertResult, "description": "Queued on the bus; applied by the stream."}, **ERRORS},
)
async def put_item(
    item_id: ItemPath, item: ItemIn, service: ServiceDep, intake: IntakeDep, settings: SettingsDep, _: WriteCaller,
) -> Response:
    """Insert or replace a catalogue item. `available: false` removes it from every answer at once.
    200 when the change is applied by the time of the answer (embedded bus), 202 when queued. Needs scope
    `write`."""
    short(settings, "item_id", item_id)
    for name in ("title", "description"):
        text = getattr(item, name)
        if text is not None and len(text) > settings.max_text_length:
            raise InvalidRecord(f"body.{name}: at most {settings.max_text_length} characters")
    record = {"item_id": item_id, **item.model_dump()}
    row = check_change("item", record, rules_of(settings)).iloc[0].to_dict()
    created = item_id not in service.store.existing_ids("items", [item_id])
    await intake.change("item", record)
    service.apply_item(item_id, row)
    return upserted(item_id, created, intake)
