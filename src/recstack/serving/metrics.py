"""Prometheus metrics of one server process, in a registry of its own (so several apps in one process, as
in tests, never collide), plus a pure-ASGI middleware that times every request by route template.

The middleware labels by the matched route's path template (`/v1/users/{user_id}/recommendations`), never
by the raw path, so label cardinality stays bounded whatever ids clients send.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

# `*_created` series double the exposition without telling a dashboard anything.
disable_created_metrics()

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "recstack_http_requests", "HTTP requests by route, method and status.", ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "recstack_http_request_duration_seconds", "HTTP request latency by route, method and status.",
            ["route", "method", "status"], buckets=_BUCKETS, registry=r,
        )
        self.cache = Counter("recstack_cache_requests", "Result cache lookups by outcome.", ["result"], registry=r)
        self.answers = Counter(
            "recstack_recommendation_answers",
            "Recommendation answers built (result-cache hits not counted) by source: batch (a batch job's list, "
            "filtered), model (computed by the champion), trending.", ["source"], registry=r,
        )
        self.cache_up = Gauge("recstack_cache_up", "1 when the result cache answered its last call.", registry=r)
        self.model_version = Gauge(
            "recstack_model_version", "Version of the champion being served (0: none, popularity fallback).",
            ["model"], registry=r,
        )
        self.reloads = Counter("recstack_model_reloads", "Champion swaps by outcome.", ["outcome"], registry=r)
        self.events = Counter("recstack_events", "Posted events by outcome.", ["outcome"], registry=r)
        self.bus_up = Gauge("recstack_bus_up", "1 when the event bus took the last publish.", registry=r)
        self.outbox_pending = Gauge(
            "recstack_outbox_pending", "Messages kept in the local outbox until the bus answers.", registry=r
        )
        self.impressions_written = Gauge(
            "recstack_impressions_written", "Impressions (items of answers) this process wrote to the store.",
            registry=r,
        )
        self.impressions_dropped = Gauge(
            "recstack_impressions_dropped", "Answers whose impressions were dropped (buffer full, store refused).",
            registry=r,
        )
        self.cache_up.set(1)

    def set_model(self, name: str | None, version: int | None) -> None:
        self.model_version.clear()
        self.model_version.labels(model=name or "popularity").set(version or 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times HTTP requests; a request that raised counts as status 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            code = str(status[0])
            self.metrics.requests.labels(label, method, code).inc()
            self.metrics.latency.labels(label, method, code).observe(time.perf_counter() - started)
