"""The outbox: batches spooled while the broker is down survive, drain in order, and are never lost —
across crashes mid-write and mid-drain, and with several writers and drainers sharing the directory."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from recstack.bus.base import Message
from recstack.bus.memory import MemoryBus
from recstack.bus.outbox import Outbox, Publisher
from recstack.errors import BackendUnavailable

TOPIC = "events"


class FlakyBus(MemoryBus):
    """A memory bus that can be down, fail after some publishes, or fail after storing a batch."""

    def __init__(self) -> None:
        super().__init__(f"memory://{uuid.uuid4().hex}")
        self.down = False
        self.fail_after: int | None = None
        self.fail_after_storing = False
        self.calls = 0

    def publish(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        if self.down or (self.fail_after is not None and self.calls >= self.fail_after):
            raise BackendUnavailable("broker down")
        self.calls += 1
        super().publish(topic, messages)
        if self.fail_after_storing:
            self.fail_after_storing = False
            raise BackendUnavailable("lost the acknowledgement")


def batch(prefix: str, n: int, keys: int = 3) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i % keys}".encode(), f"{prefix}:{i}".encode()) for i in range(n)]


def everything(bus: MemoryBus, topics: Sequence[str] = (TOPIC,)) -> list[Message]:
    consumer = bus.consumer(list(topics), f"check-{uuid.uuid4().hex}")
    out: list[Message] = []
    while chunk := consumer.poll(100_000, timeout_s=0.01):
        out.extend(chunk)
    consumer.close()
    return out


def per_key(messages: Sequence[Message]) -> dict[bytes | None, list[bytes]]:
    keyed: dict[bytes | None, list[bytes]] = defaultdict(list)
    for m in messages:
        keyed[m.key].append(m.value)
    return dict(keyed)


def expected_per_key(*batches: list[tuple[bytes | None, bytes]]) -> dict[bytes | None, list[bytes]]:
    keyed: dict[bytes | None, list[bytes]] = defaultdict(list)
    for b in batches:
        for key, value in b:
            keyed[key].append(value)
    return dict(keyed)


def test_spooled_batches_are_durable_and_counted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    assert not outbox and outbox.pending == 0
    outbox.append(TOPIC, batch("a", 3))
    outbox.append("catalog", [(None, b"\x00\xff"), (b"", b"")])
    reopened = Outbox(tmp_path / "outbox")
    assert reopened.pending == 5
    segments = reopened.segments()
    assert [s.read() for s in segments] == [(TOPIC, batch("a", 3)), ("catalog", [(None, b"\x00\xff"), (b"", b"")])]
    assert not [p for p in (tmp_path / "outbox").iterdir() if p.name.startswith(".tmp-")]


def test_drain_publishes_oldest_first_and_empties_the_outbox(tmp_path: Path) -> None:
    bus, outbox = FlakyBus(), Outbox(tmp_path)
    a, b, c = batch("a", 5), batch("b", 7), batch("c", 2)
    outbox.append(TOPIC, a)
    outbox.append(TOPIC, b)
    outbox.append("catalog", [(None, b"cat")])
    outbox.append(TOPIC, c)
    assert outbox.drain(bus) == 15
    assert outbox.pending == 0
    assert bus.calls == 3, "consecutive segments of one topic go in one publish"
    assert per_key(everything(bus)) == expected_per_key(a, b, c)
    assert [m.value for m in everything(bus, ["catalog"])] == [b"cat"]


def test_publisher_spools_while_down_and_keeps_the_order_once_back(tmp_path: Path) -> None:
    bus = FlakyBus()
    publisher = Publisher(bus, Outbox(tmp_path), drain_interval_s=0.0)
    first, second, third, fourth = (batch(p, 4) for p in "abcd")
    assert publisher.publish(TOPIC, first) == "sent" and publisher.bus_up
    bus.down = True
    assert publisher.publish(TOPIC, second) == "spooled"
    assert publisher.publish(TOPIC, third) == "spooled"
    assert not publisher.bus_up and publisher.pending == 8
    bus.down = False
    assert publisher.publish(TOPIC, fourth) == "spooled", "behind the spool, never past it"
    assert publisher.bus_up and publisher.pending == 0
    assert publisher.publish(TOPIC, []) == "sent"
    assert per_key(everything(bus)) == expected_per_key(first, second, third, fourth)


def test_a_failed_drain_keeps_what_was_not_acknowledged(tmp_path: Path) -> None:
    bus, outbox = FlakyBus(), Outbox(tmp_path)
    spooled = [batch(p, 3) for p in "abc"]
    outbox.append(TOPIC, spooled[0])
    outbox.append("catalog", [(None, b"cat")])
    outbox.append(TOPIC, spooled[1])
    outbox.append(TOPIC, spooled[2])
    bus.fail_after = 1
    with pytest.raises(BackendUnavailable):
        outbox.drain(bus)
    assert outbox.pending == 7
    bus.fail_after = None
    bus.fail_after_storing = True
    with pytest.raises(BackendUnavailable):
        outbox.drain(bus)
    assert outbox.pending == 7, "a batch whose acknowledgement was lost is kept"
    assert outbox.drain(bus) == 7
    values = [m.value for m in everything(bus)]
    assert set(values) == {v for b in spooled for _, v in b}, "nothing lost (duplicates are allowed)"
    assert [m.value for m in everything(bus, ["catalog"])] == [b"cat", b"cat"]


def test_half_written_and_unreadable_segments_never_block_the_rest(tmp_path: Path) -> None:
    bus, outbox = FlakyBus(), Outbox(tmp_path)
    (tmp_path / f".tmp-{time.time_ns():020d}-{'0' * 16}-3.seg").write_bytes(b'{"format": 1, "topic"')
    outbox.append(TOPIC, batch("a", 2))
    broken = tmp_path / f"{time.time_ns():020d}-{'f' * 16}-2.seg"
    broken.write_bytes(b'{"format": 1, "topic": "events", "count": 2}\n["azE=", "YQ=="]\n')
    (tmp_path / "notes.txt").write_text("not a segment")
    outbox.append(TOPIC, batch("b", 2))
    assert outbox.pending == 6
    assert outbox.drain(bus) == 4
    assert outbox.pending == 0
    assert (tmp_path / "quarantine" / broken.name).exists()
    assert per_key(everything(bus)) == expected_per_key(batch("a", 2), batch("b", 2))


def test_a_full_disk_raises_naming_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = Outbox(tmp_path)

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(BackendUnavailable, match=str(tmp_path)):
        outbox.append(TOPIC, batch("a", 2))
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BackendUnavailable, match="cannot be created"):
        Outbox(blocker / "outbox")


def _write_segments(directory: str, writer: int, count: int) -> None:
    outbox = Outbox(directory)
    for i in range(count):
        outbox.append(TOPIC, [(f"w{writer}".encode(), f"{writer}:{i}".encode())])


def test_concurrent_writers_and_drainers_share_the_directory(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_segments, args=(str(tmp_path), w, 40)) for w in range(3)]
    for process in writers:
        process.start()
    threads = [threading.Thread(target=_write_segments, args=(str(tmp_path), w, 40)) for w in range(3, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in writers:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert Outbox(tmp_path).pending == 240
    bus = FlakyBus()
    drained: list[int] = []
    drainers = [threading.Thread(target=lambda: drained.append(Outbox(tmp_path).drain(bus))) for _ in range(3)]
    for thread in drainers:
        thread.start()
    for thread in drainers:
        thread.join()
    assert sum(drained) == 240
    keyed = per_key(everything(bus))
    assert keyed == {f"w{w}".encode(): [f"{w}:{i}".encode() for i in range(40)] for w in range(6)}


def test_the_background_drain_empties_the_outbox_once_the_bus_is_back(tmp_path: Path) -> None:
    bus = FlakyBus()
    bus.down = True
    with Publisher(bus, Outbox(tmp_path), drain_interval_s=0.02) as publisher:
        assert publisher.publish(TOPIC, batch("a", 5)) == "spooled"
        assert publisher.publish(TOPIC, batch("b", 5)) == "spooled"
        time.sleep(0.1)
        assert publisher.pending == 10 and not publisher.bus_up
        bus.down = False
        deadline = time.monotonic() + 5
        while publisher.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert publisher.pending == 0 and publisher.bus_up
    assert per_key(everything(bus)) == expected_per_key(batch("a", 5), batch("b", 5))
