"""The OpenAPI document, made to say exactly what this server does.

FastAPI's generated document is close; this finishes it: the three body shapes of `POST /v1/events` get
their schemas, the configured limits (`max_k`, `max_id_length`) replace the hard maxima, optional query parameters are
what they are (absent or a value, never null), the unused validation-error schemas
FastAPI adds go (every 4xx is `ErrorOut`), and with `auth: none` the security requirements and 401/403
answers go, since the server never sends them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from recstack.config import Settings
from recstack.serving.routes.events import BATCH

__all__ = ["finish_document"]

_AUTH_STATUSES = ("401", "403")


def finish_document(app: FastAPI, settings: Settings) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _finish(document, settings)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _not_null(parameter: dict[str, Any]) -> None:
    """An optional query parameter is absent, never JSON null: `anyOf: [X, null]` (what FastAPI writes for
    `X | None`) is just X, so clients and fuzzers do not send the text "null" for it."""
    schema = parameter.get("schema", {})
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (kept,) = [o for o in options if o != {"type": "null"}]
        del schema["anyOf"]
        schema.update(kept)


def _finish(document: dict[str, Any], settings: Settings) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    batch = BATCH.json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(batch.pop("$defs", {}))
    batch["properties"]["events"]["maxItems"] = settings.max_events_per_batch
    schemas["EventBatch"] = batch
    shapes = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    shapes["anyOf"][2]["maxItems"] = settings.max_events_per_batch
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    keyless = settings.auth == "none"
    if keyless:
        document["components"].pop("securitySchemes", None)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                _not_null(parameter)
                if parameter.get("name") == "k" and "schema" in parameter:
                    parameter["schema"]["maximum"] = settings.max_k
                if parameter.get("name") in ("user_id", "item_id") and parameter.get("in") == "path":
                    parameter["schema"]["maxLength"] = settings.max_id_length
            if keyless:
                operation.pop("security", None)
                for status in _AUTH_STATUSES:
                    operation.get("responses", {}).pop(status, None)
            elif path == "/metrics" and settings.protect_metrics:
                operation["security"] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
            elif path == "/metrics":
                for status in (*_AUTH_STATUSES, "429"):
                    operation.get("responses", {}).pop(status, None)
