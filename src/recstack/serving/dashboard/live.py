"""Live figures from the process's own Prometheus metrics: API requests/s, latency quantiles, cache hit
rate, errors; and the in-process stream worker's lag, events/s and dead letters.

Counters only grow, so rates need two readings: `LiveFigures` keeps readings of the last minute and
reports each figure over the span between the oldest and now (since start-up on the first reading).
Only the API's own routes (`/v1/…`) count: the dashboard's pages are not traffic.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

__all__ = ["LiveFigures", "Reading", "quantile", "stream_figures"]

WINDOW_S = 60.0


@dataclass(frozen=True)
class Reading:
    """Cumulative API counters at one moment (monotonic seconds)."""

    at: float
    requests: float
    errors: float
    buckets: dict[float, float]
    cache_hits: float
    cache_misses: float


def _api_route(labels: dict[str, str]) -> bool:
    return labels.get("route", "").startswith("/v1/")


def read(registry: CollectorRegistry, at: float | None = None) -> Reading:
    """The API counters of `registry` now."""
    requests = errors = hits = misses = 0.0
    buckets: dict[float, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "recstack_http_requests_total" and _api_route(labels):
                requests += value
                if labels.get("status", "").startswith("5"):
                    errors += value
            elif name == "recstack_http_request_duration_seconds_bucket" and _api_route(labels):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
            elif name == "recstack_cache_requests_total":
                if labels.get("result") == "hit":
                    hits += value
                elif labels.get("result") == "miss":
                    misses += value
    return Reading(time.monotonic() if at is None else at, requests, errors, buckets, hits, misses)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram (bucket upper bound → count), interpolated linearly within
    the bucket it falls in, as Prometheus's `histogram_quantile` does; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            share = (rank - previous_count) / ((count - previous_count) or 1.0)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return previous_bound


@dataclass
class LiveFigures:
    """Readings of one registry; `figures()` adds a reading and summarises the last `window_s` seconds."""

    registry: CollectorRegistry
    window_s: float = WINDOW_S
    started: float = field(default_factory=time.monotonic)
    _readings: deque[Reading] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def figures(self) -> dict[str, Any]:
        now = read(self.registry)
        with self._lock:
            while self._readings and now.at - self._readings[0].at > self.window_s:
                self._readings.popleft()
            base = self._readings[0] if self._readings else Reading(self.started, 0.0, 0.0, {}, 0.0, 0.0)
            if not self._readings or now.at - self._readings[-1].at >= 1.0:
                self._readings.append(now)
        span = max(now.at - base.at, 1e-6)
        window = {b: now.buckets[b] - base.buckets.get(b, 0.0) for b in now.buckets}
        if not any(window.values()):
            window = now.buckets
        lookups = (now.cache_hits - base.cache_hits) + (now.cache_misses - base.cache_misses)
        total_lookups = now.cache_hits + now.cache_misses
        hit_rate = ((now.cache_hits - base.cache_hits) / lookups if lookups
                    else now.cache_hits / total_lookups if total_lookups else None)
        p50, p99 = quantile(window, 0.5), quantile(window, 0.99)
        return {
            "window_s": round(span, 1),
            "requests_per_s": round((now.requests - base.requests) / span, 2),
            "requests_total": int(now.requests),
            "errors_total": int(now.errors),
            "errors_per_s": round((now.errors - base.errors) / span, 3),
            "p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p99_ms": None if p99 is None else round(p99 * 1000, 2),
            "cache_hit_rate": None if hit_rate is None else round(hit_rate, 4),
        }


def stream_figures(registry: CollectorRegistry) -> dict[str, float]:
    """The stream processor's gauges and counters (`processing.stream.StreamMetrics`), by short name."""
    wanted = {
        "recstack_stream_consumer_lag": "lag",
        "recstack_stream_events_per_second": "events_per_s",
        "recstack_stream_dead_letters_total": "dead_letters",
        "recstack_stream_catalog_changes_total": "catalog_changes",
        "recstack_stream_batch_failures_total": "batch_failures",
    }
    out: dict[str, float] = {name: 0.0 for name in wanted.values()}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in wanted:
                out[wanted[sample.name]] = float(sample.value)
            elif sample.name == "recstack_stream_events_total":
                out[f"events_{sample.labels.get('outcome', 'other')}"] = float(sample.value)
    return out
