"""The one place errors become HTTP answers, all in the `ErrorOut` schema.

A `RecstackError` keeps its status and headers (`WWW-Authenticate`, `Retry-After`); its message goes out
for 4xx (it names the field or the rule) and is replaced by a fixed text for 5xx, whose real cause (often a
driver's message with host names) goes to the log only. Anything unexpected is a logged 500 with a fixed
text: no stack trace or internal message ever reaches a client.
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from recstack.errors import RecstackError
from recstack.serving.schemas import ErrorOut, validation_body

__all__ = ["error_response", "install"]

logger = logging.getLogger(__name__)

_PUBLIC_5XX = {503: "service unavailable: a backend did not answer; retry shortly"}


def error_response(exc: RecstackError) -> JSONResponse:
    """The answer for `exc` (what the exception handler and the fast path both send)."""
    status = exc.status_code
    detail = str(exc) if status < 500 else _PUBLIC_5XX.get(status, "internal error")
    return JSONResponse({"detail": detail}, status_code=status, headers=exc.headers)


class _AllowedMethods:
    """Every documented method of the path a request named: a 405's `Allow`. (Starlette's lists only the
    methods of the first route that matched the path, not of every route on it.)"""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._paths: list[tuple[re.Pattern[str], str]] | None = None

    def __call__(self, path: str) -> str | None:
        if self._paths is None:
            self._paths = [
                (compile_path(template)[0], ", ".join(sorted(m.upper() for m in operations)))
                for template, operations in self.app.openapi().get("paths", {}).items()
            ]
        return next((methods for pattern, methods in self._paths if pattern.match(path)), None)


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(RecstackError)
    async def _recstack_error(request: Request, exc: RecstackError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(exc)

    @app.exception_handler(sa.exc.DataError)
    async def _data_error(request: Request, exc: sa.exc.DataError) -> JSONResponse:
        logger.info("%s %s: the store rejected a value: %s", request.method, request.url.path, exc.orig)
        return JSONResponse({"detail": "body: a value is outside what the store can hold"}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    allowed = _AllowedMethods(app)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        body = ErrorOut(detail=detail).model_dump(exclude_none=True)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed(request.url.path) or headers.get("Allow", "")
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)
