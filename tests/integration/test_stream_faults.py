"""Fault tests of the event path against the real broker, PostgreSQL and Redis: a processor killed with
SIGKILL in the middle of a replay, and a broker that stops while clients post events. In every case the
store ends with each event exactly once and nothing a client was told is accepted is lost."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
import sqlalchemy as sa

from conftest import unavailable
from integration.serving_support import running
from recstack.bus import open_bus
from recstack.bus.base import Topics
from recstack.bus.events import encode_events
from recstack.config import Settings
from recstack.processing.online_redis import RedisOnlineState
from recstack.processing.online_sql import SqlOnlineState
from recstack.processing.stream import BatchReport, StreamProcessor
from recstack.schema import validate_interactions
from recstack.serving.app import create_app
from recstack.storage import Store, open_store
from recstack.storage.sql import normalise_url
from recstack.testing.broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

REDIS_URL = os.environ.get("RECSTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BASE_MS = 1_700_000_000_000
WEEK_MS = 7 * 86_400_000


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        unavailable(f"Redis at {REDIS_URL}", str(exc))
    prefix = f"fault-{uuid.uuid4().hex[:8]}:"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


def _events(n: int, users: int = 2_000, items: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    raw = pd.DataFrame({
        "user_id": [f"u{u}" for u in rng.integers(0, users, n)],
        "item_id": [f"i{i}" for i in rng.zipf(1.3, n) % items],
        "event_type": rng.choice(["view", "watch", "like", "skip"], n),
        "value": rng.uniform(1, 600, n).round(1),
        "timestamp": BASE_MS + np.arange(n) * 50,
    })
    return validate_interactions(raw).accepted.drop(columns=["_location"], errors="ignore")


def _env(tmp_path: Path, store_url: str, bus_url: str, prefix: str, topics: Topics) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")}
    env.update({
        "RECSTACK_HOME": str(tmp_path / "home"), "RECSTACK_DATABASE_URL": store_url, "RECSTACK_BUS_URL": bus_url,
        "RECSTACK_CACHE_URL": f"{REDIS_URL}?prefix={prefix}", "RECSTACK_TOPIC_EVENTS": topics.events,
        "RECSTACK_TOPIC_CATALOG": topics.catalog, "RECSTACK_TOPIC_DLQ": topics.dlq,
        "RECSTACK_STREAM_BATCH_SIZE": "2000",
    })
    return env


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM interactions")).scalar() or 0)


def _stream(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "recstack", "stream", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
        )


def _topics() -> Topics:
    tag = uuid.uuid4().hex[:8]
    return Topics(events=f"f-events-{tag}", catalog=f"f-catalog-{tag}", dlq=f"f-dlq-{tag}")


def _assert_online_agrees_with_store(store: Store, online: RedisOnlineState) -> None:
    sql = SqlOnlineState(store, limit=online.limit)
    try:
        frame = pd.concat(list(store.iter_interactions()))
        for user in frame["user_id"].drop_duplicates().sample(200, random_state=0):
            assert collections.Counter(online.history(user).item_ids) == collections.Counter(
                sql.history(user).item_ids
            ), user
        assert online.trending(WEEK_MS) == sql.trending(WEEK_MS)
    finally:
        sql.close()


def test_a_killed_processor_restarts_without_losing_or_doubling_events(
    tmp_path: Path, postgres_url: str, kafka_url: str, redis_prefix: str
) -> None:
    n = 100_000
    topics = _topics()
    events = _events(n)
    bus = open_bus(kafka_url)
    bus.ensure_topics(topics.all())
    for start in range(0, n, 20_000):
        bus.publish(topics.events, encode_events(events.iloc[start : start + 20_000]))
    bus.close()
    store = open_store(postgres_url)
    store.migrate()
    engine = sa.create_engine(normalise_url(postgres_url))
    env = _env(tmp_path, postgres_url, kafka_url, redis_prefix, topics)
    log = tmp_path / "stream.log"

    first = _stream(env, log)
    deadline = time.monotonic() + 120
    while _count(engine) < 20_000:
        assert first.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the processor stored nothing in time"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = _count(engine)
    assert killed_at < n, "the replay finished before the kill: make it longer"

    second = _stream(env, log, "--idle-exit", "3")
    assert second.wait(timeout=240) == 0, log.read_text()
    assert _count(engine) == n
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT event_id FROM interactions"))}
    assert ids == set(events["event_id"])
    online = RedisOnlineState(REDIS_URL, prefix=f"{redis_prefix}online:", limit=500)
    _assert_online_agrees_with_store(store, online)
    online.close()
    store.close()
    engine.dispose()


def test_posts_while_the_broker_is_down_are_spooled_and_drained_once(
    tmp_path: Path, postgres_url: str, kafka_broker: KafkaBroker, redis_prefix: str
) -> None:
    topics = _topics()
    settings = Settings(
        home=tmp_path / "home", database_url=postgres_url, cache_url=f"{REDIS_URL}?prefix={redis_prefix}",
        bus_url=kafka_broker.test_url, topic_events=topics.events, topic_catalog=topics.catalog,
        topic_dlq=topics.dlq, auth="none",
    )
    store = open_store(postgres_url)
    store.migrate()

    def event(i: int) -> dict[str, object]:
        return {"event_id": f"e{i}", "user_id": f"u{i % 17}", "item_id": f"i{i % 29}", "event_type": "like",
                "timestamp": BASE_MS + i}

    answered: list[int] = []
    spooled = 0
    with running(create_app(settings, model_source=None)) as base, httpx.Client(base_url=base, timeout=30) as client:
        for i in range(20):
            posted = client.post("/v1/events", json=event(i))
            answered.append(posted.status_code)
            assert posted.headers["X-Recstack-Delivery"] == "sent"
        _consume(store, kafka_broker.test_url, topics, redis_prefix, "before-stop")
        assert store.counts()["interactions"] == 20
        kafka_broker.stop()
        for start in range(20, 220, 10):
            posted = client.post("/v1/events", json={"events": [event(i) for i in range(start, start + 10)]})
            answered.append(posted.status_code)
            spooled += posted.headers["X-Recstack-Delivery"] == "spooled"
        repeat = client.post("/v1/events", json={"events": [event(i) for i in range(200, 220)]})
        answered.append(repeat.status_code)
        ready = client.get("/readyz").json()
        assert ready["checks"]["bus"] is False and "outbox" in ready["detail"]["bus"]
        metrics = client.get("/metrics").text
        assert "recstack_bus_up 0.0" in metrics
        assert "recstack_outbox_pending 0.0" not in metrics

        kafka_broker.start()
        deadline = time.monotonic() + 60
        while not client.get("/readyz").json()["checks"]["bus"]:
            assert time.monotonic() < deadline, "the outbox did not drain after the broker came back"
            time.sleep(0.2)
        assert "recstack_outbox_pending 0.0" in client.get("/metrics").text

    assert all(status == 202 for status in answered), answered
    assert spooled >= 19
    # The restarted test broker keeps nothing (tansu stores in memory): it holds exactly what the outbox
    # drained, the 200 spooled events and the 20 repeated ones, which the store recognises.
    total = _consume(store, kafka_broker.test_url, topics, redis_prefix, "after-restart")
    assert total.stored == 200 and total.duplicates == 20
    stored = pd.concat(list(store.iter_interactions()))
    assert sorted(stored["event_id"]) == sorted(f"e{i}" for i in range(220))
    store.close()


def _consume(store: Store, bus_url: str, topics: Topics, redis_prefix: str, group: str) -> BatchReport:
    bus = open_bus(bus_url)
    online = RedisOnlineState(REDIS_URL, prefix=f"{redis_prefix}online:")
    processor = StreamProcessor(bus, store, online, topics=topics, group=group, poll_timeout_s=0.2)
    total = processor.run(idle_exit_s=2.0)
    processor.close()
    online.close()
    bus.close()
    return total
