"""The durable local outbox: what producers could not hand to the broker waits on disk, in order.

A producer that told its client "accepted" must never lose the message, so when the broker is unreachable
`Publisher` appends the batch to the `Outbox` (a spool directory, by default `Settings.outbox_dir`) and
drains it, oldest first, once the broker answers. While anything is spooled, new batches are spooled behind
it rather than sent past it, so the order a producer published in is the order the broker receives.

On disk, each spooled batch is one segment file `<time_ns>-<random>-<count>.seg`: names sort by time, the
random part lets several processes share the directory, and the count lets `pending` read only names. A
segment is written under a temporary name, fsync'd and renamed, so it exists whole or not at all. Its first
line is a JSON header (`format`, `topic`, `count`); each further line is `[key, value]`, both base64 (key
null when absent). A drain holds an `fcntl` lock on `.lock`, publishes segments oldest first and deletes
each only after the broker acknowledged it: a crash mid-drain publishes that segment again, which is safe
because consumers de-duplicate by `event_id` (delivery is at-least-once). A segment that cannot be read is
moved to `quarantine/` with an error logged, so one bad file never blocks the rest.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from recstack.bus.base import Bus
from recstack.errors import BackendUnavailable

__all__ = ["Outbox", "Publisher", "Segment"]

log = logging.getLogger(__name__)

FORMAT = 1
SEGMENT_NAME = re.compile(r"\d{20}-[0-9a-f]{16}-(\d+)\.seg")
STALE_TEMP_S = 3600.0
DRAIN_BATCH = 100_000

Pairs = Sequence[tuple[bytes | None, bytes]]

# Segment names increase within the process even when the clock does not move between two appends.
_last_ns = 0
_name_lock = threading.Lock()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Segment:
    """One spooled batch on disk; `count` comes from the name, the messages from `read()`."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.count = count

    def read(self) -> tuple[str, list[tuple[bytes | None, bytes]]]:
        """`(topic, messages)`; raises ValueError when the file is not a whole segment."""
        with self.path.open("rb") as f:
            header = json.loads(f.readline())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError(f"unknown segment header {header!r}")
            messages = []
            for line in f:
                key, value = json.loads(line)
                messages.append((None if key is None else base64.b64decode(key), base64.b64decode(value)))
        if len(messages) != header["count"]:
            raise ValueError(f"{len(messages)} messages, header says {header['count']}")
        return str(header["topic"]), messages


class Outbox:
    """A spool directory of segments (see the module docstring), safe to share between processes."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"outbox directory {self.directory} cannot be created: {exc}") from exc

    def segments(self) -> list[Segment]:
        """Spooled segments, oldest first."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory) if entry.is_file())
        except FileNotFoundError:
            return []
        return [Segment(self.directory / name, int(m[1])) for name in names if (m := SEGMENT_NAME.fullmatch(name))]

    @property
    def pending(self) -> int:
        """Messages spooled and not yet drained (by any process sharing the directory)."""
        return sum(s.count for s in self.segments())

    def __bool__(self) -> bool:
        return bool(self.segments())

    def _next_name(self, count: int) -> str:
        global _last_ns
        with _name_lock:
            _last_ns = max(time.time_ns(), _last_ns + 1)
            return f"{_last_ns:020d}-{secrets.token_hex(8)}-{count}.seg"

    def append(self, topic: str, messages: Pairs) -> Segment:
        """Spool `messages` for `topic` as one segment, durable (fsync'd) when this returns; raises
        `BackendUnavailable` naming the directory when the disk is full or not writable."""
        name = self._next_name(len(messages))
        temp = self.directory / f".tmp-{name}"
        header = json.dumps({"format": FORMAT, "topic": topic, "count": len(messages)})
        lines = [header.encode()]
        lines.extend(
            json.dumps([None if key is None else _b64(key), _b64(value)]).encode() for key, value in messages
        )
        try:
            with temp.open("wb") as f:
                f.write(b"\n".join(lines) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.directory / name)
            self._sync_directory()
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise BackendUnavailable(f"outbox {self.directory} is not writable: {exc}") from exc
        return Segment(self.directory / name, len(messages))

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self, wait: bool) -> Iterator[bool]:
        with (self.directory / ".lock").open("a") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def drain(self, bus: Bus, wait: bool = True) -> int:
        """Publish every segment to `bus`, oldest first, deleting each once acknowledged; returns the number
        of messages published. Consecutive segments of one topic go in one publish (up to `DRAIN_BATCH`
        messages). Raises `BackendUnavailable` when the bus fails (what was published before stays deleted);
        with `wait=False` returns 0 at once when another drain holds the lock."""
        with self._locked(wait) as held:
            if not held:
                return 0
            self._remove_stale_temps()
            published = 0
            while (batch := self._next_batch()) is not None:
                topic, segments, messages = batch
                bus.publish(topic, messages)
                for segment in segments:
                    segment.path.unlink(missing_ok=True)
                published += len(messages)
            return published

    def _next_batch(self) -> tuple[str, list[Segment], list[tuple[bytes | None, bytes]]] | None:
        """The oldest segments that share a topic, up to `DRAIN_BATCH` messages (at least one segment)."""
        topic: str | None = None
        taken: list[Segment] = []
        messages: list[tuple[bytes | None, bytes]] = []
        for segment in self.segments():
            if taken and len(messages) + segment.count > DRAIN_BATCH:
                break
            try:
                segment_topic, segment_messages = segment.read()
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._quarantine(segment, exc)
                continue
            if topic is not None and segment_topic != topic:
                break
            topic = segment_topic
            taken.append(segment)
            messages.extend(segment_messages)
        return None if topic is None else (topic, taken, messages)

    def _quarantine(self, segment: Segment, reason: Exception) -> None:
        target = self.directory / "quarantine"
        target.mkdir(exist_ok=True)
        os.replace(segment.path, target / segment.path.name)
        log.error("outbox segment %s is unreadable (%s): moved to %s", segment.path.name, reason, target)

    def _remove_stale_temps(self) -> None:
        """Temporary files a crashed writer left: their publish never returned, so no client was told
        "accepted" for them."""
        cutoff = time.time() - STALE_TEMP_S
        for entry in os.scandir(self.directory):
            if entry.name.startswith(".tmp-") and entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)


class Publisher:
    """Publishes to `bus`, falling back to `outbox` when the broker is unreachable (see the module docstring).

    `publish` never raises for a down broker: it answers "sent" (the broker holds the batch) or "spooled"
    (the outbox does, durably). Only an outbox that cannot be written raises `BackendUnavailable`.
    `start()` runs a daemon thread that drains every `drain_interval_s`; without it, a publish that spools
    tries a drain itself, at most once per interval.
    """

    def __init__(self, bus: Bus, outbox: Outbox, drain_interval_s: float = 1.0) -> None:
        self.bus = bus
        self.outbox = outbox
        self.drain_interval_s = drain_interval_s
        self._bus_up = True
        self._last_failure = float("-inf")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def bus_up(self) -> bool:
        """Whether the last attempt to reach the broker succeeded (for /readyz)."""
        return self._bus_up

    @property
    def pending(self) -> int:
        """Messages waiting in the outbox."""
        return self.outbox.pending

    def publish(self, topic: str, messages: Pairs) -> Literal["sent", "spooled"]:
        if not messages:
            return "sent"
        if self.outbox:
            self.outbox.append(topic, messages)
            self._drain_soon()
            return "spooled"
        try:
            self.bus.publish(topic, messages)
        except BackendUnavailable as exc:
            self._failed(exc)
            self.outbox.append(topic, messages)
            return "spooled"
        self._bus_up = True
        return "sent"

    def drain(self, wait: bool = True) -> int:
        """Drain the outbox now; returns the messages published (0 when the broker is down)."""
        try:
            published = self.outbox.drain(self.bus, wait=wait)
        except BackendUnavailable as exc:
            self._failed(exc)
            return 0
        if published:
            log.info("outbox: drained %d messages to %s", published, self.bus.url)
        self._bus_up = True
        return published

    def _failed(self, exc: BackendUnavailable) -> None:
        if self._bus_up:
            log.warning("bus unreachable, spooling to %s: %s", self.outbox.directory, exc)
        self._bus_up = False
        self._last_failure = time.monotonic()

    def _drain_soon(self) -> None:
        if self._thread is not None:
            self._wake.set()
        elif time.monotonic() - self._last_failure >= self.drain_interval_s:
            self.drain(wait=False)

    def start(self) -> None:
        """Start the background drain (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="recstack-outbox-drain", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background drain; what is still spooled stays on disk for the next start."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.drain_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self.outbox:
                continue
            try:
                self.drain(wait=False)
            except Exception:
                log.exception("outbox: drain failed")
            if not self._bus_up:
                self._stop.wait(self.drain_interval_s)

    def __enter__(self) -> Publisher:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
