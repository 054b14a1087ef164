"""The API-key part of the SQL store (a mixin of `SqlStore`): keys are stored by hash, never in clear."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from recstack.errors import InvalidRecord
from recstack.storage import tables as t
from recstack.storage.store import ApiKey

__all__ = ["ApiKeyRows"]


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.key_id, name=row.name, scope=row.scope, key_hash=row.key_hash,
        created_at=int(row.created_at), revoked_at=None if row.revoked_at is None else int(row.revoked_at),
    )


class ApiKeyRows:
    """`add_api_key`, `api_keys`, `api_key_by_hash`, `revoke_api_key` over the `api_keys` table."""

    def _connect(self) -> Any:
        raise NotImplementedError

    def add_api_key(self, key_id: str, name: str, scope: str, key_hash: str) -> ApiKey:
        record = ApiKey(key_id, name, scope, key_hash, int(time.time() * 1000))
        try:
            with self._connect() as conn:
                conn.execute(sa.insert(t.api_keys).values(
                    key_id=key_id, name=name, scope=scope, key_hash=key_hash, created_at=record.created_at,
                ))
        except sa.exc.IntegrityError as exc:
            raise InvalidRecord(f"key_id: a key with id {key_id!r} or the same hash exists") from exc
        return record

    def api_keys(self) -> list[ApiKey]:
        with self._connect() as conn:
            rows = conn.execute(sa.select(t.api_keys).order_by(t.api_keys.c.created_at, t.api_keys.c.key_id))
            return [_key(row) for row in rows]

    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self._connect() as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.key_hash == key_hash)).first()
        return None if row is None else _key(row)

    def revoke_api_key(self, key_id: str) -> bool:
        stmt = (
            sa.update(t.api_keys)
            .where(t.api_keys.c.key_id == key_id, t.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=int(time.time() * 1000))
        )
        with self._connect() as conn:
            return bool(conn.execute(stmt).rowcount)
