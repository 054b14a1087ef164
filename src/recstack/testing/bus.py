"""The `Bus` contract: Kafka's consumer-group semantics as tests every bus backend must pass.

A backend's suite subclasses `BusContract` and provides a `bus_url` fixture (a bus each test may use;
tests make their own topic and group names, so a shared broker is fine):

    class TestMemoryBus(BusContract):
        @pytest.fixture
        def bus_url(self) -> str:
            return f"memory://{uuid.uuid4().hex}"

`wait_s` bounds how long a test waits for messages or a rebalance, `settle_s` how long it waits to be sure
nothing more comes; a networked backend raises `settle_s` to cover its fetch latency.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import pytest

from recstack.bus import Bus, Consumer, Message, open_bus
from recstack.errors import BackendUnavailable

__all__ = ["BusContract", "Join", "consume", "joined", "publish_when_up", "settle"]

Join = Callable[[Sequence[str], str], Consumer]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def consume(members: Sequence[Consumer], count: int, timeout_s: float) -> list[list[Message]]:
    """Poll `members` in turn until they returned `count` messages together (or `timeout_s` passed);
    returns each member's messages."""
    got: list[list[Message]] = [[] for _ in members]
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got)) < count and time.monotonic() < deadline:
        for i, member in enumerate(members):
            got[i].extend(member.poll(max_messages=count, timeout_s=0.05))
    return got


def publish_when_up(bus: Bus, topic: str, messages: list[tuple[bytes | None, bytes]], within_s: float = 30.0) -> None:
    """Publish once the broker takes messages: on a loaded machine a fresh broker may miss a short timeout."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            bus.publish(topic, messages)
            return
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def settle(members: Sequence[Consumer], seconds: float) -> list[Message]:
    """Whatever `members` still deliver within `seconds` (the tests expect nothing)."""
    extra: list[Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for member in members:
            extra.extend(member.poll(max_messages=1000, timeout_s=0.05))
    return extra


def joined(members: Sequence[Consumer], timeout_s: float) -> list[list[tuple[str, int]]]:
    """Poll `members` until each holds partitions and no two hold the same one; returns the assignments."""
    deadline = time.monotonic() + timeout_s
    while True:
        for member in members:
            assert member.poll(max_messages=1, timeout_s=0.05) == [], "joined() expects empty topics"
        assignments = [member.assignment() for member in members]
        flat = [pair for a in assignments for pair in a]
        if all(assignments) and len(flat) == len(set(flat)):
            return assignments
        if time.monotonic() > deadline:
            raise AssertionError(f"members did not share the partitions within {timeout_s}s: {assignments}")


def _values(messages: Sequence[Message]) -> list[bytes]:
    return [m.value for m in messages]


def _batch(prefix: str, n: int, keys: int = 10) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i % keys}".encode(), f"{prefix}{i}".encode()) for i in range(n)]


class BusContract:
    """The behaviour every `Bus` promises (see `recstack.bus.base`); subclasses provide `bus_url`."""

    wait_s: ClassVar[float] = 30.0
    settle_s: ClassVar[float] = 0.2

    @pytest.fixture
    def bus(self, bus_url: str) -> Iterator[Bus]:
        bus = open_bus(bus_url)
        yield bus
        bus.close()

    @pytest.fixture
    def topic(self, bus: Bus) -> str:
        name = _unique("topic")
        bus.ensure_topics([name])
        return name

    @pytest.fixture
    def join(self, bus: Bus) -> Iterator[Join]:
        """Make group members that are closed after the test."""
        members: list[Consumer] = []

        def make(topics: Sequence[str], group: str) -> Consumer:
            member = bus.consumer(topics, group)
            members.append(member)
            return member

        yield make
        for member in members:
            member.close()

    def test_ping(self, bus: Bus) -> None:
        assert bus.ping()

    def test_round_trip_keeps_bytes_keys_and_topic(self, bus: Bus, topic: str, join: Join) -> None:
        sent = [(b"user-1", b'{"a": 1}'), (None, bytes(range(256))), (b"\x00\xff", b"x")]
        bus.publish(topic, sent)
        bus.publish(topic, [])
        [got] = consume([join([topic], _unique("group"))], len(sent), self.wait_s)
        assert sorted((m.key or b"", m.value) for m in got) == sorted((k or b"", v) for k, v in sent)
        assert all(m.topic == topic for m in got)
        assert all(m.timestamp_ms is None or m.timestamp_ms > 0 for m in got)

    def test_order_is_kept_per_key_within_a_partition(self, bus: Bus, topic: str, join: Join) -> None:
        for part in range(3):
            bus.publish(topic, [(f"k{i % 7}".encode(), f"{part * 100 + i}".encode()) for i in range(100)])
        [got] = consume([join([topic], _unique("group"))], 300, self.wait_s)
        assert len(got) == 300
        partitions: dict[bytes | None, set[int]] = defaultdict(set)
        sequences: dict[bytes | None, list[int]] = defaultdict(list)
        offsets: dict[int, list[int]] = defaultdict(list)
        for m in got:
            partitions[m.key].add(m.partition)
            sequences[m.key].append(int(m.value))
            offsets[m.partition].append(m.offset)
        assert all(len(p) == 1 for p in partitions.values())
        assert all(seq == sorted(seq) for seq in sequences.values())
        assert all(o == sorted(o) and len(o) == len(set(o)) for o in offsets.values())

    def test_group_members_share_partitions_and_each_message_goes_to_one(
        self, bus: Bus, topic: str, join: Join
    ) -> None:
        group = _unique("group")
        members = [join([topic], group), join([topic], group)]
        assignments = joined(members, self.wait_s)
        bus.publish(topic, _batch("m", 400, keys=40))
        got = consume(members, 400, self.wait_s)
        got[0].extend(settle(members[:1], self.settle_s))
        got[1].extend(settle(members[1:], self.settle_s))
        counts = Counter(v for messages in got for v in _values(messages))
        assert len(counts) == 400 and set(counts.values()) == {1}
        for messages, assignment in zip(got, assignments, strict=True):
            assert messages, "both members get a share"
            assert {(m.topic, m.partition) for m in messages} <= set(assignment)

    def test_a_new_member_resumes_after_the_last_commit(self, bus: Bus, topic: str, join: Join) -> None:
        group = _unique("group")
        bus.publish(topic, _batch("a", 20))
        first = join([topic], group)
        [got] = consume([first], 20, self.wait_s)
        assert len(got) == 20
        first.commit()
        first.close()
        bus.publish(topic, _batch("b", 10))
        second = join([topic], group)
        [resumed] = consume([second], 10, self.wait_s)
        resumed.extend(settle([second], self.settle_s))
        assert sorted(_values(resumed)) == sorted(v for _, v in _batch("b", 10))

    def test_uncommitted_messages_go_to_the_next_member(self, bus: Bus, topic: str, join: Join) -> None:
        group = _unique("group")
        bus.publish(topic, _batch("a", 10))
        first = join([topic], group)
        assert len(consume([first], 10, self.wait_s)[0]) == 10
        first.commit()
        bus.publish(topic, _batch("b", 10))
        assert len(consume([first], 10, self.wait_s)[0]) == 10
        first.close()
        second = join([topic], group)
        [replayed] = consume([second], 10, self.wait_s)
        replayed.extend(settle([second], self.settle_s))
        assert sorted(_values(replayed)) == sorted(v for _, v in _batch("b", 10))

    def test_lag_counts_uncommitted_messages(self, bus: Bus, topic: str, join: Join) -> None:
        member = join([topic], _unique("group"))
        bus.publish(topic, _batch("a", 12))
        assert len(consume([member], 12, self.wait_s)[0]) == 12
        assert member.lag() == 12
        member.commit()
        assert member.lag() == 0
        bus.publish(topic, _batch("b", 5))
        assert len(consume([member], 5, self.wait_s)[0]) == 5
        assert member.lag() == 5
        member.commit()
        assert member.lag() == 0

    def test_ensure_topics_is_idempotent_and_keeps_messages(self, bus: Bus, topic: str, join: Join) -> None:
        bus.publish(topic, _batch("a", 5))
        other = _unique("topic")
        bus.ensure_topics([topic, other])
        bus.ensure_topics([other, topic])
        bus.publish(other, _batch("b", 5))
        [got] = consume([join([topic, other], _unique("group"))], 10, self.wait_s)
        assert sorted((m.topic, m.value) for m in got) == sorted(
            [(topic, v) for _, v in _batch("a", 5)] + [(other, v) for _, v in _batch("b", 5)]
        )

    def test_several_topics_and_independent_groups(self, bus: Bus, join: Join) -> None:
        events, catalog = _unique("events"), _unique("catalog")
        bus.ensure_topics([events, catalog])
        bus.publish(events, _batch("e", 30))
        bus.publish(catalog, _batch("c", 20))
        both = join([events, catalog], _unique("group"))
        only_catalog = join([catalog], _unique("group"))
        [got_both] = consume([both], 50, self.wait_s)
        [got_catalog] = consume([only_catalog], 20, self.wait_s)
        got_catalog.extend(settle([only_catalog], self.settle_s))
        assert Counter(m.topic for m in got_both) == {events: 30, catalog: 20}
        assert sorted(_values(got_catalog)) == sorted(v for _, v in _batch("c", 20))
        assert {t for t, _ in both.assignment()} == {events, catalog}
