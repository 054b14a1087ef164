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
import sqlalchemy as sa
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from recstack import __version__
from recstack.backends import scheme_of
from recstack.bus import Bus, open_bus
from recstack.config import Settings
from recstack.errors import InvalidRecord, RecstackError
from recstack.processing.changes import check_change
from recstack.processing.online import OnlineState, open_online_state
from recstack.processing.stream import BatchReport, StreamProcessor
from recstack.schema import MAX_ID_LENGTH, ValidationRules
from recstack.serving import data
from recstack.serving.dashboard import install_dashboard
from recstack.serving.events import take_events
from recstack.serving.feedback import FeedbackConfig
from recstack.serving.impressions import ImpressionLog
from recstack.serving.intake import EmbeddedStream, Intake
from recstack.serving.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from recstack.serving.recommender_service import Answer, RecommendationService
from recstack.serving.reload import ModelSource, Reloader
from recstack.serving.retrieval import RetrievalConfig
from recstack.serving.schemas import (
    ErrorOut,
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
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "The body could not be parsed."), (404, "No such item."),
        (422, "A field is invalid; `detail` names it."), (503, "A backend (store, catalogue) is unavailable."),
    )
}
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
    bus: Bus | None = None,
    online: OnlineState | None = None,
) -> FastAPI:
    """The API for `settings` (default: from the environment).

    `model_source` defaults to the MLflow registry of the settings; pass None to serve popularity only, or
    any object with `champion()` and `load(version)`. `store`/`cache`/`bus`/`online` default to the
    settings' URLs. With an in-process bus (`memory://`) the app also runs the stream worker.
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
        the_online = online or open_online_state(settings.online_state_url, the_store, settings.history_limit)
        service = RecommendationService(
            the_store,
            cache or open_cache(settings.cache_url),
            metrics,
            cache_ttl_s=settings.cache_ttl_s,
            feedback=feedback,
            retrieval=retrieval,
            history_limit=settings.history_limit,
            online=the_online,
        )
        the_bus = bus or open_bus(settings.bus_url, partitions=settings.bus_partitions)
        intake = _intake(settings, the_bus, the_store, the_online, service, rules)
        metrics.bus_up.set_function(lambda: 1.0 if intake.sender.bus_up else 0.0)
        metrics.outbox_pending.set_function(lambda: float(intake.sender.pending))
        reloader = Reloader(service, source, reload_interval_s, catalog_interval_s)
        reloader.refresh_catalog()
        reloader.check()
        if service.model is None:
            metrics.set_model(None, None)
        reloader.start()
        if settings.log_impressions:
            from recstack.storage.lake import Lake

            service.impressions = ImpressionLog(the_store, lake=Lake(settings.lake_root))
            service.impressions.start()
        app.state.service, app.state.reloader, app.state.store = service, reloader, the_store
        app.state.intake = intake
        try:
            yield
        finally:
            reloader.stop()
            if intake.embedded is not None:
                intake.embedded.stop()
            intake.sender.stop()
            if service.impressions is not None:
                service.impressions.stop()
            if online is None:
                the_online.close()
            service.reader.close()
            if bus is None:
                the_bus.close()
            if store is None:
                the_store.close()

    app = FastAPI(
        title="recstack",
        version=__version__,
        summary="Real-time recommendations: retrieve, filter, rank, learn from feedback.",
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_dashboard(app, settings)

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

    @app.get(
        "/v1/users/{user_id}/recommendations", response_model=RecommendationsOut, tags=["recommendations"],
        responses=ERRORS,
    )
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
    _document_event_bodies(app)

    @app.get("/v1/items/{item_id}/similar", response_model=SimilarOut, tags=["recommendations"], responses=ERRORS)
    async def similar(request: Request, item_id: IdPath, k: K = 10) -> Response:
        """The k items most similar to `item_id` (cosine of the champion's item vectors, or its own
        similarity); unavailable items are left out. 404 for an unknown item."""
        return _answer(service_of(request).similar(item_id, k))

    @app.post(
        "/v1/events",
        response_model=EventReport,
        status_code=202,
        responses=ERRORS,
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
        intake: Intake = request.app.state.intake
        taken = take_events(service.store, events, rules, settings.unknown_users, settings.unknown_items)
        report = taken.report
        if single and report.rejected:
            metrics.events.labels("rejected").inc()
            raise InvalidRecord(str(report.records[0].reason))
        delivery = await intake.events(taken.fresh)
        for outcome, n in (("accepted", report.accepted), ("duplicate", report.duplicates),
                           ("rejected", report.rejected)):
            if n:
                metrics.events.labels(outcome).inc(n)
        return Response(
            report.model_dump_json(), status_code=202, media_type="application/json",
            headers={"X-Recstack-Delivery": delivery},
        )

    @app.put(
        "/v1/items/{item_id}", response_model=UpsertResult, tags=["catalogue"],
        responses={202: {"model": UpsertResult, "description": "Queued on the bus; applied by the stream."}, **ERRORS},
    )
    async def put_item(request: Request, item_id: IdPath, item: ItemIn) -> Response:
        """Insert or replace a catalogue item. `available: false` removes it from every answer at once.
        200 when the change is applied by the time of the answer (embedded bus), 202 when it is queued."""
        record = {"item_id": item_id, **item.model_dump()}
        row = check_change("item", record, rules).iloc[0].to_dict()
        service = service_of(request)
        intake: Intake = request.app.state.intake
        created = item_id not in service.store.existing_ids("items", [item_id])
        await intake.change("item", record)
        service.apply_item(item_id, row)
        return _upserted(item_id, created, intake)

    @app.put(
        "/v1/users/{user_id}", response_model=UpsertResult, tags=["users"],
        responses={202: {"model": UpsertResult, "description": "Queued on the bus; applied by the stream."}, **ERRORS},
    )
    async def put_user(request: Request, user_id: IdPath, user: UserIn) -> Response:
        """Insert or replace a user; `preferences` replaces the user's preference document."""
        record = {"user_id": user_id, "created_at": user.created_at, "attributes": user.attributes}
        check_change("user", record, rules)
        service = service_of(request)
        intake: Intake = request.app.state.intake
        created = user_id not in service.store.existing_ids("users", [user_id])
        await intake.change("user", record, user.preferences)
        return _upserted(user_id, created, intake)

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
        intake: Intake = request.app.state.intake
        bus_ok = intake.sender.bus_up
        online_ok = service.online is None or service.online.ping()
        model = service.model
        detail: dict[str, str] = {}
        if model is None:
            detail["model"] = "no champion: serving popularity"
        if reloader.last_error:
            detail["reload"] = reloader.last_error
        if not cache_ok:
            detail["cache"] = "unreachable: answering uncached"
        if not bus_ok:
            detail["bus"] = f"unreachable: {intake.sender.pending} message(s) kept in the outbox until it answers"
        if not online_ok:
            detail["online"] = "online state unreachable: reading history from the store"
        body = Ready(
            ready=store_ok and service.catalog is not None,
            checks={"model": model is not None, "store": store_ok, "cache": cache_ok, "bus": bus_ok,
                    "online": online_ok},
            model=model.kind if model else None,
            model_version=model.version if model else None,
            detail=detail,
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
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


def _document_event_bodies(app: FastAPI) -> None:
    """`POST /v1/events` parses its body itself (three shapes); put the shapes it names into the document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            batch = _BATCH.json_schema(ref_template="#/components/schemas/{model}")
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(batch.pop("$defs", {}))
            schemas["EventBatch"] = batch
        return app.openapi_schema or document

    app.openapi = openapi  # type: ignore[method-assign]


def _upserted(record_id: str, created: bool, intake: Intake) -> Response:
    body = UpsertResult(id=record_id, created=created).model_dump_json()
    return Response(body, status_code=200 if intake.applied_on_answer else 202, media_type="application/json")


def _intake(
    settings: Settings, bus: Bus, store: Store, online: OnlineState, service: RecommendationService,
    rules: ValidationRules,
) -> Intake:
    """The publisher (with its outbox) and, for an in-process bus, the stream worker of this process."""
    from recstack.bus.outbox import Outbox, Publisher

    try:
        bus.ensure_topics(settings.topics.all())
    except RecstackError as exc:  # a broker down at start-up only delays delivery: the outbox keeps events
        logger.warning("event bus not reachable at start-up: %s", exc)
    sender = Publisher(bus, Outbox(settings.outbox_dir))
    sender.start()
    embedded = None
    if scheme_of(bus.url) == "memory":
        processor = StreamProcessor(
            bus, store, online, topics=settings.topics, group=settings.stream_group, rules=rules,
            unknown_users=settings.unknown_users, unknown_items=settings.unknown_items, cache=service.cache,
            cache_ttl_s=settings.cache_ttl_s, batch_size=settings.stream_batch_size, poll_timeout_s=0.2,
        )

        def applied(report: BatchReport) -> None:
            for change in report.changes:
                if change.kind == "item":
                    service.apply_item(change.record_id, change.row)

        embedded = EmbeddedStream(processor, applied)
        embedded.start()
    return Intake(sender, settings.topics, embedded)


def _ping(cache: Cache) -> bool:
    try:
        return cache.ping()
    except RecstackError:
        return False
