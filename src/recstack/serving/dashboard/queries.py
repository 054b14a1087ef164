"""What the dashboard reads from the operational store: aggregates, one user's or one item's events, the
quarantine, search. Plain SQLAlchemy Core on the store's engine (SQLite and PostgreSQL alike).

Aggregates over the whole interaction log (events over time, popularity, activity) scan it; `Memo` keeps
each result for a few seconds so a page reloaded by several people costs one scan. Times are epoch ms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from recstack.errors import BackendUnavailable
from recstack.processing.online_sql import engine_of
from recstack.processing.stream import SOURCE as STREAM_SOURCE
from recstack.storage import Store
from recstack.storage import tables as t

__all__ = [
    "Bucket", "Memo", "QuarantineFilter", "activity_counts", "event_series", "event_types", "item_engagement",
    "item_popularity", "item_row", "popular_items", "quarantine_rows", "search", "titles", "user_history",
]

T = TypeVar("T")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_BUCKETS = (("hour", HOUR_MS), ("day", DAY_MS), ("week", 7 * DAY_MS), ("30 days", 30 * DAY_MS),
            ("year", 365 * DAY_MS))
MAX_POINTS = 120


class Memo:
    """Results of expensive reads, kept `ttl_s` seconds per key (thread-safe; an old value is replaced)."""

    def __init__(self, ttl_s: float = 15.0) -> None:
        self.ttl_s = ttl_s
        self._values: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._values[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def _rows(store: Store, query: Any) -> list[Any]:
    try:
        with engine_of(store).connect() as conn:
            return list(conn.execute(query).all())
    except sa.exc.OperationalError as exc:
        raise BackendUnavailable(f"cannot reach the store: {exc.orig}") from exc


@dataclass(frozen=True)
class Bucket:
    """The width of one time-series step: its name ("day") and length in ms."""

    name: str
    ms: int


def _bucket_for(span_ms: int) -> Bucket:
    for name, ms in _BUCKETS:
        if span_ms / ms <= MAX_POINTS:
            return Bucket(name, ms)
    name, ms = _BUCKETS[-1]
    return Bucket(name, ms)


@dataclass(frozen=True)
class EventSeries:
    """Events per time bucket and type over [`start_ms`, `end_ms`]; `outside` events fell beyond it."""

    bucket: Bucket
    series: dict[str, list[tuple[int, int]]]
    start_ms: int
    end_ms: int
    outside: int


def _nth_time(store: Store, offset: int, newest: bool) -> int:
    c = t.interactions.c
    order = c.timestamp.desc() if newest else c.timestamp
    return int(_rows(store, sa.select(c.timestamp).order_by(order).offset(offset).limit(1))[0][0])


def event_series(store: Store, trim: float = 0.001) -> EventSeries:
    """Events per time bucket and event type, `{type: [(bucket start ms, count), ...]}`, with buckets sized
    so a series has at most `MAX_POINTS` points (hour, day, week, 30 days, year); empty buckets are 0.

    The range leaves out the oldest and the newest `trim` share of events, so a few stray timestamps (a
    test event today on a data set from 1998) do not squeeze the rest into one bucket; `outside` says how
    many were left out."""
    c = t.interactions.c
    total = int(_rows(store, sa.select(sa.func.count()).select_from(t.interactions))[0][0])
    if total == 0:
        return EventSeries(Bucket("day", DAY_MS), {}, 0, 0, 0)
    cut = int(total * trim)
    low, high = _nth_time(store, cut, newest=False), _nth_time(store, cut, newest=True)
    bucket = _bucket_for(high - low)
    step = (c.timestamp // bucket.ms).label("step")
    counted = _rows(store, sa.select(step, c.event_type, sa.func.count())
                    .where(c.timestamp >= low, c.timestamp <= high).group_by(step, c.event_type))
    first, last = low // bucket.ms, high // bucket.ms
    series: dict[str, list[int]] = {}
    drawn = 0
    for at, kind, n in counted:
        series.setdefault(str(kind), [0] * (last - first + 1))[int(at) - first] += int(n)
        drawn += int(n)
    points = {
        kind: [((first + i) * bucket.ms, n) for i, n in enumerate(counts)] for kind, counts in sorted(series.items())
    }
    return EventSeries(bucket, points, low, high, total - drawn)


def event_types(store: Store) -> dict[str, int]:
    """Events by type, most frequent first."""
    c = t.interactions.c
    n = sa.func.count().label("n")
    rows = _rows(store, sa.select(c.event_type, n).group_by(c.event_type).order_by(n.desc()))
    return {str(kind): int(n) for kind, n in rows}


def titles(store: Store, item_ids: list[str]) -> dict[str, dict[str, Any]]:
    """`{item_id: {"title", "category", "available"}}` for the ids the catalogue has."""
    if not item_ids:
        return {}
    i = t.items.c
    out: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(item_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        for item_id, title, category, available in _rows(
            store, sa.select(i.item_id, i.title, i.category, i.available).where(i.item_id.in_(chunk))
        ):
            out[str(item_id)] = {"title": title, "category": category, "available": bool(available)}
    return out


def popular_items(store: Store, limit: int = 10) -> list[tuple[str, int]]:
    """The `limit` items with the most events, as (item_id, events)."""
    c = t.interactions.c
    n = sa.func.count().label("n")
    rows = _rows(store, sa.select(c.item_id, n).group_by(c.item_id).order_by(n.desc(), c.item_id).limit(limit))
    return [(str(item), int(count)) for item, count in rows]


def item_popularity(store: Store) -> list[int]:
    """Every item's event count, largest first (the long tail)."""
    c = t.interactions.c
    n = sa.func.count().label("n")
    query = sa.select(n).select_from(t.interactions).group_by(c.item_id).order_by(n.desc())
    return [int(r[0]) for r in _rows(store, query)]


def activity_counts(store: Store) -> list[int]:
    """Every user's event count (unordered)."""
    c = t.interactions.c
    query = sa.select(sa.func.count()).select_from(t.interactions).group_by(c.user_id)
    return [int(r[0]) for r in _rows(store, query)]


def user_history(store: Store, user_id: str, limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
    """The user's total event count and newest `limit` events with the item's title."""
    c, i = t.interactions.c, t.items.c
    total = int(_rows(store, sa.select(sa.func.count()).where(c.user_id == user_id))[0][0])
    query = (
        sa.select(c.timestamp, c.item_id, c.event_type, c.value, i.title)
        .select_from(t.interactions.outerjoin(t.items, c.item_id == i.item_id))
        .where(c.user_id == user_id)
        .order_by(c.timestamp.desc(), c.event_id)
        .limit(limit)
    )
    events = [
        {"timestamp": int(ts), "item_id": str(item), "event_type": kind, "value": value, "title": title}
        for ts, item, kind, value, title in _rows(store, query)
    ]
    return total, events


def user_exists(store: Store, user_id: str) -> bool:
    u = t.users.c
    return bool(_rows(store, sa.select(u.user_id).where(u.user_id == user_id)))


def item_row(store: Store, item_id: str) -> dict[str, Any] | None:
    """The catalogue row of `item_id` (every column), or None."""
    rows = _rows(store, sa.select(t.items).where(t.items.c.item_id == item_id))
    return dict(rows[0]._mapping) if rows else None


@dataclass(frozen=True)
class Engagement:
    """Who engages with an item: events by type, the most engaged users, the newest events."""

    total: int
    by_type: dict[str, int]
    top_users: list[tuple[str, int]]
    recent: list[dict[str, Any]]


def item_engagement(store: Store, item_id: str, limit: int = 10) -> Engagement:
    c = t.interactions.c
    mine = c.item_id == item_id
    by_type = {
        str(kind): int(n)
        for kind, n in _rows(store, sa.select(c.event_type, sa.func.count()).where(mine).group_by(c.event_type))
    }
    n = sa.func.count().label("n")
    top = _rows(store, sa.select(c.user_id, n).where(mine).group_by(c.user_id).order_by(n.desc(), c.user_id)
                .limit(limit))
    recent = _rows(store, sa.select(c.timestamp, c.user_id, c.event_type, c.value).where(mine)
                   .order_by(c.timestamp.desc(), c.event_id).limit(limit))
    return Engagement(
        total=sum(by_type.values()),
        by_type=dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        top_users=[(str(u), int(k)) for u, k in top],
        recent=[{"timestamp": int(ts), "user_id": str(u), "event_type": kind, "value": v} for ts, u, kind, v in recent],
    )


@dataclass(frozen=True)
class QuarantineFilter:
    """Which rejected records to show: `kind` exactly, `text` anywhere in source, location or run id,
    `reason` anywhere in the reason (case-insensitive; empty matches all)."""

    kind: str = ""
    text: str = ""
    reason: str = ""
    run_prefix: str = ""

    def where(self, query: sa.Select[Any]) -> sa.Select[Any]:
        q = t.quarantine.c
        if self.kind:
            query = query.where(q.kind == self.kind)
        if self.text:
            query = query.where(sa.or_(
                q.source.icontains(self.text, autoescape=True), q.location.icontains(self.text, autoescape=True),
                q.run_id.icontains(self.text, autoescape=True),
            ))
        if self.reason:
            query = query.where(q.reason.icontains(self.reason, autoescape=True))
        if self.run_prefix:
            query = query.where(q.run_id.startswith(self.run_prefix, autoescape=True))
        return query


QUARANTINE_COLUMNS = ("id", "run_id", "kind", "source", "location", "reason", "record", "created_at")


def quarantine_kinds(store: Store) -> list[str]:
    q = t.quarantine.c
    return [str(r[0]) for r in _rows(store, sa.select(q.kind).distinct().order_by(q.kind))]


def quarantine_rows(
    store: Store, where: QuarantineFilter, limit: int = 200, newest_first: bool = True
) -> tuple[int, list[dict[str, Any]]]:
    """How many records match, and the first `limit` of them (newest first by default)."""
    q = t.quarantine.c
    total = int(_rows(store, where.where(sa.select(sa.func.count()).select_from(t.quarantine)))[0][0])
    order = q.id.desc() if newest_first else q.id
    rows = _rows(store, where.where(sa.select(*(q[c] for c in QUARANTINE_COLUMNS))).order_by(order).limit(limit))
    return total, [dict(r._mapping) for r in rows]


def iter_quarantine(store: Store, where: QuarantineFilter, chunk: int = 5_000) -> Iterator[list[tuple[Any, ...]]]:
    """Every matching record in id order, in chunks (for the CSV export: memory stays bounded)."""
    q = t.quarantine.c
    last = -1
    while True:
        query = where.where(sa.select(*(q[c] for c in QUARANTINE_COLUMNS))).where(q.id > last).order_by(q.id)
        rows = _rows(store, query.limit(chunk))
        if not rows:
            return
        yield [tuple(r) for r in rows]
        last = int(rows[-1][0])


@dataclass(frozen=True)
class Found:
    users: list[str]
    items: list[dict[str, Any]]


def search(store: Store, text: str, limit: int = 20) -> Found:
    """Users whose id starts with `text`; items whose id starts with it or whose title contains it
    (case-insensitive). Exact id matches come first."""
    u, i = t.users.c, t.items.c
    users = [str(r[0]) for r in _rows(store, sa.select(u.user_id).where(
        sa.or_(u.user_id == text, u.user_id.startswith(text, autoescape=True))
    ).order_by((u.user_id != text), sa.func.length(u.user_id), u.user_id).limit(limit))]
    items = _rows(store, sa.select(i.item_id, i.title, i.category).where(sa.or_(
        i.item_id == text, i.item_id.startswith(text, autoescape=True), i.title.icontains(text, autoescape=True),
    )).order_by((i.item_id != text), i.title, i.item_id).limit(limit))
    return Found(users, [{"item_id": str(a), "title": b, "category": c} for a, b, c in items])


def dead_letters(store: Store, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """Records the stream rejected (it quarantines each one it sends to the dead-letter topic)."""
    return quarantine_rows(store, QuarantineFilter(run_prefix=f"{STREAM_SOURCE}-"), limit)
