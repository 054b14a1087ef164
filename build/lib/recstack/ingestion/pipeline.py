"""The one path every record takes into the store: map columns → validate → apply id policy → write.

Sources (files, SQL, HTTP APIs, data sets, the event stream) only turn their input into `RawBatch`es;
everything that decides whether a record is stored lives here, so every source gets the same rules, the
same quarantine and the same idempotence. Batches commit one by one: a failure late in a file keeps what
was stored before it, and replaying the file stores nothing twice.

The steps are also public one by one, for the paths that do not write at once: `check_batch` (validation
and the id policy, read-only), `outcomes` (a verdict per record, for the API's per-record report),
`store_batch` (the writes), and `IdPolicy` (which ids exist; creating the new ones).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from recstack.config import UnknownIdPolicy
from recstack.schema import ID_FIELD, LOCATION, VALIDATORS, RecordKind, ValidationRules
from recstack.storage.store import IngestRun, Store, WriteResult

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class RawBatch:
    """Raw records from a source, plus the records the source could not even parse.

    `frame` holds one row per record with a `_location` column naming where it came from (e.g. "line 17");
    `broken` has columns location, reason, record.
    """

    frame: pd.DataFrame
    broken: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["location", "reason", "record"]))


@dataclass(frozen=True)
class IngestOptions:
    kind: RecordKind
    mapping: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    unknown_users: UnknownIdPolicy = "create"
    unknown_items: UnknownIdPolicy = "create"
    rules: ValidationRules = field(default_factory=ValidationRules)


def apply_mapping(frame: pd.DataFrame, mapping: dict[str, str], defaults: dict[str, Any]) -> pd.DataFrame:
    """Rename source columns to recstack fields and fill fields the source lacks with constants."""
    missing = [src for src in mapping if src not in frame.columns]
    if missing and len(frame):
        log.warning("mapped columns not in the source: %s", ", ".join(missing))
    out = frame.rename(columns=mapping)
    for name, value in defaults.items():
        if name not in out:
            out[name] = value
        else:
            out[name] = out[name].where(out[name].notna() & (out[name].astype("string") != ""), value)
    return out


class IdPolicy:
    """Remembers ids known to exist so each chunk only writes ids that are really new.

    `preload=True` (bulk runs) reads every stored id once: a few bytes per user or item, far cheaper than a
    round trip per chunk. `preload=False` (a request, a long-running stream) asks the store about the ids
    it has not met yet, and remembers the answer.
    """

    def __init__(self, store: Store, kind: RecordKind, policy: UnknownIdPolicy, preload: bool = True) -> None:
        self.store, self.kind, self.policy = store, kind, policy
        self.known: set[str] = store.known_ids(kind) if preload and policy == "reject" else set()

    def unknown(self, ids: pd.Series) -> pd.Series:
        """Mask of records to reject: ids not stored, under the `reject` policy."""
        if self.policy != "reject":
            return pd.Series(False, index=ids.index)
        fresh = set(ids.unique()) - self.known
        if fresh:
            self.known |= self.store.existing_ids(self.kind, sorted(fresh))
        return ~ids.isin(self.known)

    def create(self, ids: pd.Series) -> None:
        """Create bare records for new ids under the `create` policy."""
        if self.policy != "create":
            return
        new = set(ids.unique()) - self.known
        if new:
            self.store.ensure_ids(self.kind, new)
            self.known |= new


def id_policies(
    store: Store, options: IngestOptions, preload: bool = True
) -> list[tuple[str, IdPolicy]]:
    """The user and item id policies an interactions run applies (none for catalogue records)."""
    if options.kind != "interactions":
        return []
    return [
        ("user_id", IdPolicy(store, "users", options.unknown_users, preload)),
        ("item_id", IdPolicy(store, "items", options.unknown_items, preload)),
    ]


def _reject_unknown(accepted: pd.DataFrame, mask: pd.Series, field_name: str) -> pd.DataFrame:
    rows = accepted.loc[mask]
    what = "user" if field_name == "user_id" else "item"
    location = rows[LOCATION] if LOCATION in rows else pd.Series("", index=rows.index)
    return pd.DataFrame(
        {
            "location": location.astype(str).to_numpy(),
            "reason": (field_name + " '" + rows[field_name].astype(str) + f"' is not a known {what}").to_numpy(),
            "record": rows.drop(columns=[LOCATION], errors="ignore")
            .to_json(orient="records", lines=True)
            .splitlines(),
        }
    )


@contextmanager
def recorded_run(store: Store, kind: RecordKind, source: str) -> Iterator[IngestRun]:
    """A run in the store's run log, saved when it starts and when it ends; a failure is kept in its errors.

    What was stored before a failure stays stored; the run log says where it stopped and why."""
    run = IngestRun(run_id=uuid.uuid4().hex[:16], kind=kind, source=source, started_at=int(time.time() * 1000))
    store.save_run(run)
    try:
        yield run
    except Exception as exc:
        run.errors.append(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        run.finished_at = int(time.time() * 1000)
        store.save_run(run)


def ingest(
    store: Store,
    batches: Iterable[RawBatch],
    source: str,
    options: IngestOptions,
    progress: Progress | None = None,
) -> IngestRun:
    """Ingest every batch; returns the run summary (also saved in the store's run log)."""
    kind = options.kind
    policies = id_policies(store, options)
    # Validation of chunk N+1 overlaps the database write of chunk N: the driver releases the GIL while the
    # server works, so the two cores both stay busy. Writes stay in order, one at a time.
    pending: Future[int] | None = None
    with recorded_run(store, kind, source) as run, ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="recstack-ingest"
    ) as writer:
        for batch in batches:
            checked = check_batch(batch, options, policies)
            if pending is not None:
                _report(progress, pending.result())
            pending = writer.submit(store_batch, store, checked, source, kind, run, policies)
        if pending is not None:
            _report(progress, pending.result())
    log.info(
        "ingested %s from %s: read %d, accepted %d, duplicates %d, rejected %d",
        kind, source, run.read, run.accepted, run.duplicates, run.rejected,
    )
    return run


@dataclass
class CheckedBatch:
    """A batch after the CPU-bound work (mapping, validation, id policy), ready to be written.

    `accepted` keeps `_location`; `repeat_locations` are the records dropped as repeats of an earlier
    record of the same batch."""

    read: int
    broken: pd.DataFrame
    rejected: pd.DataFrame
    unknown: pd.DataFrame
    accepted: pd.DataFrame
    repeats: int
    repeat_locations: list[str] = field(default_factory=list)

    @property
    def refused(self) -> pd.DataFrame:
        """Every record not accepted (location, reason, record), in one frame."""
        parts = [f for f in (self.broken, self.rejected, self.unknown) if not f.empty]
        if not parts:
            return pd.DataFrame(columns=["location", "reason", "record"])
        return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class RecordOutcome:
    """One record's verdict: `accepted` (new), `duplicate` (its id was stored or met before) or `rejected`."""

    location: str
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    record_id: str | None = None


def outcomes(checked: CheckedBatch, kind: RecordKind, stored: set[str] | None = None) -> dict[str, RecordOutcome]:
    """Location → verdict for every record of `checked`; `stored` are ids already in the store."""
    out: dict[str, RecordOutcome] = {}
    for location, reason in checked.refused[["location", "reason"]].itertuples(index=False):
        out[str(location)] = RecordOutcome(str(location), "rejected", str(reason))
    for location in checked.repeat_locations:
        out[location] = RecordOutcome(location, "duplicate")
    if not checked.accepted.empty:
        key = ID_FIELD[kind]
        known = stored or set()
        for location, record_id in zip(checked.accepted[LOCATION], checked.accepted[key], strict=True):
            status: Literal["accepted", "duplicate"] = "duplicate" if record_id in known else "accepted"
            out[str(location)] = RecordOutcome(str(location), status, record_id=str(record_id))
    return out


def _report(progress: Progress | None, n: int) -> None:
    if progress is not None:
        progress(n)


def check_batch(batch: RawBatch, options: IngestOptions, policies: list[tuple[str, IdPolicy]]) -> CheckedBatch:
    empty = pd.DataFrame(columns=["location", "reason", "record"])
    read = len(batch.frame) + len(batch.broken)
    if batch.frame.empty:
        return CheckedBatch(read, batch.broken, empty, empty, pd.DataFrame(), 0)
    frame = apply_mapping(batch.frame, options.mapping, options.defaults)
    checked = VALIDATORS[options.kind](frame, options.rules)
    dup = checked.accepted.duplicated(ID_FIELD[options.kind], keep="first")
    repeats = int(dup.sum())
    repeat_locations: list[str] = []
    accepted = checked.accepted
    if repeats:
        if LOCATION in accepted:
            repeat_locations = accepted.loc[dup, LOCATION].astype(str).tolist()
        accepted = accepted.loc[~dup].reset_index(drop=True)
    unknown = empty
    if policies:
        accepted, unknown = _reject_unknown_ids(accepted, policies)
    return CheckedBatch(read, batch.broken, checked.rejected, unknown, accepted, repeats, repeat_locations)


def store_batch(
    store: Store,
    checked: CheckedBatch,
    source: str,
    kind: RecordKind,
    run: IngestRun,
    policies: list[tuple[str, IdPolicy]],
) -> int:
    """Write one checked batch; returns how many raw records it covered (for progress)."""
    for rejects in (checked.broken, checked.rejected, checked.unknown):
        store.quarantine(run.run_id, kind, source, rejects)
    written = WriteResult(0, 0)
    if not checked.accepted.empty:
        for field_name, policy in policies:
            policy.create(checked.accepted[field_name])
        written = _write(store, kind, checked.accepted)
    run.add(
        read=checked.read,
        accepted=written.inserted,
        duplicates=checked.repeats + written.existing,
        rejected=len(checked.broken) + len(checked.rejected) + len(checked.unknown),
    )
    return checked.read


def _reject_unknown_ids(
    accepted: pd.DataFrame, policies: list[tuple[str, IdPolicy]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    unknown_parts = []
    for field_name, policy in policies:
        mask = policy.unknown(accepted[field_name])
        if mask.any():
            unknown_parts.append(_reject_unknown(accepted, mask, field_name))
            accepted = accepted.loc[~mask]
    unknown = pd.concat(unknown_parts) if unknown_parts else pd.DataFrame(columns=["location", "reason", "record"])
    return accepted, unknown


def _write(store: Store, kind: RecordKind, rows: pd.DataFrame) -> WriteResult:
    rows = rows.drop(columns=[LOCATION], errors="ignore").reset_index(drop=True)
    if kind == "interactions":
        return store.write_interactions(rows)
    if kind == "items":
        return store.upsert_items(rows)
    return store.upsert_users(rows)
