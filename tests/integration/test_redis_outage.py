"""A Redis outage under a running server, with a Redis this test starts on its own port, stops and restarts:
answers stay 200, /readyz reports the cache down and then up again, events posted meanwhile count."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from conftest import unavailable
from integration.serving_support import FixedSource, World, free_port, load, running
from recstack.config import Settings
from recstack.models.base import Recommender
from recstack.serving.app import create_app
from recstack.storage import open_store


class OwnRedis:
    """`redis-server` on a free port, no persistence; `stop()` and `start()` again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--save", "", "--appendonly",
                                         "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server", "not on PATH: install the redis-server package")
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def _until(check: Any, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_answers_survive_a_redis_outage_and_the_cache_recovers(
    own_redis: OwnRedis, sqlite_url: str, world: World, als: Recommender[Any], tmp_path: Path
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    load(store, world)
    store.close()
    settings = Settings(home=tmp_path, database_url=sqlite_url, cache_url=f"redis://127.0.0.1:{own_redis.port}/0",
                        auth="none")
    app = create_app(settings, model_source=FixedSource(als))
    user = str(world.interactions["user_id"].iloc[0])
    url = f"/v1/users/{user}/recommendations"

    def items(client: httpx.Client) -> list[str]:
        response = client.get(url)
        assert response.status_code == 200, response.text
        return [i["item_id"] for i in response.json()["items"]]

    def cache_up(client: httpx.Client) -> bool:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        return bool(ready.json()["checks"]["cache"])

    with running(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        first = items(client)
        assert cache_up(client)
        own_redis.stop()
        _until(lambda: not cache_up(client), "/readyz never reported the stopped cache")
        event = {"user_id": user, "item_id": first[0], "event_type": "skip"}
        assert client.post("/v1/events", json=event).status_code == 202
        during = items(client)
        assert len(during) == 10 and first[0] not in during
        own_redis.start()
        _until(lambda: cache_up(client), "/readyz never reported the restarted cache")
        # The restarted Redis is empty until the stream re-applies the batch that failed during the outage;
        # meanwhile history comes from the store, so the very next answer already counts the event.
        after = items(client)
        assert len(after) == 10 and first[0] not in after
        second = {"user_id": user, "item_id": after[0], "event_type": "skip"}
        assert client.post("/v1/events", json=second).status_code == 202
        assert after[0] not in items(client)
