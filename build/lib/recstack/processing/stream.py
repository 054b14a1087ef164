"""The stream processor: a consumer-group worker that turns the bus into stored events and online state.

Per batch: decode and validate every message by the ingestion rules (`ingestion/pipeline.py`), store the
good events idempotently (by `event_id`) and apply them to the online state (idempotent too), make the
affected users' cached answers unreachable, apply catalogue changes, send what failed to the dead-letter
topic with its reason and original bytes, and only then commit the offsets. A crash anywhere before the
commit replays the batch, which changes nothing that was already done: each event counts once. A batch that
fails on a backend (store, Redis, broker) is retried as it is — never skipped — after a pause.

Several processors in one consumer group share the topics' partitions; that is how the stream scales out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from recstack.bus.base import Bus, Message, Topics
from recstack.bus.events import dead_letter, decode_catalog, decode_events, location_of
from recstack.config import UnknownIdPolicy
from recstack.errors import BackendUnavailable, InvalidRecord
from recstack.ingestion.pipeline import CheckedBatch, IngestOptions, RawBatch, check_batch, id_policies
from recstack.processing.changes import Change, apply_change
from recstack.processing.online import OnlineState
from recstack.schema import LOCATION, ValidationRules
from recstack.storage import Store
from recstack.storage.cache import Cache, invalidate_users

__all__ = ["BatchReport", "StreamMetrics", "StreamProcessor"]

logger = logging.getLogger(__name__)

SOURCE = "stream"


class StreamMetrics:
    """Prometheus metrics of one processor, in a registry of its own (`recstack stream --metrics-port`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.events = Counter("recstack_stream_events", "Events consumed by outcome.", ["outcome"], registry=r)
        self.dlq = Counter("recstack_stream_dead_letters", "Messages sent to the dead-letter topic.", registry=r)
        self.changes = Counter("recstack_stream_catalog_changes", "Item and user upserts applied.", registry=r)
        self.batch_seconds = Histogram(
            "recstack_stream_batch_duration_seconds", "Seconds from poll to commit per batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=r,
        )
        self.lag = Gauge("recstack_stream_consumer_lag", "Messages in this member's partitions not committed.",
                         registry=r)
        self.rate = Gauge("recstack_stream_events_per_second", "Events consumed per second, last interval.",
                          registry=r)
        self.failures = Counter("recstack_stream_batch_failures", "Batches retried after a backend error.",
                                registry=r)


@dataclass
class BatchReport:
    """What one batch did (or, from `run`, all of them)."""

    messages: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    dead_letters: int = 0
    changes: list[Change] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    seconds: float = 0.0


@dataclass
class _Prepared:
    messages: list[Message]
    events: int
    changes: list[Message]
    checked: CheckedBatch | None = None
    refused: pd.DataFrame = field(default_factory=pd.DataFrame)
    dead: list[tuple[bytes | None, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class _InFlight:
    messages: list[Message]
    future: Future[BatchReport]
    started: float


class StreamProcessor:
    """One member of the stream consumer group (see the module docstring).

    `on_batch` is called after each committed batch (the API's in-process worker uses it to apply the
    catalogue changes to its own view and to wake requests waiting for their events).
    """

    def __init__(
        self,
        bus: Bus,
        store: Store,
        online: OnlineState,
        *,
        topics: Topics | None = None,
        group: str = "recstack-stream",
        rules: ValidationRules | None = None,
        unknown_users: UnknownIdPolicy = "create",
        unknown_items: UnknownIdPolicy = "create",
        cache: Cache | None = None,
        cache_ttl_s: float = 60.0,
        batch_size: int = 20_000,
        poll_timeout_s: float = 0.5,
        retry_pause_s: float = 1.0,
        metrics: StreamMetrics | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        self.bus, self.store, self.online, self.cache = bus, store, online, cache
        self.topics = topics or Topics()
        self.group = group
        self.rules = rules or ValidationRules()
        self.options = IngestOptions(
            kind="interactions", unknown_users=unknown_users, unknown_items=unknown_items, rules=self.rules
        )
        self.policies = id_policies(store, self.options, preload=False)
        self.cache_ttl_s = cache_ttl_s
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.retry_pause_s = retry_pause_s
        self.metrics = metrics or StreamMetrics()
        self.on_batch = on_batch
        self.bus.ensure_topics(self.topics.all())
        self.consumer = bus.consumer([self.topics.events, self.topics.catalog], group)
        self._pending: list[Message] = []
        self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recstack-online")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recstack-stream-write")
        self._rate_at, self._rate_n = time.monotonic(), 0
        self._lag_at = 0.0
        self._lag_busy = threading.Event()

    def step(self) -> BatchReport | None:
        """Process one batch (the failed one again, if the last try failed); None when nothing came."""
        messages = self._pending or self.consumer.poll(self.batch_size, self.poll_timeout_s)
        if not messages:
            self._observe(0)
            return None
        self._pending = messages
        started = time.perf_counter()
        report = self._apply(self._prepare(messages))
        self.consumer.commit(messages)
        self._pending = []
        self._finish(report, started)
        return report

    def _prepare(self, messages: list[Message]) -> _Prepared:
        """The CPU-bound part of a batch (decode, validate, the dead letters), with no write anywhere."""
        events = [m for m in messages if m.topic == self.topics.events]
        changes = [m for m in messages if m.topic == self.topics.catalog]
        prepared = _Prepared(messages, len(events), changes)
        if events:
            decoded = decode_events(events)
            prepared.checked = check_batch(RawBatch(decoded.frame, decoded.broken), self.options, self.policies)
            prepared.refused = refused = prepared.checked.refused
            if not refused.empty:
                by_location = {location_of(m): m for m in events}
                for location, reason in refused[["location", "reason"]].itertuples(index=False):
                    original = by_location[location]
                    prepared.dead.append(dead_letter(str(location), str(reason), original.value, original.key))
        return prepared

    def _apply(self, prepared: _Prepared) -> BatchReport:
        """Every write of a prepared batch; safe to repeat (all of them are idempotent)."""
        report = BatchReport(messages=len(prepared.messages), events=prepared.events)
        dead = list(prepared.dead)
        if prepared.checked is not None:
            self._store_events(prepared.checked, prepared.refused, report)
        for message in prepared.changes:
            self._change(message, report, dead)
        if dead:
            self.bus.publish(self.topics.dlq, dead)
            report.dead_letters = len(dead)
        return report

    def _finish(self, report: BatchReport, started: float) -> None:
        report.seconds = time.perf_counter() - started
        m = self.metrics
        m.batch_seconds.observe(report.seconds)
        for outcome, n in (("stored", report.stored), ("duplicate", report.duplicates),
                           ("rejected", report.rejected)):
            if n:
                m.events.labels(outcome).inc(n)
        m.dlq.inc(report.dead_letters)
        m.changes.inc(len(report.changes))
        self._observe(report.events)
        if self.on_batch is not None:
            self.on_batch(report)

    def _store_events(self, checked: CheckedBatch, refused: pd.DataFrame, report: BatchReport) -> None:
        if not refused.empty:
            self.store.quarantine(f"{SOURCE}-{self.group}", "interactions", f"{SOURCE} {self.topics.events}", refused)
            report.rejected = len(refused)
        accepted = checked.accepted
        if accepted.empty:
            report.duplicates = checked.repeats
            return
        for field_name, policy in self.policies:
            policy.create(accepted[field_name])
        rows = accepted.drop(columns=[LOCATION]).reset_index(drop=True)
        # The store and the online state are separate servers: both writes run at once, and the batch
        # commits only after both are done.
        applied = self._side.submit(self.online.apply, rows)
        try:
            written = self.store.write_interactions(rows)
        finally:
            applied.result()
        report.stored = written.inserted
        report.duplicates = written.existing + checked.repeats
        report.users = set(rows["user_id"].tolist())
        self._invalidate(report.users)

    def _change(self, message: Message, report: BatchReport, dead: list[tuple[bytes | None, bytes]]) -> None:
        location = location_of(message)
        body = decode_catalog(message)
        reason = body if isinstance(body, str) else None
        if isinstance(body, dict):
            try:
                change = apply_change(
                    self.store, self.online, body["kind"], body["record"], self.rules, body.get("preferences")
                )
            except InvalidRecord as exc:
                reason = exc.reason
            else:
                report.changes.append(change)
                if change.kind == "user":
                    report.users.add(change.record_id)
                    self._invalidate({change.record_id})
                return
        assert reason is not None
        dead.append(dead_letter(location, reason, message.value, message.key))
        self.store.quarantine(
            f"{SOURCE}-{self.group}", "items", f"{SOURCE} {self.topics.catalog}",
            pd.DataFrame({"location": [location], "reason": [reason],
                          "record": [message.value.decode("utf-8", "replace")]}),
        )
        report.rejected += 1

    def _invalidate(self, users: set[str]) -> None:
        if self.cache is None or not users:
            return
        try:
            invalidate_users(self.cache, users, self.cache_ttl_s)
        except BackendUnavailable as exc:  # the cache is an optimisation: answers go stale for at most a TTL
            logger.warning("could not invalidate cached answers: %s", exc)

    def _observe(self, n: int) -> None:
        now = time.monotonic()
        self._rate_n += n
        if now - self._rate_at >= 1.0:
            self.metrics.rate.set(self._rate_n / (now - self._rate_at))
            self._rate_at, self._rate_n = now, 0
        if now - self._lag_at >= 5.0 and not self._lag_busy.is_set():
            # Asking the broker for committed offsets takes a round trip (half a second on some brokers):
            # never on the batch path.
            self._lag_at = now
            self._lag_busy.set()
            threading.Thread(target=self._sample_lag, name="recstack-stream-lag", daemon=True).start()

    def _sample_lag(self) -> None:
        try:
            with contextlib.suppress(BackendUnavailable):
                self.metrics.lag.set(self.consumer.lag())
        finally:
            self._lag_busy.clear()

    def run(
        self,
        stop: threading.Event | None = None,
        idle_exit_s: float | None = None,
        max_messages: int | None = None,
    ) -> BatchReport:
        """Process batches until `stop` is set, nothing came for `idle_exit_s` while holding partitions, or
        `max_messages` were done; returns the totals.

        Pipelined: while one batch is written (store, online state: time spent waiting on servers), the next
        is polled and validated. Offsets are committed batch by batch in order, each only after its writes;
        a batch whose writes fail is retried as it is, after a pause, before anything after it.
        """
        stop = stop or threading.Event()
        total = BatchReport()
        idle_since = time.monotonic()
        in_flight: _InFlight | None = None
        while not stop.is_set():
            try:
                messages = self.consumer.poll(self.batch_size, 0.0 if in_flight else self.poll_timeout_s)
                prepared = self._prepare(messages) if messages else None
            except BackendUnavailable as exc:
                self._failed(exc, stop)
                continue
            if in_flight is not None:
                if not self._settle(in_flight, stop, total):
                    break
                in_flight = None
            if prepared is None:
                self._observe(0)
                if not self.consumer.assignment():
                    idle_since = time.monotonic()  # still joining the group: not idle yet
                elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                if max_messages is not None and total.messages >= max_messages:
                    break
                continue
            idle_since = time.monotonic()
            in_flight = _InFlight(messages, self._writer.submit(self._apply, prepared), time.perf_counter())
        if in_flight is not None and not stop.is_set():
            self._settle(in_flight, stop, total)
        return total

    def _settle(self, in_flight: _InFlight, stop: threading.Event, total: BatchReport) -> bool:
        """Wait for a batch's writes, retrying them until they succeed, then commit it; False when stopped
        first (the batch stays uncommitted, and the group's next owner replays it)."""
        future = in_flight.future
        while True:
            try:
                report = future.result()
                break
            except BackendUnavailable as exc:
                self._failed(exc, stop)
                if stop.is_set():
                    return False
                future = self._writer.submit(lambda: self._apply(self._prepare(in_flight.messages)))
        self.consumer.commit(in_flight.messages)
        self._finish(report, in_flight.started)
        total.messages += report.messages
        total.events += report.events
        total.stored += report.stored
        total.duplicates += report.duplicates
        total.rejected += report.rejected
        total.dead_letters += report.dead_letters
        total.seconds += report.seconds
        return True

    def _failed(self, exc: BackendUnavailable, stop: threading.Event) -> None:
        self.metrics.failures.inc()
        logger.warning("stream batch failed, retrying in %.1f s: %s", self.retry_pause_s, exc)
        stop.wait(self.retry_pause_s)

    def close(self) -> None:
        self.consumer.close()
        self._writer.shutdown(wait=True)
        self._side.shutdown(wait=True)
