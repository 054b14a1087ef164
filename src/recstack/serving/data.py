"""What the serving path reads from the operational store, as narrow indexed queries.

The `Store` protocol is built for bulk ingestion and training snapshots; a request needs one user's recent
events or the catalogue's filter columns, so these read the SQL tables directly (SQLite and PostgreSQL
alike, through the store's SQLAlchemy engine). The store stays the source of truth shared by every
worker process: an event one worker accepted is seen by all of them on their next request.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recstack.errors import BackendUnavailable
from recstack.processing.online import History, history_fingerprint
from recstack.processing.online_sql import HistoryReader, ThreadConnections, engine_of
from recstack.storage import Store
from recstack.storage import tables as t

__all__ = [
    "Catalog", "ChangeFeed", "History", "HistoryReader", "count_items", "engine_of", "history_fingerprint",
    "load_catalog", "ping", "row_watermark",
]

DAY_MS = 86_400_000


def _run(engine: sa.Engine, query: Any, params: dict[str, Any] | None = None) -> list[Any]:
    try:
        with engine.connect() as conn:
            return list(conn.execute(query, params or {}).all())
    except sa.exc.OperationalError as exc:
        raise BackendUnavailable(f"cannot reach the store: {exc.orig}") from exc


def row_watermark(engine: sa.Engine) -> int | None:
    """The largest interaction row number (SQLite: see `ChangeFeed`); None where rows have no such order."""
    if engine.dialect.name != "sqlite":
        return None
    return int(_run(engine, sa.text("SELECT max(rowid) FROM interactions"))[0][0] or 0)


def ping(store: Store) -> bool:
    try:
        _run(engine_of(store), sa.text("SELECT 1"))
    except (BackendUnavailable, sa.exc.SQLAlchemyError):
        return False
    return True


class ChangeFeed:
    """Which users' stored histories changed, and a per-user history *version*, without reading histories.

    Interactions are only ever appended, and SQLite numbers rows in commit order (one writer at a time, each
    new row one past the largest), so the largest row number is a watermark of everything stored, and a
    user's history is a function of the rows up to that user's newest row number. `sync` (one indexed
    `max(rowid)` lookup, a few microseconds) brings the feed up to the store's current watermark, reading
    only the rows added since the last call; `version(user)` is then the user's newest row number past the
    feed's `base`, 0 when none: equal versions in one process mean equal histories, across workers too
    (each reads the same store), so it keys cached answers and tells whether a plan made at a watermark
    still holds — what the history's fingerprint did, at the cost of a history read per request.

    Only for SQLite stores (`open`): PostgreSQL rows have no commit-ordered number, and there the request
    path reads the history. Memory: one entry per user who acted since `base`.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.connections = ThreadConnections(engine)
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self.watermark = self._newest()
        self.base = self.watermark

    @classmethod
    def open(cls, store: Store) -> ChangeFeed | None:
        """A feed over `store`'s interactions, or None where the backend cannot give one (see the class)."""
        try:
            engine = engine_of(store)
        except Exception:
            return None
        return cls(engine) if engine.dialect.name == "sqlite" else None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self.connections.query(sql, params)

    def _newest(self) -> int:
        return int(self._query("SELECT max(rowid) FROM interactions")[0][0] or 0)

    def sync(self) -> int:
        """Take in every row stored by now (any process); returns the watermark."""
        newest = self._newest()
        if newest != self.watermark:
            self._read(self.watermark, newest)
        return self.watermark

    def cover(self, since: int) -> bool:
        """Make `version` account for the rows after `since` too (a plan made at watermark `since`); False
        when the store holds fewer rows than `since` (the plans were made from another store)."""
        current = self.sync()
        if since > current:
            return False
        if since < self.base:
            self._read(since, self.base, below=True)
        return True

    def _read(self, after: int, upto: int, below: bool = False) -> None:
        rows = self._query(
            "SELECT rowid, user_id FROM interactions WHERE rowid > ? AND rowid <= ? ORDER BY rowid", (after, upto)
        )
        with self._lock:
            versions = self._versions
            for rowid, user_id in rows:
                if versions.get(user_id, 0) < rowid:
                    versions[user_id] = rowid
            if below:
                self.base = min(self.base, after)
            elif upto > self.watermark:
                self.watermark = upto

    def version(self, user_id: str) -> int:
        """The user's newest row number past `base` as of the last `sync` (0: none)."""
        return self._versions.get(user_id, 0)

    def close(self) -> None:
        self.connections.close()


@dataclass(frozen=True, eq=False)
class Catalog:
    """The catalogue columns filters need, aligned by position, plus trending scores.

    `category_code` numbers categories (-1: none) so a category filter is an integer comparison;
    `trending` is each item's count of non-skip events in the `window_days` before the newest event,
    normalised to [0, 1]; `trending_order` sorts positions by it, best first.
    """

    ids: np.ndarray
    category: np.ndarray
    category_code: np.ndarray
    codes: dict[str, int]
    available: np.ndarray
    duration_s: np.ndarray
    trending: np.ndarray
    trending_order: np.ndarray
    position: pd.Index

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, item_ids: np.ndarray | list[str]) -> np.ndarray:
        """Catalogue positions of `item_ids` (-1 where unknown)."""
        if len(item_ids) <= 64:
            lookup = self.lookup
            return np.array([lookup.get(i, -1) for i in item_ids], dtype=np.int64)
        return np.asarray(self.position.get_indexer(pd.Index(item_ids, dtype=object)), dtype=np.int64)

    def attributes(
        self, item_ids: np.ndarray | list[str], unknown_available: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, category codes and availability of `item_ids`, aligned to them: what the filters of the
        request path compare against. Ids the catalogue lacks get position and category -1 and
        `unknown_available`."""
        pos = self.positions(item_ids)
        known = pos >= 0
        code = np.full(len(pos), -1, dtype=np.int32)
        code[known] = self.category_code[pos[known]]
        available = np.full(len(pos), unknown_available, dtype=bool)
        available[known] = self.available[pos[known]]
        return pos, code, available

    @functools.cached_property
    def lookup(self) -> dict[str, int]:
        """Id → position, for the few-ids lookups of the request path (a dict beats an index there)."""
        return {str(item_id): i for i, item_id in enumerate(self.ids.tolist())}

    def with_unavailable(self, item_ids: set[str]) -> Catalog:
        """A copy where exactly `item_ids` are unavailable (self when nothing changes)."""
        available = np.ones(len(self.ids), dtype=bool)
        if item_ids:
            pos = self.positions(list(item_ids))
            available[pos[pos >= 0]] = False
        if np.array_equal(available, self.available):
            return self
        return Catalog(
            self.ids, self.category, self.category_code, self.codes, available, self.duration_s, self.trending,
            self.trending_order, self.position,
        )

    def with_item(self, item_id: str, category: str | None, available: bool, duration_s: float | None) -> Catalog:
        """A copy with one item inserted or updated (the arrays are never changed in place: readers in
        other threads keep a consistent view)."""
        pos = self.position.get_indexer([item_id])[0]
        duration = np.nan if duration_s is None else float(duration_s)
        codes = self.codes
        if category is not None and category not in codes:
            codes = {**codes, category: len(codes)}
        code = -1 if category is None else codes[category]
        if pos >= 0:
            cats, avail, dur = self.category.copy(), self.available.copy(), self.duration_s.copy()
            cat_code = self.category_code.copy()
            cats[pos], avail[pos], dur[pos], cat_code[pos] = category, available, duration, code
            return Catalog(
                self.ids, cats, cat_code, codes, avail, dur, self.trending, self.trending_order, self.position
            )
        ids = np.append(self.ids, np.array([item_id], dtype=object))
        trending = np.append(self.trending, np.float32(0.0))
        return Catalog(
            ids,
            np.append(self.category, np.array([category], dtype=object)),
            np.append(self.category_code, np.int32(code)).astype(np.int32),
            codes,
            np.append(self.available, available),
            np.append(self.duration_s, duration),
            trending,
            np.append(self.trending_order, len(self.ids)),
            pd.Index(ids, dtype=object),
        )


def unavailable_items(store: Store) -> set[str]:
    """Ids of items marked unavailable (a short list, read often so every worker follows catalogue edits)."""
    i = t.items.c
    return {r[0] for r in _run(engine_of(store), sa.select(i.item_id).where(i.available.is_(False)))}


def count_items(store: Store) -> int:
    """How many items the catalogue holds (one cheap query)."""
    return int(_run(engine_of(store), sa.select(sa.func.count()).select_from(t.items))[0][0])


def load_catalog(store: Store, window_days: float = 7.0, trending: bool = True) -> Catalog:
    """Items (id, category, availability, duration) and trending scores, read in two queries.

    `trending=False` skips the second (a scan of the window's events: seconds on millions of them) and
    leaves every trending score 0; a server starts on that and reads the full catalogue in the background."""
    engine = engine_of(store)
    i = t.items.c
    rows = _run(engine, sa.select(i.item_id, i.category, i.available, i.duration_s).order_by(i.item_id))
    ids = np.array([r[0] for r in rows], dtype=object)
    position = pd.Index(ids, dtype=object)
    scores = np.zeros(len(ids), dtype=np.float32)
    c = t.interactions.c
    newest = _run(engine, sa.select(sa.func.max(c.timestamp)))[0][0] if trending else None
    if newest is not None and len(ids):
        since = int(newest) - int(window_days * DAY_MS)
        counts = _run(
            engine,
            sa.select(c.item_id, sa.func.count())
            .where(c.timestamp >= since, c.event_type != "skip")
            .group_by(c.item_id),
        )
        if counts:
            pos = position.get_indexer(pd.Index([r[0] for r in counts], dtype=object))
            values = np.array([r[1] for r in counts], dtype=np.float32)
            known = pos >= 0
            scores[pos[known]] = values[known]
            top = scores.max()
            if top > 0:
                scores /= top
    category = np.array([r[1] for r in rows], dtype=object)
    code, uniques = pd.factorize(pd.Series(category, dtype=object), use_na_sentinel=True)
    return Catalog(
        ids=ids,
        category=category,
        category_code=code.astype(np.int32),
        codes={str(name): i for i, name in enumerate(uniques)},
        available=np.array([bool(r[2]) for r in rows], dtype=bool),
        duration_s=np.array([np.nan if r[3] is None else float(r[3]) for r in rows], dtype=np.float64),
        trending=scores,
        trending_order=np.argsort(-scores, kind="stable"),
        position=position,
    )
