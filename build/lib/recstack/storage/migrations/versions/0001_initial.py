"""Initial schema: users, items, interactions, preferences, ingest runs, quarantine.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", _ID, primary_key=True),
        sa.Column("created_at", sa.BigInteger),
        sa.Column("attributes", _DOC),
    )
    op.create_table(
        "items",
        sa.Column("item_id", _ID, primary_key=True),
        sa.Column("title", sa.Text),
        sa.Column("category", sa.String(256)),
        sa.Column("tags", _DOC),
        sa.Column("description", sa.Text),
        sa.Column("duration_s", sa.Float),
        sa.Column("created_at", sa.BigInteger),
        sa.Column("available", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("attributes", _DOC),
    )
    op.create_table(
        "interactions",
        sa.Column("event_id", _ID, primary_key=True),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("item_id", _ID, nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_interactions_user_time", "interactions", ["user_id", "timestamp"])
    op.create_index("ix_interactions_item", "interactions", ["item_id"])
    op.create_table(
        "preferences",
        sa.Column("user_id", _ID, primary_key=True),
        sa.Column("document", _DOC, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("read", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("accepted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duplicates", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_quarantine_run_id", "quarantine", ["run_id"])


def downgrade() -> None:
    for name in ("quarantine", "ingest_runs", "preferences", "interactions", "items", "users"):
        op.drop_table(name)
