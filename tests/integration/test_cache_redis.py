"""The cache contract against the real Redis server, in a key namespace of its own that is removed after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from conftest import unavailable
from recstack.storage.cache import RedisCache, open_cache
from recstack.testing.cache import CacheContract

REDIS_URL = os.environ.get("RECSTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        unavailable(f"Redis at {REDIS_URL}", str(exc).splitlines()[0])
    yield client
    client.close()


@pytest.fixture
def prefix(redis_server: redis.Redis) -> Iterator[str]:
    name = f"recstack-test-{uuid.uuid4().hex[:10]}:"
    yield name
    leftovers = list(redis_server.scan_iter(match=f"{name}*"))
    if leftovers:
        redis_server.delete(*leftovers)


class TestRedisCache(CacheContract):
    @pytest.fixture
    def cache(self, prefix: str) -> Iterator[RedisCache]:
        cache = RedisCache(REDIS_URL, prefix=prefix)
        yield cache
        cache.clear()
        cache.close()

    def test_keys_live_under_the_prefix_with_a_ttl(
        self, cache: RedisCache, redis_server: redis.Redis, prefix: str
    ) -> None:
        cache.set("user:42", b"v", 60)
        assert redis_server.get(f"{prefix}user:42") == b"v"
        assert 0 < int(redis_server.pttl(f"{prefix}user:42")) <= 60_000

    def test_clear_touches_only_its_own_prefix(self, cache: RedisCache, redis_server: redis.Redis) -> None:
        other = RedisCache(REDIS_URL, prefix=f"{cache.prefix}other[*]:")
        try:
            cache.set("a", b"1", 60)
            other.set("a", b"2", 60)
            other.clear()
            assert other.get("a") is None
            assert cache.get("a") == b"1"
        finally:
            other.clear()
            other.close()


def test_open_cache_reaches_the_server(prefix: str) -> None:
    cache = open_cache(f"{REDIS_URL}?prefix={prefix}")
    assert isinstance(cache, RedisCache)
    assert cache.ping()
    cache.set("x", b"y", 5)
    assert cache.get("x") == b"y"
    cache.delete("x")
    cache.close()
