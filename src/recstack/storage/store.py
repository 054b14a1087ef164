"""The Store protocol: what the rest of recstack needs from an operational database.

`open_store(url)` picks the implementation by the URL's scheme. SQLAlchemy Core already hides the
difference between SQLite and PostgreSQL, so one class serves both; dialect branches stay inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from recstack.schema import RecordKind
from recstack.storage.impressions import ImpressionRow, PositiveRule, ServedAnswer


@dataclass
class IngestRun:
    """What one ingestion run did; `rejected` records are in the quarantine under `run_id`."""

    run_id: str
    kind: RecordKind
    source: str
    started_at: int
    finished_at: int | None = None
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, read: int = 0, accepted: int = 0, duplicates: int = 0, rejected: int = 0) -> None:
        self.read += read
        self.accepted += accepted
        self.duplicates += duplicates
        self.rejected += rejected


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: never the key itself, only its SHA-256 (`key_hash`). Times are epoch ms; a key
    with `revoked_at` set no longer authenticates."""

    key_id: str
    name: str
    scope: str
    key_hash: str
    created_at: int
    revoked_at: int | None = None


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    existing: int


@runtime_checkable
class Store(Protocol):
    """Operational store of users, items, interactions, preference documents and the quarantine."""

    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest revision."""

    def write_interactions(self, rows: pd.DataFrame) -> WriteResult:
        """Insert validated interactions; an `event_id` already stored is skipped, never duplicated."""

    def upsert_items(self, rows: pd.DataFrame) -> WriteResult:
        """Insert or update validated catalogue records (the latest values win)."""

    def upsert_users(self, rows: pd.DataFrame) -> WriteResult:
        """Insert or update validated user records (the latest values win)."""

    def ensure_ids(self, kind: RecordKind, ids: Iterable[str]) -> int:
        """Create bare users or items for ids not stored yet; returns how many were created."""

    def known_ids(self, kind: RecordKind) -> set[str]:
        """All stored user or item ids (for the `reject` unknown-id policy)."""

    def existing_ids(self, kind: RecordKind, ids: Iterable[str]) -> set[str]:
        """Which of `ids` are stored: user or item ids, or event ids for `interactions`."""

    def quarantine(self, run_id: str, kind: RecordKind, source: str, rejected: pd.DataFrame) -> None:
        """Keep rejected records (columns location, reason, record) with the run that saw them."""

    def list_quarantine(self, limit: int | None = 100, run_id: str | None = None) -> pd.DataFrame: ...

    def clear_quarantine(self, run_id: str | None = None) -> int: ...

    def save_run(self, run: IngestRun) -> None: ...

    def list_runs(self, limit: int = 20) -> pd.DataFrame: ...

    def counts(self) -> dict[str, int]: ...

    def iter_interactions(self, chunk_size: int = 100_000) -> Iterator[pd.DataFrame]:
        """All interactions in (timestamp, event_id) order, in bounded chunks."""

    def read_items(self) -> pd.DataFrame: ...

    def read_users(self) -> pd.DataFrame: ...

    def put_preferences(self, user_id: str, document: dict[str, Any]) -> None: ...

    def write_impressions(self, rows: pd.DataFrame) -> int:
        """Append impressions (columns `storage.impressions.IMPRESSION_COLUMNS`); returns how many."""

    def write_impression_rows(self, rows: Sequence[ImpressionRow]) -> int:
        """`write_impressions` for plain tuples, in one transaction (no DataFrame); stored as answers, the rows
        sharing (served_at, user_id, model_version, request_id) in one."""

    def write_answer_impressions(self, answers: Sequence[ServedAnswer]) -> int:
        """Record served answers (`storage.impressions.ServedAnswer`), one row each with its JSON as served,
        all in one transaction, nothing taken apart in Python; returns the impressions written (the items in
        those answers). A body that is not JSON fails the whole call. The serving writer's path."""

    def read_impressions(
        self, start_ms: int, end_ms: int, model_versions: Iterable[int] | None = None
    ) -> pd.DataFrame:
        """The impressions served in [start_ms, end_ms) (by `model_versions` only, when given), columns
        `IMPRESSION_COLUMNS`, in (served_at, request_id, position) order; `model_version` is Int64 (<NA> for
        the popularity fallback)."""

    def feedback_rates(
        self,
        start_ms: int,
        end_ms: int,
        window_ms: int,
        rule: PositiveRule | None = None,
        model_versions: Iterable[int] | None = None,
    ) -> pd.DataFrame:
        """Per model version, the impressions served in [start_ms, end_ms) and how many were positive: the
        same user had an interaction `rule` calls positive with the same item in [served_at, served_at +
        window_ms]. Columns `storage.impressions.FEEDBACK_COLUMNS` (rate = positives / impressions); versions
        without impressions in the range have no row; the popularity fallback's version is <NA> (Int64)."""

    def get_preferences(self, user_id: str) -> dict[str, Any] | None: ...

    def add_api_key(self, key_id: str, name: str, scope: str, key_hash: str) -> ApiKey:
        """Store a new key (its hash only); `key_id` and `key_hash` are unique."""

    def api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""

    def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose hash is `key_hash` (revoked or not), or None."""

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark the key revoked; False when there is no such key or it was already revoked."""

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """Open the store behind a SQLAlchemy URL: `sqlite:///path.db` or `postgresql://…`."""
    from recstack.backends import backend_class

    store: Store = backend_class("store", url)(url)
    return store
