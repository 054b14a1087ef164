"""A one-minute soak of `recstack serve` in its own process: concurrent reads and events, the next champion
promoted half-way (swapped in from its prepared artefact); no request fails and memory stays flat."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from integration.serving_support import free_port, load, make_world, train
from recstack.registry import Registry
from recstack.serving.artefacts import prepare
from recstack.serving.data import HistoryReader, load_catalog
from recstack.storage import open_store
from recstack.testing.soak import soak

SOAK_S = float(os.environ.get("RECSTACK_SOAK_S", "60"))


def test_soak_with_a_promotion_half_way(tmp_path: Path) -> None:
    world = make_world()
    store = open_store(f"sqlite:///{tmp_path / 'recstack.db'}")
    store.migrate()
    load(store, world)
    tracking = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    registry = Registry(tracking, "recstack", cache_dir=tmp_path / "model-cache")
    first = registry.log(train(world, seed=1), metrics={"ndcg@10": 0.1})
    registry.promote(first.version, force=True)
    second = registry.log(train(world, seed=2), metrics={"ndcg@10": 0.2})
    # What the training job does after registering: the heavy work, so the swap is a file open.
    prepare(registry.serving_dir(second), registry.load(second), second.version, HistoryReader(store),
            load_catalog(store))
    store.close()
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")},
           "RECSTACK_HOME": str(tmp_path), "RECSTACK_CACHE_URL": "memory://", "RECSTACK_CACHE_TTL_S": "5",
           "RECSTACK_AUTH": "none",
           # The soak measures serving; two unpaced readers pass the default 1,000 requests a second per client.
           "RECSTACK_RATE_LIMIT_PER_S": "1e9", "RECSTACK_RATE_LIMIT_BURST": "1000000000"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "recstack"), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200 and ready.json()["checks"]["model"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server not ready in 120 s"
            time.sleep(0.3)
        users = sorted(world.interactions["user_id"].astype(str).unique().tolist())
        items = sorted(world.items["item_id"].astype(str).tolist())
        report = soak(base, server.pid, users, items, SOAK_S, promote=lambda: registry.promote(second.version),
                      readers=2, window_s=SOAK_S / 6, events_per_s=10)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert report.failed == 0, report.failure_examples[:5]
    assert report.requests["read"] > 100 and report.requests["event"] > 50
    assert report.promoted_at_s is not None
    assert report.versions_seen == [str(first.version), str(second.version)]
    assert len(report.p99_ms_per_window) == 6 and all(p == p for p in report.p99_ms_per_window)
    assert report.rss_growth <= 0.05, report.rss_kib
