"""The online state in Redis: written by the stream processors, read by every API worker.

Keys (under `prefix`, default `recstack:online:`):
- `h:{user}` — sorted set of the user's newest `limit` events, scored by time; a member is the JSON
  `[event_id, item_id, event_type, value]`, so adding an event twice is a no-op;
- `seen:{day}` — set of the event ids applied, per day of event time: the idempotence key for the counters;
- `t:{hour}` — hash item → count of non-skip events in that hour of event time (the trending windows);
- `buckets` — sorted set of the hour and day buckets, so buckets older than `retention_ms` before the newest
  event are dropped; `clock` — the newest event time seen; `catalog` — the catalogue epoch.

A batch is applied by one Lua script (atomic, one round trip): a processor killed at any point leaves each
event either wholly applied or not at all, and the replay finishes the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
import pandas as pd

from recstack.errors import BackendUnavailable, MissingExtra
from recstack.processing.online import DAY_MS, HOUR_MS, History

if TYPE_CHECKING:
    import redis

    from recstack.storage import Store

__all__ = ["RedisOnlineState"]

_APPLY = """
local p, limit, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = tonumber(redis.call('GET', p .. 'clock') or '0')
local touched = {}
local n = 0
for i = 4, #ARGV, 6 do
  local id, user, item, kind, value, ts = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], tonumber(ARGV[i+5])
  local day = math.floor(ts / 86400000)
  if redis.call('SADD', p .. 'seen:' .. day, id) == 1 then
    n = n + 1
    redis.call('ZADD', p .. 'buckets', day * 86400000, 'seen:' .. day)
    redis.call('ZADD', p .. 'h:' .. user, ts, cjson.encode({id, item, kind, value}))
    touched[user] = true
    if kind ~= 'skip' then
      local hour = math.floor(ts / 3600000)
      redis.call('HINCRBY', p .. 't:' .. hour, item, 1)
      redis.call('ZADD', p .. 'buckets', hour * 3600000, 't:' .. hour)
    end
    if ts > clock then clock = ts end
  end
end
for user, _ in pairs(touched) do
  redis.call('ZREMRANGEBYRANK', p .. 'h:' .. user, 0, -(limit + 1))
end
redis.call('SET', p .. 'clock', tostring(clock))
local old = redis.call('ZRANGEBYSCORE', p .. 'buckets', '-inf', '(' .. tostring(clock - retention))
for _, name in ipairs(old) do
  redis.call('DEL', p .. name)
end
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', p .. 'buckets', '-inf', '(' .. tostring(clock - retention))
end
return n
"""


class RedisOnlineState:
    """`OnlineState` in Redis (see the module docstring). `retention_ms` bounds the counters kept (it must
    cover the longest trending window asked for) and the window in which a replayed event is recognised."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "recstack:online:",
        limit: int = 500,
        retention_ms: int = 30 * DAY_MS,
        timeout_s: float = 2.0,
        client: redis.Redis | None = None,
    ) -> None:
        try:
            import redis as redis_lib
        except ImportError as exc:
            raise MissingExtra("redis", "serve") from exc
        self.url = url
        self.prefix = prefix
        self.limit = limit
        self.retention_ms = retention_ms
        self._errors: tuple[type[BaseException], ...] = (redis_lib.RedisError, OSError)
        self.client = client or redis_lib.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._apply = self.client.register_script(_APPLY)

    @classmethod
    def from_url(cls, url: str, store: Store | None = None, limit: int = 500) -> RedisOnlineState:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        prefix = query.pop("online_prefix", None) or query.pop("prefix", "recstack:") + "online:"
        return cls(urlunsplit(parts._replace(query=urlencode(query))), prefix=prefix, limit=limit)

    def _call(self, what: str, operation: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return operation(*args, **kwargs)
        except self._errors as exc:
            raise BackendUnavailable(f"online state in Redis is unreachable during {what}: {exc}") from exc

    def apply(self, events: pd.DataFrame, chunk: int = 2_000) -> None:
        if events.empty:
            return
        value = events["value"].astype("float64")
        cols = zip(
            events["event_id"].tolist(), events["user_id"].tolist(), events["item_id"].tolist(),
            events["event_type"].tolist(), ["" if v != v else repr(float(v)) for v in value.tolist()],
            events["timestamp"].astype("int64").tolist(), strict=True,
        )
        flat: list[Any] = []
        for row in cols:
            flat.extend(row)
        head = [self.prefix, self.limit, self.retention_ms]
        for start in range(0, len(flat), chunk * 6):
            self._call("apply", self._apply, keys=[], args=head + flat[start : start + chunk * 6])

    def history(self, user_id: str) -> History:
        """The user's newest events. `BackendUnavailable` while the state holds no event at all (a new or
        restarted, empty Redis): then the caller reads the store, which has every event the stream took,
        rather than an empty history until the stream re-applies what failed during an outage."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(f"{self.prefix}clock")
        pipe.zrevrange(f"{self.prefix}h:{user_id}", 0, self.limit - 1)
        clock, raw = self._call("history", pipe.execute)
        if clock is None:
            raise BackendUnavailable("online state in Redis holds no events yet (new or restarted)")
        rows = []
        for member in raw:
            _, item_id, event_type, value = orjson.loads(member)
            rows.append((item_id, event_type, float(value) if value != "" else None))
        return History.of(rows)

    def trending(self, window_ms: int) -> dict[str, int]:
        clock = int(self._call("trending", self.client.get, f"{self.prefix}clock") or 0)
        if not clock:
            return {}
        names = self._call(
            "trending", self.client.zrangebyscore, f"{self.prefix}buckets", (clock - window_ms) // HOUR_MS * HOUR_MS,
            "+inf",
        )
        pipe = self.client.pipeline(transaction=False)
        hours = [n.decode() for n in names if n.startswith(b"t:")]
        for name in hours:
            pipe.hgetall(self.prefix + name)
        out: dict[str, int] = {}
        for counts in self._call("trending", pipe.execute):
            for item_id, n in counts.items():
                key = item_id.decode()
                out[key] = out.get(key, 0) + int(n)
        return out

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        self._call("catalog change", self.client.incr, f"{self.prefix}catalog")

    def catalog_epoch(self) -> int:
        return int(self._call("catalog epoch", self.client.get, f"{self.prefix}catalog") or 0)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except self._errors:
            return False

    def clear(self) -> None:
        """Delete every key of this state (tests, and a full rebuild from the store)."""
        cursor = 0
        while True:
            cursor, keys = self.client.scan(cursor, match=f"{self.prefix}*", count=1000)
            if keys:
                self.client.delete(*keys)
            if cursor == 0:
                return

    def close(self) -> None:
        self.client.close()
