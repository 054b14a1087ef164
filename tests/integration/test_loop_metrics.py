"""The loop's metrics after real passes' decisions: promotions and rollbacks counted, training seconds only
for passes that retrained, and the champion read from the real (empty) registry."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import generate_latest

from recstack.jobs.loop import Decision, LoopConfig
from recstack.jobs.loop_metrics import LoopMetrics
from recstack.registry import Registry
from recstack.storage import open_store


def test_decisions_become_counters_and_gauges(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'recstack.db'}")
    store.migrate()
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", cache_dir=tmp_path / "cache")
    metrics = LoopMetrics()
    now = int(time.time() * 1000)
    metrics.observe([Decision("retrain", "not_triggered", "0 new events", None)], 0.2, registry, store,
                    LoopConfig(), now)
    metrics.observe([Decision("online", "rolled_back", "rate fell", 1, 2),
                     Decision("retrain", "promoted", "won", 3, 1)], 42.0, registry, store, LoopConfig(), now)
    metrics.failed()
    value = metrics.registry.get_sample_value
    assert value("recstack_loop_promotions_total") == 1 and value("recstack_loop_rollbacks_total") == 1
    assert value("recstack_loop_decisions_total", {"rule": "retrain", "decision": "not_triggered"}) == 1
    assert value("recstack_loop_training_seconds_count") == 1 and value("recstack_loop_training_seconds_sum") == 42.0
    assert value("recstack_loop_passes_total", {"outcome": "ok"}) == 2
    assert value("recstack_loop_passes_total", {"outcome": "failed"}) == 1
    assert value("recstack_loop_champion_version") == 0 and value("recstack_loop_champion_since_timestamp_seconds") == 0
    assert value("recstack_loop_last_pass_timestamp_seconds") == now / 1000
    assert b"recstack_loop_feedback_rate" in generate_latest(metrics.registry)
    store.close()
