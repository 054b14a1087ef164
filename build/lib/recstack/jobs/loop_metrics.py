"""Prometheus metrics of the feedback loop (`recstack loop --metrics-port`, or pushed by `--once --pushgateway`).

Each pass records its decisions (promotions and rollbacks are what the alerts and dashboards watch), how
long a pass that retrained took, which version is champion and since when (a stale champion alerts), and
the online positive-feedback rate of every model version served within the rollback window, measured on
matured impressions only (those whose feedback window has closed), like the online rule itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from recstack.jobs.loop import Decision, LoopConfig
    from recstack.registry import Registry
    from recstack.storage.store import Store

__all__ = ["LoopMetrics"]

logger = logging.getLogger(__name__)

_TRAINING_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)


class LoopMetrics:
    """The loop's metrics in a registry of their own, so tests and several loops in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.passes = Counter("recstack_loop_passes", "Loop passes by outcome (ok, failed).", ["outcome"], registry=r)
        self.decisions = Counter(
            "recstack_loop_decisions", "Loop decisions by rule and kind.", ["rule", "decision"], registry=r
        )
        self.promotions = Counter("recstack_loop_promotions", "Challengers promoted to champion.", registry=r)
        self.rollbacks = Counter("recstack_loop_rollbacks", "Champions rolled back by the online rule.", registry=r)
        self.training_seconds = Histogram(
            "recstack_loop_training_seconds", "Seconds of a pass that retrained (snapshot, fits, scoring, register).",
            buckets=_TRAINING_BUCKETS, registry=r,
        )
        self.champion_version = Gauge(
            "recstack_loop_champion_version", "Champion version after the last pass (0: no champion).", registry=r
        )
        self.champion_since = Gauge(
            "recstack_loop_champion_since_timestamp_seconds",
            "When the champion became champion, Unix seconds (0: no champion or unknown).", registry=r,
        )
        self.last_pass = Gauge(
            "recstack_loop_last_pass_timestamp_seconds", "When the last successful pass ended, Unix seconds.",
            registry=r,
        )
        self.feedback_rate = Gauge(
            "recstack_loop_feedback_rate",
            "Positive-feedback rate of matured impressions in the rollback window, per model version.",
            ["version"], registry=r,
        )
        self.feedback_impressions = Gauge(
            "recstack_loop_feedback_impressions", "Matured impressions in the rollback window, per model version.",
            ["version"], registry=r,
        )

    def failed(self) -> None:
        self.passes.labels("failed").inc()

    def observe(
        self,
        decisions: Sequence[Decision],
        seconds: float,
        registry: Registry,
        store: Store,
        config: LoopConfig,
        now_ms: int,
    ) -> None:
        """Record one successful pass of `seconds` that made `decisions`, then read the champion and the
        per-version feedback rates as they stand after it."""
        self.passes.labels("ok").inc()
        for decision in decisions:
            self.decisions.labels(decision.rule, decision.kind).inc()
            if decision.kind == "promoted":
                self.promotions.inc()
            elif decision.kind == "rolled_back":
                self.rollbacks.inc()
        if any(d.rule == "retrain" and d.kind != "not_triggered" for d in decisions):
            self.training_seconds.observe(seconds)
        champion = registry.champion()
        self.champion_version.set(champion.version if champion is not None else 0)
        since = champion.champion_since_ms if champion is not None else None
        self.champion_since.set((since or 0) / 1000)
        self.last_pass.set(now_ms / 1000)
        self._feedback(store, config, now_ms)

    def _feedback(self, store: Store, config: LoopConfig, now_ms: int) -> None:
        window_ms = int(config.feedback_window_s * 1000)
        start, end = now_ms - int(config.rollback_window_s * 1000), now_ms - window_ms
        frame = store.feedback_rates(start, end, window_ms, config.positive) if end > start else None
        self.feedback_rate.clear()
        self.feedback_impressions.clear()
        if frame is None:
            return
        for row in frame.itertuples(index=False):
            label = "popularity" if pd.isna(row.model_version) else str(int(row.model_version))
            self.feedback_rate.labels(label).set(float(row.rate))
            self.feedback_impressions.labels(label).set(float(row.impressions))
