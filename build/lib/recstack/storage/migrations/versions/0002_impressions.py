"""Impressions: every item of every answer served, with the model version that served it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "impressions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("served_at", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("request_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_impressions_version_time", "impressions", ["model_version", "served_at"])
    op.create_index("ix_impressions_time", "impressions", ["served_at"])


def downgrade() -> None:
    op.drop_table("impressions")
