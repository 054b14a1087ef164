"""The HTTP API: `create_app(settings)` builds a FastAPI app whose lifespan opens the store and the cache,
loads the champion from the registry and starts the hot-reload thread.

Routes (OpenAPI at `/docs` and `/openapi.json`):
- `GET  /v1/users/{user_id}/recommendations?k=&category=&exclude=`
- `GET  /v1/items/{item_id}/similar?k=`
- `POST /v1/events` (one event, `{"events": [...]}` or a JSON list)
- `PUT  /v1/items/{item_id}`, `PUT /v1/users/{user_id}`
- `GET  /healthz`, `/readyz`, `/metrics`

Errors: every `RecstackError` maps to its status with `{"detail": message}`; request validation errors are
422 with the offending field named (`query.k: …`). Recommendation handlers are `async` and do their
(short, CPU-bound) work on the event loop: a thread hop would cost more than the work on two cores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import parse_qsl

import faiss
import pandas as pd
import sqlalchemy as sa
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from recstack import __version__
from recstack.config import Settings
from recstack.errors import InvalidRecord, RecstackError
from recstack.schema import MAX_ID_LENGTH, ValidationRules, validate_items, validate_users
from recstack.serving import data
from recstack.serving.events import record_events
from recstack.serving.feedback import FeedbackConfig
from recstack.serving.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from recstack.serving.recommender_service import Answer, RecommendationService
from recstack.serving.reload import ModelSource, Reloader
from recstack.serving.retrieval import RetrievalConfig
from recstack.serving.schemas import (
    EventBatch,
    EventIn,
    EventReport,
    ItemIn,
    Ready,
    RecommendationsOut,
    SimilarOut,
    UpsertResult,
    UserIn,
)
from recstack.storage import Store, open_store
from recstack.storage.cache import Cache, open_cache

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_NO_SOURCE: Any = object()
IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern="^[^\x00]+$")]
K = Annotated[int, Query(ge=1, le=1000, description="How many items to return.")]
_EVENT = TypeAdapter(EventIn)
_BATCH = TypeAdapter(EventBatch)
_EVENT_LIST = TypeAdapter(list[EventIn])


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _validation_message(errors: list[Any]) -> str:
    return "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors[:10])


def _answer(answer: Answer) -> Response:
    return Response(answer.body, media_type="application/json", headers=answer.headers)


def create_app(
    settings: Settings | None = None,
    *,
    model_source: ModelSource | None = _NO_SOURCE,
    store: Store | None = None,
    cache: Cache | None = None,
    reload_interval_s: float = 1.0,
    catalog_interval_s: float = 300.0,
    retrieval: RetrievalConfig | None = None,
    feedback: FeedbackConfig | None = None,
) -> FastAPI:
    """The API for `settings` (default: from the environment).

    `model_source` defaults to the MLflow registry of the settings; pass None to serve popularity only, or
    any object with `champion()` and `load(version)`. `store`/`cache` default to the settings' URLs.
    """
    settings = settings or Settings()
    metrics = Metrics()
    rules = ValidationRules(max_value=settings.max_value)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Requests search one query at a time: OpenMP workers would only spin against the event loop.
        faiss.omp_set_num_threads(1)
        the_store = store or open_store(settings.store_url)
        the_store.migrate()
        source = model_source
        if source is _NO_SOURCE:
            from recstack.registry import Registry

            source = Registry.from_settings(settings)
        service = RecommendationService(
            the_store,
            cache or open_cache(settings.cache_url),
            metrics,
            cache_ttl_s=settings.cache_ttl_s,
            feedback=feedback,
            retrieval=retrieval,
        )
        reloader = Reloader(service, source, reload_interval_s, catalog_interval_s)
        reloader.refresh_catalog()
        reloader.check()
        if service.model is None:
            metrics.set_model(None, None)
        reloader.start()
        app.state.service, app.state.reloader, app.state.store = service, reloader, the_store
        try:
            yield
        finally:
            reloader.stop()
            service.history.close()
            if store is None:
                the_store.close()

    app = FastAPI(
        title="recstack",
        version=__version__,
        summary="Real-time recommendations: retrieve, filter, rank, learn from feedback.",
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RecstackError)
    async def _recstack_error(request: Request, exc: RecstackError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(sa.exc.DataError)
    async def _data_error(request: Request, exc: sa.exc.DataError) -> JSONResponse:
        return JSONResponse({"detail": f"the store rejected a value: {exc.orig}"}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(list(exc.errors())), "errors": errors}, status_code=422)

    def service_of(request: Request) -> RecommendationService:
        return request.app.state.service  # type: ignore[no-any-return]

    @app.get("/v1/users/{user_id}/recommendations", response_model=RecommendationsOut, tags=["recommendations"])
    async def recommendations(
        request: Request,
        user_id: IdPath,
        k: K = 10,
        category: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, pattern="^[^\x00]*$")] = None,
        exclude: Annotated[list[str] | None, Query(description="Item ids to leave out (repeat or comma-separate).")]
        = None,
    ) -> Response:
        """The user's top-k items with scores, the model version, and why each item is there. Items the user
        has seen, unavailable items, other categories and excluded items never appear, even if fewer than k
        remain. Header `X-Recstack-Fallback` is set when the answer is popularity because no champion is
        loaded."""
        excluded = [part for value in exclude or [] for part in value.split(",") if part]
        return _answer(service_of(request).recommend(user_id, k, category, excluded))

    _add_fast_recommendations(app)

    @app.get("/v1/items/{item_id}/similar", response_model=SimilarOut, tags=["recommendations"])
    async def similar(request: Request, item_id: IdPath, k: K = 10) -> Response:
        """The k items most similar to `item_id` (cosine of the champion's item vectors, or its own
        similarity); unavailable items are left out. 404 for an unknown item."""
        return _answer(service_of(request).similar(item_id, k))

    @app.post(
        "/v1/events",
        response_model=EventReport,
        tags=["feedback"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/EventIn"},
                                {"$ref": "#/components/schemas/EventBatch"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}},
                            ]
                        }
                    }
                },
            }
        },
    )
    async def post_events(request: Request) -> Response:
        """Feedback: one event, `{"events": [...]}` or a list. The user's next answer reflects it at once.
        A single invalid event is a 422 naming the field; a batch answers 200 with a report per record
        (accepted, duplicate — the event_id was stored before — or rejected with the reason)."""
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRecord(f"body is not valid JSON: {exc}") from exc
        if isinstance(payload, dict):
            adapter: TypeAdapter[Any] = _BATCH if "events" in payload else _EVENT
        elif isinstance(payload, list):
            adapter = _EVENT_LIST
        else:
            raise InvalidRecord('body must be an event object, {"events": [...]} or a list of events')
        try:
            parsed = adapter.validate_python(payload)
        except ValidationError as exc:
            errors = [{"field": _field(("body", *e["loc"])), "message": e["msg"]} for e in exc.errors()]
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
            return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
        single = isinstance(parsed, EventIn)
        events: list[EventIn]
        if isinstance(parsed, EventIn):
            events = [parsed]
        elif isinstance(parsed, EventBatch):
            events = parsed.events
        else:
            events = list(parsed)
        if not events:
            raise InvalidRecord("events: the batch is empty")
        service = service_of(request)
        report, changed = record_events(
            service.store, events, rules, settings.unknown_users, settings.unknown_items
        )
        service.invalidate(changed)
        for outcome, n in (("accepted", report.accepted), ("duplicate", report.duplicates),
                           ("rejected", report.rejected)):
            if n:
                metrics.events.labels(outcome).inc(n)
        if single and report.rejected:
            raise InvalidRecord(str(report.records[0].reason))
        status = 201 if report.accepted and not report.rejected else 200
        return Response(report.model_dump_json(), status_code=status, media_type="application/json")

    @app.put("/v1/items/{item_id}", response_model=UpsertResult, tags=["catalogue"])
    async def put_item(request: Request, item_id: IdPath, item: ItemIn) -> UpsertResult:
        """Insert or replace a catalogue item. `available: false` removes it from every answer at once."""
        record = {"item_id": item_id, **item.model_dump(exclude={"attributes"}), "_location": "body"}
        record["available"] = "true" if item.available else "false"
        record["attributes"] = json.dumps(item.attributes) if item.attributes is not None else None
        checked = validate_items(pd.DataFrame([record]), rules)
        if checked.n_rejected:
            raise InvalidRecord(str(checked.rejected["reason"].iloc[0]))
        service = service_of(request)
        written = service.store.upsert_items(checked.accepted.drop(columns=["_location"]))
        catalog = service.catalog
        if catalog is not None:
            service.set_catalog(catalog.with_item(item_id, item.category, item.available, item.duration_s))
        content = service.new_items.content
        if content is not None:
            text = item.model_dump(include={"title", "category", "tags", "description"})
            service.new_items.content = content.with_item(item_id, text)
        return UpsertResult(id=item_id, created=bool(written.inserted))

    @app.put("/v1/users/{user_id}", response_model=UpsertResult, tags=["users"])
    async def put_user(request: Request, user_id: IdPath, user: UserIn) -> UpsertResult:
        """Insert or replace a user; `preferences` replaces the user's preference document."""
        record = {
            "user_id": user_id,
            "created_at": user.created_at,
            "attributes": json.dumps(user.attributes) if user.attributes is not None else None,
            "_location": "body",
        }
        checked = validate_users(pd.DataFrame([record]), rules)
        if checked.n_rejected:
            raise InvalidRecord(str(checked.rejected["reason"].iloc[0]))
        service = service_of(request)
        written = service.store.upsert_users(checked.accepted.drop(columns=["_location"]))
        if user.preferences is not None:
            service.store.put_preferences(user_id, user.preferences)
        service.invalidate([user_id])
        return UpsertResult(id=user_id, created=bool(written.inserted))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        """Ready to serve: model loaded (or popularity fallback), store reachable, cache reachable. 503 when
        the store is down; a down cache is reported but the server still answers (uncached)."""
        service = service_of(request)
        reloader: Reloader = request.app.state.reloader
        store_ok = data.ping(service.store)
        cache_ok = _ping(service.cache)
        service.metrics.cache_up.set(1 if cache_ok else 0)
        model = service.model
        detail: dict[str, str] = {}
        if model is None:
            detail["model"] = "no champion: serving popularity"
        if reloader.last_error:
            detail["reload"] = reloader.last_error
        if not cache_ok:
            detail["cache"] = "unreachable: answering uncached"
        body = Ready(
            ready=store_ok and service.catalog is not None,
            checks={"model": model is not None, "store": store_ok, "cache": cache_ok},
            model=model.kind if model else None,
            model_version=model.version if model else None,
            detail=detail,
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=True)
    async def prometheus() -> Response:
        """Prometheus exposition of this process's metrics."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


class _FastRecommendations:
    """The recommendation route's common case without FastAPI's per-request parameter machinery.

    FastAPI's dependency solving costs about as much as the whole retrieve-filter-rank path, so a request
    whose parameters are plainly valid (k a small integer, category and exclude plain strings, nothing
    repeated that must not be) is answered here; anything else goes to the declared FastAPI route, which
    stays the one in the OpenAPI schema and gives the same 422s as before.
    """

    _KNOWN = frozenset({"k", "category", "exclude"})

    def __init__(self, route: APIRoute) -> None:
        self.route = route

    def _parse(self, scope: Scope) -> tuple[str, int, str | None, list[str]] | None:
        user_id = scope["path_params"].get("user_id", "")
        if not 0 < len(user_id) <= MAX_ID_LENGTH or "\x00" in user_id:
            return None
        k, category = 10, None
        exclude: list[str] = []
        seen: set[str] = set()
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if name not in self._KNOWN or (name in seen and name != "exclude"):
                return None
            seen.add(name)
            if name == "k":
                if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 1000):
                    return None
                k = int(value)
            elif name == "category":
                if not 0 < len(value) <= MAX_ID_LENGTH or "\x00" in value:
                    return None
                category = value
            else:
                exclude.extend(part for part in value.split(",") if part)
        return user_id, k, category, exclude

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parsed = self._parse(scope)
        if parsed is None:
            scope["route"], scope["endpoint"] = self.route, self.route.endpoint
            await self.route.handle(scope, receive, send)
            return
        service: RecommendationService = scope["app"].state.service
        answer = service.recommend(*parsed)
        # What `Response(body, media_type="application/json", headers=...)` sends, without building one.
        headers = [
            (b"content-length", str(len(answer.body)).encode()),
            (b"content-type", b"application/json"),
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.items()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


class _FastRoute(Route):
    """A route that, like FastAPI's, leaves itself in the scope (the metrics label by its path template)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def _add_fast_recommendations(app: FastAPI) -> None:
    declared = next(
        r for r in app.router.routes if isinstance(r, APIRoute) and r.path == "/v1/users/{user_id}/recommendations"
    )
    fast = _FastRoute(declared.path, _FastRecommendations(declared), methods=["GET"], include_in_schema=False)
    fast.methods = {"GET"}  # as declared: no implicit HEAD
    app.router.routes.insert(app.router.routes.index(declared), fast)


def _ping(cache: Cache) -> bool:
    try:
        return cache.ping()
    except RecstackError:
        return False
