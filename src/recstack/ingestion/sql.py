"""Any SQL database (an existing application's, typically) as a stream of `RawBatch`es.

The query runs once with a server-side cursor (`yield_per`), so a table of any size is pulled in bounded
chunks without the driver buffering the whole result. Columns keep the names the query gives them; the
pipeline's `IngestOptions.mapping` renames them to recstack fields, so the source database never needs
changing. Values keep their database types (numbers, datetimes, JSON); validation does the rest.

Failures are told apart so the user knows what to fix: a malformed URL, an unknown dialect or a missing
driver is a `ConfigurationError` (or `MissingExtra`), a server that cannot be reached is
`BackendUnavailable`, and a query the database refuses is a `ConfigurationError` carrying its message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from recstack.errors import BackendUnavailable, ConfigurationError, MissingExtra
from recstack.ingestion.pipeline import RawBatch
from recstack.schema import LOCATION
from recstack.storage.sql import normalise_url

log = logging.getLogger(__name__)

# Long enough for a slow VPN, short enough that a wrong host fails before the user gives up.
CONNECT_TIMEOUT_S = 10


def display_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and run logs."""
    try:
        parsed = url if isinstance(url, URL) else sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def _source_url(url: str) -> str:
    """`postgresql://` → psycopg 3, and `mysql://` / `mariadb://` → PyMySQL (the `mysql` extra), the drivers
    recstack installs; an explicit `dialect+driver://` is left alone."""
    for scheme in ("mysql://", "mariadb://"):
        if url.startswith(scheme):
            return "mysql+pymysql://" + url[len(scheme) :]
    return normalise_url(url)


def _parse(url: str) -> URL:
    try:
        parsed = sa.engine.make_url(_source_url(url))
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(
            f"not a SQLAlchemy URL: {url!r} (expected e.g. postgresql://user@host/db or sqlite:///path.db)"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        # SQLite would silently create an empty file and then fail with "no such table".
        in_file = bool(database) and database != ":memory:" and not str(database).startswith("file:")
        if in_file and not Path(str(database)).exists():
            raise ConfigurationError(f"no SQLite database at {database}")
    return parsed


def _engine(parsed: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() in {"postgresql", "mysql"} and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        return sa.create_engine(parsed, connect_args=connect_args, poolclass=sa.pool.NullPool)
    except sa.exc.NoSuchModuleError as exc:
        raise ConfigurationError(f"no SQLAlchemy dialect for {display_url(parsed)}: {exc}") from exc
    except ImportError as exc:
        if parsed.get_backend_name() == "postgresql":
            raise MissingExtra("psycopg", "postgres") from exc
        if parsed.get_driver_name() == "pymysql":
            raise MissingExtra("pymysql", "mysql") from exc
        raise ConfigurationError(
            f"the database driver for {display_url(parsed)} is not installed ({exc.name or exc}); install it "
            "into recstack's environment"
        ) from exc


def _first_line(exc: sa.exc.StatementError) -> str:
    """The driver's own message without SQLAlchemy's wrapping or the server's multi-line context."""
    text = str(exc.orig if exc.orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(engine: Engine, shown: str) -> Connection:
    try:
        return engine.connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise BackendUnavailable(f"cannot connect to {shown}: {_first_line(exc)}") from exc


def _frame(rows: Sequence[Any], columns: list[str], first_row: int) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns)
    frame[LOCATION] = [f"row {n}" for n in range(first_row, first_row + len(frame))]
    return frame


def read_sql(
    url: str,
    query: str,
    chunk_size: int = 50_000,
    params: Mapping[str, Any] | None = None,
) -> Iterator[RawBatch]:
    """Run `query` against the database at `url` and yield its rows in batches of `chunk_size`.

    `url` is any SQLAlchemy URL; `postgresql://` and `postgres://` use the psycopg 3 driver. `query` is SQL in
    the source database's dialect; `params` are bound to `:name` placeholders in it. Each batch's frame has
    one column per result column (named as the query names them) plus `_location` = "row N", N counting
    result rows from 1 across batches. SQL rows cannot be malformed the way text lines can, so `broken`
    is always empty: every row goes to validation.

    Nothing runs until the first batch is requested; the connection is closed when the iterator is
    exhausted or closed.

    Raises ConfigurationError (bad URL, unknown dialect, missing SQLite file, query refused, duplicate
    column names), MissingExtra (no psycopg), BackendUnavailable (server unreachable or lost mid-read).
    """
    if chunk_size <= 0:
        raise ConfigurationError(f"chunk_size must be positive, not {chunk_size}")
    parsed = _parse(url)
    shown = display_url(parsed)
    engine = _engine(parsed)
    try:
        with _connect(engine, shown) as conn:
            yield from _stream(conn, shown, query, chunk_size, params)
    finally:
        engine.dispose()


def _stream(
    conn: Connection, shown: str, query: str, chunk_size: int, params: Mapping[str, Any] | None
) -> Iterator[RawBatch]:
    try:
        result = conn.execution_options(yield_per=chunk_size).execute(sa.text(query), dict(params or {}))
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise BackendUnavailable(f"lost the connection to {shown}: {_first_line(exc)}") from exc
        raise ConfigurationError(f"{shown} refused the query: {_first_line(exc)}") from exc
    except sa.exc.StatementError as exc:
        raise ConfigurationError(f"cannot run the query on {shown}: {_first_line(exc)}") from exc
    if not result.returns_rows:
        raise ConfigurationError("the query returns no rows; pull records with a SELECT")
    columns = list(result.keys())
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ConfigurationError(
            f"the query returns {', '.join(repeated)} more than once; give each column its own alias"
        )
    read = 0
    try:
        for rows in result.partitions(chunk_size):
            frame = _frame(rows, columns, read + 1)
            read += len(frame)
            yield RawBatch(frame)
    except sa.exc.DBAPIError as exc:
        reason = _first_line(exc)
        raise BackendUnavailable(f"reading from {shown} failed after {read:,} rows: {reason}") from exc
    finally:
        result.close()
    log.info("read %d rows from %s", read, shown)


__all__ = ["display_url", "read_sql"]
