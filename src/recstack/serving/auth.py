"""API keys and scopes: who is calling, and what they may do.

A key is `rk_<id>_<secret>`; the store keeps only its SHA-256 (`key_hash`), so a leaked database does not
leak keys. Scopes are ordered, each including the ones before it: `read` (recommendations, similar items),
`write` (events, item and user upserts), `admin` (models, keys, and optionally /metrics and /docs).

`KeyRing.authenticate(token)` looks the hash up in the store and keeps the answer (found or not) for
`ttl_s` seconds, so the hot path costs a hash and a dict lookup, and a revoked key stops working within
`ttl_s`. With `auth: none` the app has no key ring (`app.state.keyring is None`) and every caller is
`ANONYMOUS_ADMIN`.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from recstack.errors import InvalidRecord
from recstack.storage.store import ApiKey, Store

__all__ = [
    "ANONYMOUS_ADMIN",
    "Caller",
    "IssuedKey",
    "KeyRing",
    "Scope",
    "hash_key",
    "issue_key",
    "token_from_headers",
]

PREFIX = "rk_"


class Scope(enum.IntEnum):
    """What a key may do; a higher scope includes every lower one (`caller.scope >= Scope.WRITE`)."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Scope:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise InvalidRecord(f"scope: must be one of read, write, admin (got {name!r})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Caller:
    """The authenticated party of a request: the key's id and name, and its scope."""

    key_id: str
    name: str
    scope: Scope


ANONYMOUS_ADMIN = Caller(key_id="anonymous", name="auth disabled", scope=Scope.ADMIN)


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: `token` is shown once and never stored."""

    record: ApiKey
    token: str


def hash_key(token: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_key(store: Store, scope: Scope, name: str = "") -> IssuedKey:
    """Create a key of `scope` in `store`; the returned token is the only copy of the secret."""
    if len(name) > 128:
        raise InvalidRecord("name: at most 128 characters")
    key_id = secrets.token_hex(6)
    token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
    record = store.add_api_key(key_id, name or key_id, scope.label, hash_key(token))
    return IssuedKey(record, token)


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>` or `X-API-Key: <key>`; None without one.

    `headers` is case-insensitive (Starlette's) or a plain mapping with lower-case names."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class KeyRing:
    """Authenticates tokens against the store's keys, with a bounded TTL cache of lookups by hash."""

    def __init__(
        self, store: Store, ttl_s: float = 5.0, max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._seen: dict[str, tuple[float, Caller | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> Caller | None:
        """The caller `token` belongs to, or None for a malformed, unknown or revoked key."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        digest = hash_key(token)
        now = self._clock()
        seen = self._seen.get(digest)
        if seen is not None and seen[0] > now:
            return seen[1]
        record = self.store.api_key_by_hash(digest)
        caller = None
        if record is not None and record.revoked_at is None:
            caller = Caller(key_id=record.key_id, name=record.name, scope=Scope.parse(record.scope))
        with self._lock:
            if len(self._seen) >= self.max_entries:
                self._seen = {h: v for h, v in self._seen.items() if v[0] > now}
                if len(self._seen) >= self.max_entries:
                    self._seen.clear()
            self._seen[digest] = (now + self.ttl_s, caller)
        return caller

    def forget(self) -> None:
        """Drop every cached lookup (after this process revoked a key)."""
        with self._lock:
            self._seen.clear()
