"""SQLAlchemy Core tables of the operational store; Alembic migrations create them.

Times are Unix epoch milliseconds (BIGINT) on every backend: one representation, no time-zone surprises,
and the fastest bulk path on both SQLite and PostgreSQL. Snapshots turn them into proper timestamps.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

Document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(256), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=True),
    sa.Column("attributes", Document, nullable=True),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("item_id", sa.String(256), primary_key=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("category", sa.String(256), nullable=True),
    sa.Column("tags", Document, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("duration_s", sa.Float, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=True),
    sa.Column("available", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("attributes", Document, nullable=True),
)

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("event_id", sa.String(256), primary_key=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("item_id", sa.String(256), nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Index("ix_interactions_user_time", "user_id", "timestamp"),
    sa.Index("ix_interactions_item", "item_id"),
)

preferences = sa.Table(
    "preferences",
    metadata,
    sa.Column("user_id", sa.String(256), primary_key=True),
    sa.Column("document", Document, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    sa.Column("read", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("accepted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("duplicates", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=True),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=True, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# One row per answer served, its JSON as served: the readers expand `items` into impressions (one per item).
# The body is JSON by the store's own check: JSONB on PostgreSQL, json_valid() on SQLite.
AnswerBody = sa.Text().with_variant(postgresql.JSONB(), "postgresql")

served_answers = sa.Table(
    "served_answers",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("served_at", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("body", AnswerBody, nullable=False),
    sa.CheckConstraint("json_valid(body)", name="ck_served_answers_body_json").ddl_if(dialect="sqlite"),
    sa.Index("ix_served_answers_version_time", "model_version", "served_at"),
    sa.Index("ix_served_answers_time", "served_at"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
)
