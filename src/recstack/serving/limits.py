"""Per-caller rate limits: a token bucket of `rate_per_s` tokens a second holding at most `burst`.

`MemoryRateLimiter` keeps the buckets in this process (one server process, or limits per process);
`RedisRateLimiter` keeps them in Redis through one Lua script, so every worker and replica draws from the
same bucket. When Redis is unreachable the Redis limiter falls back to this process's buckets: a cache
outage loosens the limit to per-process, it never refuses every request or lets every request through.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from recstack.errors import BackendUnavailable
from recstack.storage.cache import RedisCache

__all__ = ["Decision", "MemoryRateLimiter", "RateLimiter", "RedisRateLimiter"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """Whether one request may go on; if not, how many seconds until one token is back."""

    allowed: bool
    retry_after_s: float = 0.0


class RateLimiter(Protocol):
    rate_per_s: float
    burst: int

    def take(self, key: str) -> Decision:
        """Take one token from `key`'s bucket."""


class MemoryRateLimiter:
    """Token buckets in this process, at most `max_buckets` of them (full ones are dropped first)."""

    def __init__(
        self, rate_per_s: float, burst: int, max_buckets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> Decision:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_buckets:
                    self._prune(now)
                return Decision(True)
            self._buckets[key] = (tokens, now)
            return Decision(False, (1.0 - tokens) / self.rate_per_s)

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate_per_s
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) > self.max_buckets:
            self._buckets.clear()


# KEYS[1] the bucket; ARGV rate per second, burst. Time is the server's, so every client agrees on it.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait_ms}
"""


class RedisRateLimiter:
    """Token buckets shared through Redis (keys `ratelimit:<caller>` under the cache's prefix)."""

    def __init__(self, cache: RedisCache, rate_per_s: float, burst: int) -> None:
        self.cache = cache
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.fallback = MemoryRateLimiter(rate_per_s, burst)
        self._warned = False

    def take(self, key: str) -> Decision:
        try:
            allowed, wait_ms = self.cache.run_script(_TAKE, [f"ratelimit:{key}"], [self.rate_per_s, self.burst])
        except BackendUnavailable as exc:
            if not self._warned:
                logger.warning("rate limits are per process while Redis is unreachable: %s", exc)
                self._warned = True
            return self.fallback.take(key)
        self._warned = False
        return Decision(bool(int(allowed)), math.ceil(int(wait_ms)) / 1000.0)
