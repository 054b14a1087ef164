"""What item and user upserts share."""

from __future__ import annotations

from fastapi.responses import Response

from recstack.config import Settings
from recstack.schema import ValidationRules
from recstack.serving.intake import Intake
from recstack.serving.schemas import UpsertResult

__all__ = ["rules_of", "upserted"]


def rules_of(settings: Settings) -> ValidationRules:
    return ValidationRules(max_value=settings.max_value)


def upserted(record_id: str, created: bool, intake: Intake) -> Response:
    body = UpsertResult(id=record_id, created=created).model_dump_json()
    return Response(body, status_code=200 if intake.applied_on_answer else 202, media_type="application/json")
