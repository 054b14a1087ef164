"""The `Cache` contract: behaviour every cache backend has. A backend's suite subclasses `CacheContract` and
provides a `cache` fixture (an empty cache)."""

from __future__ import annotations

import time

import pytest

from recstack.errors import ConfigurationError
from recstack.storage.cache import Cache
from recstack.testing.clock import ManualClock

__all__ = ["CacheContract", "ManualClock"]


class CacheContract:
    """Behaviour every `Cache` backend has; a backend's suite subclasses this and provides `cache`."""

    def test_missing_key_is_none(self, cache: Cache) -> None:
        assert cache.get("nobody") is None

    def test_round_trip_keeps_bytes_exactly(self, cache: Cache) -> None:
        value = bytes(range(256)) + b'{"items": []}'
        cache.set("user:1", value, 30)
        assert cache.get("user:1") == value
        cache.set("user:1", b"newer", 30)
        assert cache.get("user:1") == b"newer"

    def test_delete_several_and_missing_keys(self, cache: Cache) -> None:
        for key in ("a", "b", "c"):
            cache.set(key, key.encode(), 30)
        cache.delete("a", "b", "never-set")
        cache.delete()
        assert [cache.get(k) for k in ("a", "b", "c")] == [None, None, b"c"]

    def test_entries_expire_after_their_ttl(self, cache: Cache) -> None:
        # Whether a 50 ms entry is still there when read back depends on the machine's load, so this only
        # waits (bounded) for it to go; the exact boundary is tested where the clock is the test's own.
        cache.set("short", b"x", 0.05)
        cache.set("long", b"y", 30)
        deadline = time.monotonic() + 10
        while cache.get("short") is not None:
            assert time.monotonic() < deadline, "a 50 ms entry was still there after 10 s"
            time.sleep(0.02)
        assert cache.get("long") == b"y"

    @pytest.mark.parametrize("ttl", [0, -1.0])
    def test_non_positive_ttl_is_refused(self, cache: Cache, ttl: float) -> None:
        with pytest.raises(ConfigurationError, match="ttl_s must be > 0"):
            cache.set("k", b"v", ttl)

    def test_ping(self, cache: Cache) -> None:
        assert cache.ping() is True
