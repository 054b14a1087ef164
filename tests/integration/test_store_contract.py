"""The store contract on every backend: SQLite (embedded) and the real PostgreSQL server (the parametrised
`store` fixture of tests/conftest.py)."""

from __future__ import annotations

from recstack.testing.store import StoreContract


class TestStore(StoreContract):
    pass
