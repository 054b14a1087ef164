"""The cache contract (shared with the Redis suite), plus what only the in-process cache promises."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from recstack.errors import BackendUnavailable, ConfigurationError
from recstack.storage.cache import MemoryCache, RedisCache, open_cache
from recstack.testing.cache import CacheContract
from recstack.testing.clock import ManualClock


class TestMemoryCache(CacheContract):
    @pytest.fixture
    def cache(self) -> Iterator[MemoryCache]:
        yield MemoryCache(max_entries=100)

    def test_least_recently_used_entry_is_evicted(self) -> None:
        cache = MemoryCache(max_entries=3)
        for key in ("a", "b", "c"):
            cache.set(key, key.encode(), 30)
        assert cache.get("a") == b"a"  # a is now the most recently used
        cache.set("d", b"d", 30)
        assert cache.get("b") is None
        assert [cache.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]
        assert len(cache) == 3

    def test_overwriting_refreshes_recency_without_growing(self) -> None:
        cache = MemoryCache(max_entries=2)
        cache.set("a", b"1", 30)
        cache.set("b", b"2", 30)
        cache.set("a", b"3", 30)
        cache.set("c", b"4", 30)
        assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"3", None, b"4")

    def test_expired_entry_is_dropped_when_read(self) -> None:
        clock = ManualClock()
        cache = MemoryCache(clock=clock)
        cache.set("k", b"v", 0.05)
        cache.set("long", b"w", 30)
        clock.advance(0.049)
        assert cache.get("k") == b"v"
        clock.advance(0.001)
        assert cache.get("k") is None
        assert len(cache) == 1
        clock.advance(29.95)
        assert cache.get("long") is None

    def test_overwriting_restarts_the_ttl(self) -> None:
        clock = ManualClock()
        cache = MemoryCache(clock=clock)
        cache.set("k", b"1", 1)
        clock.advance(0.9)
        cache.set("k", b"2", 1)
        clock.advance(0.9)
        assert cache.get("k") == b"2"

    def test_a_write_drops_every_entry_whose_time_is_up(self) -> None:
        # Uncached traffic writes one new key per request and never reads it again: without this the cache
        # grew to max_entries of dead answers (the soak's memory growth).
        clock = ManualClock()
        cache = MemoryCache(max_entries=10_000, clock=clock)
        for i in range(1000):
            cache.set(f"old{i}", b"x" * 100, 30)
        cache.set("kept", b"y", 120)
        clock.advance(30)
        cache.set("new", b"z", 30)
        assert len(cache) == 2
        assert (cache.get("kept"), cache.get("new")) == (b"y", b"z")
        assert len(cache._expiry) <= 2

    def test_a_rewritten_key_outlives_its_first_expiry(self) -> None:
        clock = ManualClock()
        cache = MemoryCache(clock=clock)
        cache.set("k", b"1", 1)
        clock.advance(0.5)
        cache.set("k", b"2", 10)
        clock.advance(1)
        cache.set("other", b"3", 10)
        assert cache.get("k") == b"2"

    def test_concurrent_use_stays_consistent_and_bounded(self) -> None:
        cache = MemoryCache(max_entries=50)
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(3000):
                    key = f"k{(i * 7 + worker) % 80}"
                    cache.set(key, key.encode(), 30)
                    value = cache.get(f"k{i % 80}")
                    assert value is None or value == f"k{i % 80}".encode()
                    if i % 11 == 0:
                        cache.delete(key)
            except BaseException as exc:  # collected and asserted in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert 0 < len(cache) <= 50

    def test_max_entries_must_be_positive(self) -> None:
        with pytest.raises(ConfigurationError, match="max_entries"):
            MemoryCache(max_entries=0)


def test_open_cache_by_scheme() -> None:
    memory = open_cache("memory://?max_entries=7")
    assert isinstance(memory, MemoryCache) and memory.max_entries == 7
    redis_cache = open_cache("redis://127.0.0.1:6379/3?prefix=svc:")
    assert isinstance(redis_cache, RedisCache)
    assert redis_cache.prefix == "svc:"
    assert redis_cache.url == "redis://127.0.0.1:6379/3"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://host", "use memory:// or redis://"),
        ("memory://?max_entries=lots", "max_entries must be an integer"),
        ("memory://?size=3", "unknown option"),
    ],
)
def test_open_cache_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_cache(url)


def test_unreachable_redis_fails_fast_and_reports_it() -> None:
    # Nothing listens on port 1: the connection is refused at once, as for a stopped server.
    clock = ManualClock()
    cache = RedisCache("redis://127.0.0.1:1/0", retry_after_s=30, clock=clock)
    with pytest.raises(BackendUnavailable, match="unreachable during get"):
        cache.get("k")
    clock.advance(29.9)
    with pytest.raises(BackendUnavailable, match="recent failure"):
        cache.set("k", b"v", 1)
    clock.advance(0.1)
    with pytest.raises(BackendUnavailable, match="unreachable during set"):
        cache.set("k", b"v", 1)
    assert cache.ping() is False


def test_redis_password_is_not_shown() -> None:
    cache = RedisCache("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in repr(cache)
    with pytest.raises(BackendUnavailable) as caught:
        cache.get("k")
    assert "s3cret" not in str(caught.value)
