"""Short-lived byte values by key (per-user recommendation results): in-process or Redis.

`open_cache(url)` picks the backend by scheme: `memory://` (embedded default, optional `?max_entries=N`) or
`redis://host:port/db` (also `rediss://`, `unix://`; optional `?prefix=…` for the key namespace, default
`recstack:`). A cache is an optimisation, never the source of truth: `RedisCache` fails fast with
`BackendUnavailable` when the server cannot be reached, and the caller answers uncached.
"""

from __future__ import annotations

import heapq
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from recstack.errors import BackendUnavailable, ConfigurationError, MissingExtra

if TYPE_CHECKING:
    import redis

__all__ = ["Cache", "MemoryCache", "RedisCache", "invalidate_users", "open_cache"]


@runtime_checkable
class Cache(Protocol):
    """Byte values with a time to live. `get` of a missing or expired key is None; `ttl_s` is seconds (> 0)."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def delete(self, *keys: str) -> None: ...

    def set_many(self, values: dict[str, bytes], ttl_s: float) -> None:
        """`set` of every pair, in one round trip where the backend allows."""

    def ping(self) -> bool: ...


def _check_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ConfigurationError(f"cache ttl_s must be > 0 seconds, got {ttl_s}")


class MemoryCache:
    """A thread-safe dict with per-entry expiry and least-recently-used eviction beyond `max_entries`.

    Expired entries are dropped when read and, on every write, all those whose time is up (oldest expiry
    first, from a heap), so the cache holds what its TTL keeps alive rather than growing to `max_entries`
    with answers nobody will read again (uncached traffic writes one new key per request). Uses the
    monotonic clock, so wall-clock jumps do not expire entries early; `clock` replaces it (tests drive expiry
    with a clock they control instead of sleeping). One instance per process: worker processes do not
    share it.
    """

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ConfigurationError(f"MemoryCache max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        # (expiry, key) of every write; an item whose entry was rewritten or evicted since is skipped.
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> MemoryCache:
        query = _query(url)
        try:
            max_entries = int(query.pop("max_entries", "100000"))
        except ValueError as exc:
            raise ConfigurationError(f"cache URL {url!r}: max_entries must be an integer") from exc
        if query:
            raise ConfigurationError(f"cache URL {url!r}: unknown option(s) {sorted(query)}")
        return cls(max_entries=max_entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        _check_ttl(ttl_s)
        now = self._clock()
        expires = now + ttl_s
        with self._lock:
            self._sweep(now)
            self._entries[key] = (expires, bytes(value))
            self._entries.move_to_end(key)
            heapq.heappush(self._expiry, (expires, key))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            if len(self._expiry) > 2 * self.max_entries:
                self._expiry = [(at, k) for k, (at, _) in self._entries.items()]
                heapq.heapify(self._expiry)

    def _sweep(self, now: float) -> None:
        """Drop every entry whose time is up (the lock is held)."""
        expiry, entries = self._expiry, self._entries
        while expiry and expiry[0][0] <= now:
            at, key = heapq.heappop(expiry)
            entry = entries.get(key)
            if entry is not None and entry[0] == at:
                del entries[key]

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def set_many(self, values: dict[str, bytes], ttl_s: float) -> None:
        for key, value in values.items():
            self.set(key, value, ttl_s)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._expiry.clear()

    def ping(self) -> bool:
        return True


class RedisCache:
    """Redis through redis-py, with keys under `prefix` so several deployments or tests share one server.

    Timeouts are short and retries off, so an unreachable server costs at most `timeout_s` per call. After a
    connection failure, calls during the next `retry_after_s` raise `BackendUnavailable` without touching the
    network (the server is known to be down; requests should not each pay the timeout); `ping` always tries
    and closes that window when the server answers again. `clock` (monotonic by default) times that window;
    entry expiry is the server's own.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "recstack:",
        timeout_s: float = 0.25,
        retry_after_s: float = 1.0,
        client: redis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import redis as redis_lib
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise MissingExtra("redis", "serve") from exc
        self.url = url
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._errors: tuple[type[Exception], ...] = (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError)
        self._down_until = 0.0
        self._scripts: dict[str, Any] = {}
        self._client: redis.Redis = client or redis_lib.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )

    @classmethod
    def from_url(cls, url: str) -> RedisCache:
        parts = urlsplit(url)
        query = _query(url)
        prefix = query.pop("prefix", "recstack:")
        return cls(urlunsplit(parts._replace(query=urlencode(query))), prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisCache({_redact(self.url)!r}, prefix={self.prefix!r})"

    def _call(self, what: str, operation: Any, *args: Any, **kwargs: Any) -> Any:
        if self._clock() < self._down_until:
            raise BackendUnavailable(f"Redis cache at {_redact(self.url)} is unreachable (recent failure)")
        try:
            return operation(*args, **kwargs)
        except self._errors as exc:
            self._down_until = self._clock() + self.retry_after_s
            raise BackendUnavailable(f"Redis cache at {_redact(self.url)} is unreachable during {what}: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        value = self._call("get", self._client.get, self.prefix + key)
        return None if value is None else bytes(value)

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        _check_ttl(ttl_s)
        self._call("set", self._client.set, self.prefix + key, value, px=max(1, round(ttl_s * 1000)))

    def delete(self, *keys: str) -> None:
        if keys:
            self._call("delete", self._client.delete, *[self.prefix + key for key in keys])

    def set_many(self, values: dict[str, bytes], ttl_s: float) -> None:
        _check_ttl(ttl_s)
        if not values:
            return
        pipe = self._client.pipeline(transaction=False)
        ms = max(1, int(ttl_s * 1000))
        for key, value in values.items():
            pipe.set(self.prefix + key, value, px=ms)
        self._call("set_many", pipe.execute)

    def ping(self) -> bool:
        try:
            answered = bool(self._client.ping())
        except self._errors:
            self._down_until = self._clock() + self.retry_after_s
            return False
        self._down_until = 0.0
        return answered

    def run_script(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua `script` atomically on the server (EVALSHA, loaded once) with `keys` under the prefix;
        `BackendUnavailable` as for every call."""
        compiled = self._scripts.get(script)
        if compiled is None:
            compiled = self._scripts[script] = self._client.register_script(script)
        return self._call("script", compiled, keys=[self.prefix + key for key in keys], args=args)

    def clear(self) -> None:
        """Delete every key under this cache's prefix (SCAN, so the server is never blocked)."""
        pattern = _glob_escape(self.prefix) + "*"
        self._call("clear", self._delete_matching, pattern)

    def _delete_matching(self, pattern: str) -> None:
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self._client.delete(*batch)
                batch.clear()
        if batch:
            self._client.delete(*batch)

    def close(self) -> None:
        self._client.close()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def invalidate_users(cache: Cache, user_ids: Iterable[str], ttl_s: float) -> None:
    """Make every cached answer of these users unreachable: answers are keyed by the user's epoch, which
    this replaces (the API on an event, the stream processor after a batch)."""
    values = {f"epoch:{u}": uuid.uuid4().hex.encode() for u in set(user_ids)}
    cache.set_many(values, ttl_s + 1.0)


def _query(url: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(url).query).items()}


def open_cache(url: str) -> Cache:
    """The cache behind `url`: `memory://[?max_entries=N]` or `redis://host:port/db[?prefix=…]`."""
    from recstack.backends import backend_class

    cache: Cache = backend_class("cache", url).from_url(url)
    return cache
