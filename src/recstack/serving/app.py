"""The HTTP API: `create_app(settings)` builds a FastAPI app whose lifespan opens the store and the cache,
loads the champion from the registry and starts the hot-reload thread.

Routes live in `serving/routes/` (one router per resource; OpenAPI at `/docs` and `/openapi.json`, the
reference in docs/api.md). Every `/v1` route is guarded: an API key (`Authorization: Bearer` or
`X-API-Key`) whose scope covers the route, and the key's token bucket (`serving/guard.py`); `/healthz` and
`/readyz` are open, `/metrics` and `/docs` optionally behind the admin scope. With `auth: none` there are
no keys and every caller is an admin. Errors are `{"detail": …}` everywhere (`serving/handlers.py`).
Recommendation handlers are `async` and do their (short, CPU-bound) work on the event loop: a thread hop
would cost more than the work on two cores.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import faiss
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from recstack import __version__
from recstack.backends import scheme_of
from recstack.bus import Bus, open_bus
from recstack.config import Settings
from recstack.errors import RecstackError
from recstack.processing.online import OnlineState, open_online_state
from recstack.processing.stream import BatchReport, StreamProcessor
from recstack.schema import ValidationRules
from recstack.serving import contract, handlers
from recstack.serving.auth import KeyRing, Scope
from recstack.serving.dashboard import install_dashboard
from recstack.serving.deps import client_of, guard_of
from recstack.serving.fast import add_fast_recommendations
from recstack.serving.feedback import FeedbackConfig
from recstack.serving.guard import Guard
from recstack.serving.impressions import ImpressionLog
from recstack.serving.intake import EmbeddedStream, Intake
from recstack.serving.limits import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from recstack.serving.metrics import Metrics, MetricsMiddleware
from recstack.serving.middleware import BodyLimit, SecurityHeaders
from recstack.serving.recommender_service import RecommendationService
from recstack.serving.reload import ModelSource, Reloader
from recstack.serving.retrieval import RetrievalConfig
from recstack.serving.routes import events, health, items, keys, metrics, models, users
from recstack.storage import Store, open_store
from recstack.storage.cache import Cache, RedisCache, open_cache

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_NO_SOURCE: Any = object()


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
    the_metrics = Metrics()
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
        the_cache = cache or open_cache(settings.cache_url)
        service = RecommendationService(
            the_store,
            the_cache,
            the_metrics,
            cache_ttl_s=settings.cache_ttl_s,
            feedback=feedback,
            retrieval=retrieval,
            history_limit=settings.history_limit,
            online=the_online,
        )
        the_bus = bus or open_bus(settings.bus_url, partitions=settings.bus_partitions)
        intake = _intake(settings, the_bus, the_store, the_online, service, rules)
        the_metrics.bus_up.set_function(lambda: 1.0 if intake.sender.bus_up else 0.0)
        the_metrics.outbox_pending.set_function(lambda: float(intake.sender.pending))
        reloader = Reloader(service, source, reload_interval_s, catalog_interval_s)
        reloader.refresh_catalog()
        reloader.check()
        if service.model is None:
            the_metrics.set_model(None, None)
        reloader.start()
        if settings.log_impressions:
            impressions = service.impressions = ImpressionLog(the_store)
            the_metrics.impressions_written.set_function(lambda: float(impressions.written))
            the_metrics.impressions_dropped.set_function(lambda: float(impressions.dropped))
            impressions.start()
        keyring = KeyRing(the_store, ttl_s=settings.key_cache_ttl_s) if settings.auth == "keys" else None
        app.state.service, app.state.reloader, app.state.store = service, reloader, the_store
        app.state.intake, app.state.keyring = intake, keyring
        app.state.guard = Guard(keyring, _limiter(settings, the_cache))
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
            if service.feed is not None:
                service.feed.close()
            if bus is None:
                the_bus.close()
            if store is None:
                the_store.close()

    docs_open = not settings.protect_docs
    app = FastAPI(
        title="recstack",
        version=__version__,
        summary="Real-time recommendations: retrieve, filter, rank, learn from feedback.",
        description="Authentication, limits and the error schema: see docs/api.md.",
        lifespan=lifespan,
        docs_url="/docs" if docs_open else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs_open else None,
    )
    app.state.settings, app.state.metrics, app.state.keyring = settings, the_metrics, None
    app.add_middleware(MetricsMiddleware, metrics=the_metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"], max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    handlers.install(app)
    for router in (users.router, items.router, events.router, models.router, keys.router, health.router,
                   metrics.router):
        app.include_router(router)
    install_dashboard(app, settings)
    add_fast_recommendations(app, users.router, settings.max_k, settings.max_id_length)
    contract.finish_document(app, settings)
    if not docs_open:
        _guarded_docs(app)
    return app


def _guarded_docs(app: FastAPI) -> None:
    """`/openapi.json` and `/docs` behind the admin scope (`protect_docs`)."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        guard_of(request).admit(request.headers, client_of(request), Scope.ADMIN)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        guard_of(request).admit(request.headers, client_of(request), Scope.ADMIN)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="recstack")


def _limiter(settings: Settings, cache: Cache) -> RateLimiter:
    """Token buckets shared through the Redis cache when there is one, else in this process."""
    if isinstance(cache, RedisCache):
        return RedisRateLimiter(cache, settings.rate_limit_per_s, settings.rate_limit_burst)
    return MemoryRateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)


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
