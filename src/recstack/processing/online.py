"""Online state: what the request path needs to know about users *now*, kept up to date by the stream.

`OnlineState` is one narrow protocol — each user's recent history, per-item counters in time windows
(trending), and a catalogue epoch that moves when items change — with three implementations opened from a
URL (`open_online_state`): `sql` reads the operational store itself (the embedded default: every worker
process shares it and nothing extra has to run), `redis://…` keeps the state in Redis (written by the
stream processor, read by every API worker: the production path), and `memory://` keeps it in this
process. `apply` is idempotent by `event_id`, so a stream batch replayed after a crash changes nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson
import pandas as pd

from recstack.backends import backend_class

if TYPE_CHECKING:
    from recstack.storage import Store

__all__ = [
    "HOUR_MS", "History", "MemoryOnlineState", "OnlineState", "history_fingerprint", "open_online_state",
]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def history_fingerprint(rows: Sequence[tuple[Any, ...]]) -> int:
    """A hash of a user's history rows `(item_id, event_type, value)` in their order: equal rows, equal hash
    in every process (not Python's salted `hash`), so a plan prepared once and stored with the model version
    can tell, in any worker, whether the history changed since."""
    packed = orjson.dumps([tuple(r) for r in rows], option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little", signed=True)


@dataclass(frozen=True)
class History:
    """One user's most recent events, newest first (parallel lists), and the `fingerprint` of their rows."""

    item_ids: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)
    fingerprint: int = history_fingerprint(())

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, ...]]) -> History:
        """From `(item_id, event_type, value)` rows, newest first."""
        return cls([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], history_fingerprint(rows))


@runtime_checkable
class OnlineState(Protocol):
    """Per-user recent history and windowed item counters, shared by the stream and the API workers."""

    url: str

    def apply(self, events: pd.DataFrame) -> None:
        """Take in validated interactions (INTERACTION_COLUMNS); an `event_id` seen before changes nothing."""

    def history(self, user_id: str) -> History:
        """The user's newest events (at most the state's `limit`), newest first."""

    def trending(self, window_ms: int) -> dict[str, int]:
        """Item → count of non-skip events in the `window_ms` before the newest event seen."""

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        """Note that these items changed (so every API worker re-reads the catalogue)."""

    def catalog_epoch(self) -> int:
        """A number that grows whenever `catalog_changed` is called, by any process."""

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def open_online_state(url: str, store: Store, limit: int = 500) -> OnlineState:
    """The online state behind `url`: `sql` (the store), `memory://` or `redis://host:port/db[?prefix=…]`."""
    state: OnlineState = backend_class("online", url).from_url(url, store=store, limit=limit)
    return state


@dataclass
class _UserEvents:
    rows: list[tuple[int, int, str, str, float | None]] = field(default_factory=list)


class MemoryOnlineState:
    """The online state in this process (one stream worker and the API in one process, and tests).

    Counters are kept per hour of event time; the event ids seen are remembered so a replay is a no-op.
    """

    def __init__(self, limit: int = 500) -> None:
        self.url = "memory://"
        self.limit = limit
        self._users: dict[str, _UserEvents] = {}
        self._seen: set[str] = set()
        self._hours: dict[int, dict[str, int]] = {}
        self._clock = 0
        self._seq = 0
        self._epoch = 0
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, store: Store | None = None, limit: int = 500) -> MemoryOnlineState:
        return cls(limit=limit)

    def apply(self, events: pd.DataFrame) -> None:
        if events.empty:
            return
        columns = [events[c].tolist() for c in ("event_id", "user_id", "item_id", "event_type", "value", "timestamp")]
        with self._lock:
            touched: set[str] = set()
            for event_id, user_id, item_id, event_type, value, ts in zip(*columns, strict=True):
                if event_id in self._seen:
                    continue
                self._seen.add(event_id)
                self._seq += 1
                v = None if value is None or value != value else float(value)
                self._users.setdefault(user_id, _UserEvents()).rows.append((int(ts), self._seq, item_id, event_type, v))
                touched.add(user_id)
                if event_type != "skip":
                    hour = self._hours.setdefault(int(ts) // HOUR_MS, {})
                    hour[item_id] = hour.get(item_id, 0) + 1
                self._clock = max(self._clock, int(ts))
            for user_id in touched:
                rows = self._users[user_id].rows
                rows.sort()
                del rows[: max(0, len(rows) - self.limit)]

    def history(self, user_id: str) -> History:
        with self._lock:
            entry = self._users.get(user_id)
            rows = [] if entry is None else [(r[2], r[3], r[4]) for r in reversed(entry.rows)]
        return History.of(rows)

    def trending(self, window_ms: int) -> dict[str, int]:
        with self._lock:
            since = (self._clock - window_ms) // HOUR_MS
            out: dict[str, int] = {}
            for hour, counts in self._hours.items():
                if hour >= since:
                    for item_id, n in counts.items():
                        out[item_id] = out.get(item_id, 0) + n
            return out

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        with self._lock:
            self._epoch += 1

    def catalog_epoch(self) -> int:
        return self._epoch

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

