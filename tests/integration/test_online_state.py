"""The online state on the real backends: `sql` over SQLite and PostgreSQL, and Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from conftest import unavailable
from recstack.processing.online import OnlineState
from recstack.processing.online_redis import RedisOnlineState
from recstack.processing.online_sql import SqlOnlineState
from recstack.storage import Store
from recstack.testing.online import Feed, OnlineStateContract

REDIS_URL = os.environ.get("RECSTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class TestSqlOnlineState(OnlineStateContract):
    @pytest.fixture
    def online(self, store: Store) -> Iterator[OnlineState]:
        state = SqlOnlineState(store, limit=20)
        yield state
        state.close()

    @pytest.fixture
    def feed(self, store: Store) -> Feed:
        return lambda frame: (store.write_interactions(frame), None)[1]


@pytest.mark.redis
class TestRedisOnlineState(OnlineStateContract):
    @pytest.fixture
    def online(self) -> Iterator[OnlineState]:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            unavailable(f"Redis at {REDIS_URL}", str(exc))
        state = RedisOnlineState(REDIS_URL, prefix=f"test-online-{uuid.uuid4().hex[:8]}:", limit=20)
        yield state
        state.clear()
        state.close()

    @pytest.fixture
    def feed(self, online: OnlineState) -> Feed:
        return online.apply


def test_redis_state_down_is_backend_unavailable() -> None:
    from recstack.errors import BackendUnavailable

    state = RedisOnlineState("redis://127.0.0.1:1/0", timeout_s=0.2)
    assert state.ping() is False
    with pytest.raises(BackendUnavailable):
        state.history("u1")
