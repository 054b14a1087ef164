"""Served answers: one row per answer served, its JSON as served, in place of one row per item shown.

The per-item rows cost the serving process a row and two index entries per item; readers now expand each
answer's `items` in the query. Old rows move over grouped by answer (request id, with the served_at, user
and version they share), each item keeping its position.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEY = "served_at, user_id, model_version, request_id"


def upgrade() -> None:
    op.create_table(
        "served_answers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("served_at", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("body", sa.Text().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.CheckConstraint("json_valid(body)", name="ck_served_answers_body_json").ddl_if(dialect="sqlite"),
    )
    if op.get_bind().dialect.name == "postgresql":
        body = ("jsonb_build_object('items', jsonb_agg(jsonb_build_object('item_id', item_id, 'position', position)"
                " ORDER BY position))")
        source = "impressions"
    else:
        # SQLite before 3.44 has no ORDER BY inside an aggregate: it aggregates rows in the order they arrive,
        # sorted here by the group and then position (each item carries its position anyway).
        body = "json_object('items', json_group_array(json_object('item_id', item_id, 'position', position)))"
        source = f"(SELECT * FROM impressions ORDER BY {_KEY}, position) AS imp"
    op.execute(
        f"INSERT INTO served_answers ({_KEY}, body) SELECT {_KEY}, {body} FROM {source} "
        f"GROUP BY {_KEY} ORDER BY min(id)"
    )
    op.drop_table("impressions")
    op.create_index("ix_served_answers_version_time", "served_answers", ["model_version", "served_at"])
    op.create_index("ix_served_answers_time", "served_answers", ["served_at"])


def downgrade() -> None:
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
    if op.get_bind().dialect.name == "postgresql":
        items = ("jsonb_array_elements(CASE jsonb_typeof(a.body -> 'items') WHEN 'array' THEN a.body -> 'items' END)"
                 " WITH ORDINALITY AS i(value, n)")
        item, position = "i.value ->> 'item_id'", "coalesce((i.value ->> 'position')::int, i.n)"
    else:
        items = "json_each(a.body, '$.items') AS i"
        item = "CAST(json_extract(i.value, '$.item_id') AS TEXT)"
        position = "coalesce(json_extract(i.value, '$.position'), i.key + 1)"
    op.execute(
        "INSERT INTO impressions (served_at, user_id, item_id, position, model_version, request_id) "
        f"SELECT a.served_at, a.user_id, {item}, {position}, a.model_version, a.request_id "
        f"FROM served_answers AS a CROSS JOIN {items} WHERE {item} IS NOT NULL ORDER BY a.id, {position}"
    )
    op.drop_table("served_answers")
    op.create_index("ix_impressions_version_time", "impressions", ["model_version", "served_at"])
    op.create_index("ix_impressions_time", "impressions", ["served_at"])
