"""Hot reload against the real MLflow registry: promoting a champion swaps it into a running server while a
client keeps it busy, and not one request fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from integration.serving_support import load, make_world, running, train
from recstack.config import Settings
from recstack.registry import Registry
from recstack.serving.app import create_app
from recstack.storage import open_store


def test_promoting_a_champion_swaps_it_in_without_a_failed_request(tmp_path: Path, sqlite_url: str) -> None:
    world = make_world()
    store = open_store(sqlite_url)
    store.migrate()
    load(store, world)
    store.close()
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", "reload-test", cache_dir=tmp_path / "models")
    first = registry.log(train(world, seed=1), metrics={"ndcg@10": 0.1})
    assert registry.promote(first.version)
    settings = Settings(home=tmp_path, database_url=sqlite_url, auth="none")
    app = create_app(settings, model_source=registry, reload_interval_s=0.2)
    users = world.interactions["user_id"].unique()[:50].tolist()
    failures: list[str] = []
    versions: list[int] = []
    stop = threading.Event()

    def hammer(base: str, offset: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            n = offset
            while not stop.is_set():
                user = users[n % len(users)]
                n += 1
                try:
                    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 20})
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200 or len(response.json()["items"]) != 20:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    versions.append(response.json()["model_version"])

    with running(app) as base:
        clients = [threading.Thread(target=hammer, args=(base, i * 7)) for i in range(2)]
        for thread in clients:
            thread.start()
        time.sleep(0.5)
        second = registry.log(train(world, seed=2, factors=24), metrics={"ndcg@10": 0.2})
        assert registry.promote(second.version)
        deadline = time.monotonic() + 30
        while (not versions or versions[-1] != second.version) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for thread in clients:
            thread.join(timeout=15)
        ready = httpx.get(f"{base}/readyz").json()
        metrics = httpx.get(f"{base}/metrics").text

    assert failures == []
    assert versions[0] == first.version and versions[-1] == second.version
    assert versions.index(second.version) > 0 and first.version not in versions[versions.index(second.version) :]
    assert len(versions) > 50
    assert ready["model_version"] == second.version
    assert 'recstack_model_reloads_total{outcome="swapped"} 2.0' in metrics
