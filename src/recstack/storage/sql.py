"""The operational store on SQLAlchemy Core: SQLite (embedded default, WAL) and PostgreSQL (production).

One code path; the only dialect branches are the bulk writes (COPY through a staging table on PostgreSQL,
`INSERT OR IGNORE` executemany on SQLite) and bulk id creation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from recstack.errors import BackendUnavailable, MissingExtra
from recstack.schema import INTERACTION_COLUMNS, RecordKind
from recstack.storage import tables as t
from recstack.storage.api_keys import ApiKeyRows
from recstack.storage.impressions import (
    FEEDBACK_COLUMNS,
    IMPRESSION_COLUMNS,
    ImpressionRow,
    PositiveRule,
    ServedAnswer,
)
from recstack.storage.store import IngestRun, WriteResult

log = logging.getLogger(__name__)

_ID_TABLES: dict[str, sa.Table] = {"users": t.users, "items": t.items}
_IN_BATCH = 5_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def normalise_url(url: str) -> str:
    """Map `postgres://` and `postgresql://` to the psycopg 3 driver; leave explicit drivers alone."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV for COPY without a header; missing values become empty fields, which COPY reads as NULL."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), sink, pacsv.WriteOptions(include_header=False))
    return bytes(sink.getvalue())


def _nullable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame.notna(), None)


class SqlStore(ApiKeyRows):
    """A Store on any SQLAlchemy URL whose dialect is SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        if self.url.startswith("postgresql"):
            try:
                import psycopg  # noqa: F401
            except ImportError as exc:
                raise MissingExtra("psycopg", "postgres") from exc
        self.engine: Engine = self._create_engine()
        self.dialect = self.engine.dialect.name

    def _create_engine(self) -> Engine:
        if self.url.startswith("sqlite"):
            path = sa.engine.make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(self.url, connect_args={"timeout": 30})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        return sa.create_engine(self.url, pool_pre_ping=True)

    def _connect(self) -> Any:
        try:
            return self.engine.begin()
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(f"cannot reach the store at {self.engine.url!r}: {exc.orig}") from exc

    # schema -----------------------------------------------------------------------------------------
    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to `revision` (the latest by default; an older one for testing a migration)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("recstack.storage") / "migrations"))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(f"cannot reach the store at {self.engine.url!r}: {exc.orig}") from exc

    def revision(self) -> str | None:
        with self._connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    # writes -----------------------------------------------------------------------------------------
    def write_interactions(self, rows: pd.DataFrame) -> WriteResult:
        if rows.empty:
            return WriteResult(0, 0)
        rows = rows.loc[:, list(INTERACTION_COLUMNS)]
        with self._connect() as conn:
            if self.dialect == "postgresql":
                inserted = self._copy_interactions(conn, rows)
            else:
                value = rows["value"]
                params = list(
                    zip(
                        rows["event_id"].tolist(), rows["user_id"].tolist(), rows["item_id"].tolist(),
                        rows["event_type"].tolist(), value.astype(object).where(value.notna(), None).tolist(),
                        rows["timestamp"].tolist(), strict=True,
                    )
                )
                result = conn.exec_driver_sql(
                    "INSERT OR IGNORE INTO interactions (event_id, user_id, item_id, event_type, value, "
                    '"timestamp") VALUES (?, ?, ?, ?, ?, ?)',
                    params,
                )
                inserted = int(result.rowcount)
        return WriteResult(inserted, len(rows) - inserted)

    @staticmethod
    def _copy_interactions(conn: Connection, rows: pd.DataFrame) -> int:
        """COPY straight into the table after dropping ids already stored (one index probe per row).

        That is about half the server work of COPY into a staging table plus INSERT … ON CONFLICT. If a
        concurrent writer stores one of the ids in between, the COPY fails as a whole (inside a savepoint)
        and the chunk takes the staging path instead, so the result is the same either way.
        """
        import psycopg

        raw = conn.connection.driver_connection
        assert raw is not None
        columns = ", ".join(f'"{c}"' for c in INTERACTION_COLUMNS)
        with raw.cursor() as cur:
            cur.execute("SELECT event_id FROM interactions WHERE event_id = ANY(%s)", (rows["event_id"].tolist(),))
            stored = {r[0] for r in cur.fetchall()}
            fresh = rows.loc[~rows["event_id"].isin(stored)] if stored else rows
            if fresh.empty:
                return 0
            payload = _csv_bytes(fresh)
            try:
                with raw.transaction(), cur.copy(f"COPY interactions ({columns}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(payload)
                return len(fresh)
            except psycopg.errors.UniqueViolation:
                log.info("concurrent writer stored some event ids; using the staging path")
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS stage_interactions "
                "(LIKE interactions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY stage_interactions ({columns}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(payload)
            cur.execute(
                f"INSERT INTO interactions ({columns}) SELECT {columns} FROM stage_interactions "
                "ON CONFLICT (event_id) DO NOTHING"
            )
            inserted = int(cur.rowcount)
            cur.execute("TRUNCATE stage_interactions")
            return inserted

    def _insert(self, table: sa.Table) -> Any:
        module = pg_dialect if self.dialect == "postgresql" else sqlite_dialect
        return module.insert(table)

    def _existing(self, conn: Connection, table: sa.Table, key: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        column = table.c[key]
        for start in range(0, len(ids), _IN_BATCH):
            batch = ids[start : start + _IN_BATCH]
            found.update(conn.execute(sa.select(column).where(column.in_(batch))).scalars())
        return found

    def _upsert(self, table: sa.Table, key: str, rows: pd.DataFrame) -> WriteResult:
        if rows.empty:
            return WriteResult(0, 0)
        records = _nullable(rows).to_dict("records")
        stmt = self._insert(table)
        # A missing value in an update means "unknown", not "erase": keep what the store already knows.
        update = {c: sa.func.coalesce(stmt.excluded[c], table.c[c]) for c in rows.columns if c != key}
        stmt = stmt.on_conflict_do_update(index_elements=[key], set_=update)
        with self._connect() as conn:
            existing = self._existing(conn, table, key, rows[key].tolist())
            conn.execute(stmt, records)
        return WriteResult(len(rows) - len(existing), len(existing))

    def upsert_items(self, rows: pd.DataFrame) -> WriteResult:
        return self._upsert(t.items, "item_id", rows)

    def upsert_users(self, rows: pd.DataFrame) -> WriteResult:
        return self._upsert(t.users, "user_id", rows)

    def ensure_ids(self, kind: RecordKind, ids: Iterable[str]) -> int:
        table = _ID_TABLES[kind]
        key = table.primary_key.columns.values()[0].name
        unique = list(dict.fromkeys(ids))
        if not unique:
            return 0
        now = _now_ms()
        with self._connect() as conn:
            if self.dialect == "postgresql":
                result = conn.execute(
                    sa.text(
                        f"INSERT INTO {table.name} ({key}, created_at) "
                        "SELECT x, :now FROM unnest(CAST(:ids AS text[])) AS x ON CONFLICT DO NOTHING"
                    ),
                    {"ids": unique, "now": now},
                )
            else:
                result = conn.exec_driver_sql(
                    f"INSERT OR IGNORE INTO {table.name} ({key}, created_at) VALUES (?, ?)",
                    [(i, now) for i in unique],
                )
            return int(result.rowcount)

    def known_ids(self, kind: RecordKind) -> set[str]:
        table = _ID_TABLES[kind]
        with self._connect() as conn:
            return set(conn.execute(sa.select(table.primary_key.columns.values()[0])).scalars())

    def existing_ids(self, kind: RecordKind, ids: Iterable[str]) -> set[str]:
        table, key = (t.interactions, "event_id") if kind == "interactions" else (
            _ID_TABLES[kind], "user_id" if kind == "users" else "item_id")
        unique = list(dict.fromkeys(ids))
        if not unique:
            return set()
        with self._connect() as conn:
            return self._existing(conn, table, key, unique)

    # quarantine and runs ----------------------------------------------------------------------------
    def quarantine(self, run_id: str, kind: RecordKind, source: str, rejected: pd.DataFrame) -> None:
        if rejected.empty:
            return
        now = _now_ms()
        records = [
            {"run_id": run_id, "kind": kind, "source": source, "location": loc, "reason": reason,
             "record": record, "created_at": now}
            for loc, reason, record in rejected[["location", "reason", "record"]].itertuples(index=False)
        ]
        with self._connect() as conn:
            conn.execute(sa.insert(t.quarantine), records)

    def list_quarantine(self, limit: int | None = 100, run_id: str | None = None) -> pd.DataFrame:
        query = sa.select(t.quarantine).order_by(t.quarantine.c.id)
        if run_id is not None:
            query = query.where(t.quarantine.c.run_id == run_id)
        if limit is not None:
            query = query.limit(limit)
        with self._connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=list(t.quarantine.c.keys()))

    def clear_quarantine(self, run_id: str | None = None) -> int:
        stmt = sa.delete(t.quarantine)
        if run_id is not None:
            stmt = stmt.where(t.quarantine.c.run_id == run_id)
        with self._connect() as conn:
            return int(conn.execute(stmt).rowcount)

    def save_run(self, run: IngestRun) -> None:
        values = {
            "run_id": run.run_id, "kind": run.kind, "source": run.source, "started_at": run.started_at,
            "finished_at": run.finished_at, "read": run.read, "accepted": run.accepted,
            "duplicates": run.duplicates, "rejected": run.rejected,
            "error": "; ".join(run.errors) or None,
        }
        stmt = self._insert(t.ingest_runs).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id"], set_={k: v for k, v in values.items() if k != "run_id"}
        )
        with self._connect() as conn:
            conn.execute(stmt)

    def list_runs(self, limit: int = 20) -> pd.DataFrame:
        query = sa.select(t.ingest_runs).order_by(t.ingest_runs.c.started_at.desc()).limit(limit)
        with self._connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=list(t.ingest_runs.c.keys()))

    # reads ------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        names = {"users": t.users, "items": t.items, "interactions": t.interactions,
                 "quarantined": t.quarantine, "preferences": t.preferences}
        with self._connect() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
                for name, table in names.items()
            }

    def iter_interactions(self, chunk_size: int = 100_000) -> Iterator[pd.DataFrame]:
        cols = [t.interactions.c[c] for c in INTERACTION_COLUMNS]
        last: str | None = None
        while True:
            query = sa.select(*cols).order_by(t.interactions.c.event_id).limit(chunk_size)
            if last is not None:
                query = query.where(t.interactions.c.event_id > last)
            with self._connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            frame = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
            frame["value"] = frame["value"].astype("float64")
            frame["timestamp"] = frame["timestamp"].astype("int64")
            last = str(frame["event_id"].iloc[-1])
            yield frame
            if len(rows) < chunk_size:
                return

    def _read_table(self, table: sa.Table) -> pd.DataFrame:
        with self._connect() as conn:
            rows = conn.execute(sa.select(table)).mappings().all()
        return pd.DataFrame(rows, columns=list(table.c.keys()))

    def read_items(self) -> pd.DataFrame:
        return self._read_table(t.items)

    def read_users(self) -> pd.DataFrame:
        return self._read_table(t.users)

    def put_preferences(self, user_id: str, document: dict[str, Any]) -> None:
        json.dumps(document)  # reject what cannot round-trip before it reaches the database
        stmt = self._insert(t.preferences).values(user_id=user_id, document=document, updated_at=_now_ms())
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={"document": stmt.excluded.document, "updated_at": stmt.excluded.updated_at},
        )
        with self._connect() as conn:
            conn.execute(stmt)

    def get_preferences(self, user_id: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            doc = conn.execute(
                sa.select(t.preferences.c.document).where(t.preferences.c.user_id == user_id)
            ).scalar()
        return dict(doc) if doc is not None else None

    # impressions ------------------------------------------------------------------------------------
    def write_impressions(self, rows: pd.DataFrame) -> int:
        if rows.empty:
            return 0
        frame = rows.loc[:, list(IMPRESSION_COLUMNS)]
        return self.write_impression_rows([
            (int(at), str(user), str(item), int(pos), None if pd.isna(version) else int(version), str(request))
            for at, user, item, pos, version, request in frame.itertuples(index=False)
        ])

    def write_impression_rows(self, rows: Sequence[ImpressionRow]) -> int:
        if not rows:
            return 0
        # One answer per (served_at, user, version, request): rows that disagree on any of them stay apart, so a
        # row breaking a constraint still fails the call. Each item keeps its own position.
        answers: dict[tuple[int, str, int | None, str], list[tuple[int, str]]] = {}
        for at, user, item, position, version, request in rows:
            answers.setdefault((at, user, version, request), []).append((position, item))
        return self.write_answer_impressions([
            (at, user, version, request,
             json.dumps({"items": [{"item_id": i, "position": p} for p, i in sorted(items)]}).encode())
            for (at, user, version, request), items in answers.items()
        ])

    def write_answer_impressions(self, answers: Sequence[ServedAnswer]) -> int:
        if not answers:
            return 0
        # One row per answer, its body as is: no Python object per item in the serving process. The database
        # checks it is JSON (SQLite's CHECK json_valid, PostgreSQL's jsonb) and counts its items in the same
        # transaction, which is what the log reports as written.
        # As text: SQLite's JSON functions refuse a BLOB, PostgreSQL casts text, not bytea, to jsonb.
        with self._connect() as conn:
            if self.dialect == "sqlite":
                # The batch as one JSON array and one statement: executemany would hand the GIL back and forth
                # with the serving thread once per row.
                batch = orjson.dumps([[at, user, version, request, body.decode()]
                                      for at, user, version, request, body in answers]).decode()
                inserted = conn.exec_driver_sql(
                    "INSERT INTO served_answers (served_at, user_id, model_version, request_id, body) "
                    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
                    "json_extract(value, '$[3]'), json_extract(value, '$[4]') FROM json_each(?) ORDER BY key",
                    (batch,),
                ).rowcount
                # This transaction holds the write lock: its rows are the last `inserted` row ids.
                items = conn.exec_driver_sql(
                    "SELECT sum(json_array_length(body, '$.items')) FROM served_answers "
                    "WHERE id > last_insert_rowid() - ?", (inserted,),
                ).scalar()
            else:
                at, user, version, request, body = (list(column) for column in zip(*answers, strict=True))
                items = conn.exec_driver_sql(
                    "WITH added AS (INSERT INTO served_answers (served_at, user_id, model_version, request_id, body) "
                    "SELECT a, u, v, r, b::jsonb FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::text[], "
                    "%s::text[]) AS x(a, u, v, r, b) RETURNING body) "
                    "SELECT sum(CASE jsonb_typeof(body -> 'items') WHEN 'array' "
                    "THEN jsonb_array_length(body -> 'items') END) FROM added",
                    (at, user, version, request, [b.decode() for b in body]),
                ).scalar()
        return int(items or 0)

    def _shown(self, start_ms: int, end_ms: int, model_versions: Iterable[int] | None) -> sa.Subquery:
        """The impressions (`IMPRESSION_COLUMNS`) in the answers served in [start_ms, end_ms): each answer's
        `items` expanded in the query, an item without an `item_id` skipped. An item's position is its own
        (answers rebuilt from rows carry one) or its place in the array."""
        if self.dialect == "sqlite":
            items = "json_each(a.body, '$.items') AS i"
            item = "CAST(json_extract(i.value, '$.item_id') AS TEXT)"
            position = "coalesce(json_extract(i.value, '$.position'), i.key + 1)"
        else:
            # jsonb_array_elements refuses a non-array: an answer whose `items` is not one has none.
            items = ("jsonb_array_elements(CASE jsonb_typeof(a.body -> 'items') WHEN 'array' THEN a.body -> 'items' "
                     "END) WITH ORDINALITY AS i(value, n)")
            item, position = "i.value ->> 'item_id'", "coalesce((i.value ->> 'position')::int, i.n)"
        where = "a.served_at >= :start AND a.served_at < :end"
        params: dict[str, Any] = {"start": int(start_ms), "end": int(end_ms)}
        query = sa.text(
            f"SELECT a.served_at, a.user_id, {item} AS item_id, {position} AS position, a.model_version, a.request_id "
            f"FROM served_answers AS a CROSS JOIN {items} WHERE {where} AND {item} IS NOT NULL"
            + (" AND a.model_version IN :versions" if model_versions is not None else "")
        )
        if model_versions is not None:
            query = query.bindparams(sa.bindparam("versions", expanding=True))
            params["versions"] = [int(v) for v in model_versions]
        return query.bindparams(**params).columns(
            sa.column("served_at", sa.BigInteger), sa.column("user_id", sa.String),
            sa.column("item_id", sa.String), sa.column("position", sa.Integer),
            sa.column("model_version", sa.Integer), sa.column("request_id", sa.String),
        ).subquery("shown")

    def read_impressions(
        self, start_ms: int, end_ms: int, model_versions: Iterable[int] | None = None
    ) -> pd.DataFrame:
        imp = self._shown(start_ms, end_ms, model_versions)
        query = sa.select(*[imp.c[name] for name in IMPRESSION_COLUMNS]).order_by(
            imp.c.served_at, imp.c.request_id, imp.c.position
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=list(IMPRESSION_COLUMNS))
        for name in ("served_at", "position"):
            frame[name] = frame[name].astype("int64")
        frame["model_version"] = frame["model_version"].astype("Int64")
        return frame

    def feedback_rates(
        self,
        start_ms: int,
        end_ms: int,
        window_ms: int,
        rule: PositiveRule | None = None,
        model_versions: Iterable[int] | None = None,
    ) -> pd.DataFrame:
        rule = rule or PositiveRule()
        imp, x = self._shown(start_ms, end_ms, model_versions), t.interactions
        positive = sa.or_(
            x.c.event_type.in_(list(rule.event_types)),
            sa.and_(x.c.event_type == "watch", x.c.value >= rule.watch_min_s),
            sa.and_(x.c.event_type == "rating", x.c.value >= rule.rating_min),
        )
        hit = (
            sa.exists()
            .where(x.c.user_id == imp.c.user_id, x.c.item_id == imp.c.item_id)
            .where(x.c.timestamp >= imp.c.served_at, x.c.timestamp <= imp.c.served_at + int(window_ms))
            .where(positive)
        )
        query = (
            sa.select(
                imp.c.model_version,
                sa.func.count().label("impressions"),
                sa.func.sum(sa.case((hit, 1), else_=0)).label("positives"),
            )
            .group_by(imp.c.model_version)
            .order_by(imp.c.model_version)
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=list(FEEDBACK_COLUMNS[:3]))
        frame["model_version"] = frame["model_version"].astype("Int64")
        frame["impressions"] = frame["impressions"].astype("int64")
        frame["positives"] = frame["positives"].fillna(0).astype("int64")
        frame["rate"] = (frame["positives"] / frame["impressions"]).astype("float64")
        return frame

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["SqlStore", "normalise_url"]
