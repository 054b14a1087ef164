"""The online state read straight from the operational store (`sql`): the embedded default.

The store is already the source of truth every worker shares, and the stream processor writes each batch
there before it updates any online state, so reading the store's indexed tables *is* an up-to-date online
state: `apply` has nothing left to do. `HistoryReader` is the request path's one query.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from recstack.errors import BackendUnavailable, ConfigurationError
from recstack.processing.online import History
from recstack.storage import Store
from recstack.storage import tables as t
from recstack.storage.sql import SqlStore

__all__ = ["HistoryReader", "SqlOnlineState", "ThreadConnections", "engine_of"]


def engine_of(store: Store) -> sa.Engine:
    if not isinstance(store, SqlStore):
        raise ConfigurationError(f"this needs a SQL store, got {type(store).__name__}")
    return store.engine


class ThreadConnections:
    """One raw driver connection per thread, for the queries of the request path.

    They skip SQLAlchemy's statement building (several times a point query's own cost on SQLite). Connections
    are autocommit (PostgreSQL) or outside any transaction (SQLite reads), so every read sees the latest
    committed rows; a connection that fails is dropped and the thread's next query opens a new one.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close every connection opened here, whichever thread opened it (at server shutdown)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            with contextlib.suppress(Exception):
                conn.close()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self.engine.raw_connection()
            except sa.exc.OperationalError as exc:
                raise BackendUnavailable(f"cannot reach the store: {exc.orig}") from exc
            driver = conn.driver_connection
            if self.engine.dialect.name == "postgresql" and driver is not None:
                driver.autocommit = True
            elif self.engine.dialect.name == "sqlite":
                # Memory-mapped reads: a request touches a few random index pages, and copying them through
                # SQLite's small page cache costs more than the lookup itself.
                cursor = conn.cursor()
                cursor.execute("PRAGMA mmap_size = 4294967296")
                cursor.close()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """The rows of one statement; `BackendUnavailable` when the store cannot be reached or read."""
        conn = self._connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except Exception as exc:
            self._local.conn = None
            with contextlib.suppress(Exception):
                conn.invalidate()
            raise BackendUnavailable(f"cannot read the store: {exc}") from exc


class HistoryReader:
    """Reads one user's newest events on a raw driver connection kept per thread.

    This is the one query on the request path, so it skips SQLAlchemy's statement building (several times
    the query's own cost on SQLite). Connections are autocommit (PostgreSQL) or outside any transaction
    (SQLite reads), so every read sees the latest committed events; a connection that fails is dropped
    and the next call opens a new one.
    """

    def __init__(self, store: Store, limit: int = 500) -> None:
        self.engine = engine_of(store)
        self.limit = limit
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self.sql = (
            f"SELECT item_id, event_type, value FROM interactions WHERE user_id = {mark} "
            f'ORDER BY "timestamp" DESC LIMIT {int(limit)}'
        )
        self.connections = ThreadConnections(self.engine)

    def close(self) -> None:
        """Close every connection this reader opened (at server shutdown)."""
        self.connections.close()

    def __call__(self, user_id: str) -> History:
        return History.of(self.connections.query(self.sql, (user_id,)))

    def scan(self, batch_size: int = 20_000) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """Every user's newest `limit` rows, as `__call__` reads them, user by user (one streamed query).

        Ties in timestamp are ordered as the per-user query's index scan orders them (by row position,
        newest last), so the rows and their fingerprint match what a request reads; where a backend orders
        ties otherwise, the fingerprints differ and those requests just take the live path.
        """
        dialect = self.engine.dialect.name
        tie = {"sqlite": ", rowid DESC", "postgresql": ", ctid DESC"}.get(dialect, "")
        sql = (
            'SELECT user_id, item_id, event_type, value FROM interactions ORDER BY user_id, "timestamp" DESC'
            + tie
        )
        try:
            conn = self.engine.raw_connection()
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(f"cannot reach the store: {exc.orig}") from exc
        try:
            # A server-side cursor on PostgreSQL, so the whole table never sits in memory at once.
            driver = conn.driver_connection
            if dialect == "postgresql" and driver is not None:
                cursor = driver.cursor(name="recstack_scan")
            else:
                cursor = conn.cursor()
            cursor.execute(sql)
            user: str | None = None
            rows: list[tuple[Any, ...]] = []
            while chunk := cursor.fetchmany(batch_size):
                for row in chunk:
                    if row[0] != user:
                        if user is not None:
                            yield user, rows
                        user, rows = row[0], []
                    if len(rows) < self.limit:
                        rows.append(row[1:])
            if user is not None:
                yield user, rows
            cursor.close()
        finally:
            with contextlib.suppress(Exception):
                conn.close()


class SqlOnlineState:
    """`OnlineState` over the store's tables (see the module docstring)."""

    def __init__(self, store: Store, limit: int = 500) -> None:
        self.url = "sql"
        self.store = store
        self.engine = engine_of(store)
        self.reader = HistoryReader(store, limit)

    @classmethod
    def from_url(cls, url: str, store: Store | None = None, limit: int = 500) -> SqlOnlineState:
        if store is None:
            raise ConfigurationError("the sql online state reads the store: open it with a store")
        return cls(store, limit)

    def apply(self, events: pd.DataFrame) -> None:
        return None

    def history(self, user_id: str) -> History:
        return self.reader(user_id)

    def trending(self, window_ms: int) -> dict[str, int]:
        c = t.interactions.c
        try:
            with self.engine.connect() as conn:
                newest = conn.execute(sa.select(sa.func.max(c.timestamp))).scalar()
                if newest is None:
                    return {}
                rows = conn.execute(
                    sa.select(c.item_id, sa.func.count())
                    .where(c.timestamp >= int(newest) - int(window_ms), c.event_type != "skip")
                    .group_by(c.item_id)
                ).all()
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(f"cannot reach the store: {exc.orig}") from exc
        return {str(r[0]): int(r[1]) for r in rows}

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        return None

    def catalog_epoch(self) -> int:
        return 0

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        self.reader.close()
