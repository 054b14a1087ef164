"""The embedded bus: Kafka's semantics (partitions, keyed order, consumer groups, committed offsets) held
in this process, so the event-driven path runs on a laptop with no server.

`memory://NAME` names a log shared by every `MemoryBus` opened on that name in this process, as Kafka clients
of one broker share it; a bare `memory://` is a log of that one `MemoryBus` object (an API process and its
in-process stream worker share the object, and two apps in one test process never see each other's events).
Nothing survives the process: the store is the durable copy of what the stream processor consumed.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from recstack.bus.base import Message, next_offsets
from recstack.errors import ConfigurationError

__all__ = ["MemoryBus", "MemoryConsumer"]

DEFAULT_PARTITIONS = 4


@dataclass
class _Group:
    members: list[str] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    generation: int = 0


class _Log:
    """Topics of partitions (lists of messages) and consumer groups, behind one condition variable."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.topics: dict[str, list[list[Message]]] = {}
        self.groups: dict[str, _Group] = {}
        self.subscriptions: dict[str, tuple[str, ...]] = {}
        self.cond = threading.Condition()

    def topic(self, name: str) -> list[list[Message]]:
        parts = self.topics.get(name)
        if parts is None:
            parts = self.topics[name] = [[] for _ in range(self.partitions)]
        return parts

    def assignment(self, group: str, member: str) -> list[tuple[str, int]]:
        """Partitions of the group's topics dealt round-robin to its members in join order."""
        g = self.groups[group]
        if member not in g.members:
            return []
        rank, size = g.members.index(member), len(g.members)
        topics = sorted({t for m in g.members for t in self.subscriptions.get(m, ())})
        pairs = [(t, p) for t in topics for p in range(len(self.topic(t)))]
        mine = set(self.subscriptions.get(member, ()))
        return [pair for i, pair in enumerate(pairs) if i % size == rank and pair[0] in mine]


_LOGS: dict[str, _Log] = {}
_LOGS_LOCK = threading.Lock()


def _partition(key: bytes | None, n: int, counter: int) -> int:
    if key is None:
        return counter % n
    return zlib.crc32(key) % n


class MemoryBus:
    """A Bus in this process (see the module docstring); `?partitions=N` sets the partition count."""

    def __init__(self, url: str = "memory://", partitions: int | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "memory":
            raise ConfigurationError(f"not a memory bus URL: {url!r}")
        query = parse_qs(parts.query)
        partitions = int(query.get("partitions", [partitions or DEFAULT_PARTITIONS])[0])
        if partitions < 1:
            raise ConfigurationError(f"partitions must be >= 1 in {url!r}")
        self.url = url
        name = parts.netloc
        if not name:
            self._log = _Log(partitions)
        else:
            with _LOGS_LOCK:
                self._log = _LOGS.setdefault(name, _Log(partitions))
        self._counter = 0

    def publish(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        log = self._log
        now = int(time.time() * 1000)
        with log.cond:
            parts = log.topic(topic)
            for key, value in messages:
                self._counter += 1
                p = _partition(key, len(parts), self._counter)
                parts[p].append(Message(topic, p, len(parts[p]), key, bytes(value), now))
            log.cond.notify_all()

    def consumer(self, topics: Sequence[str], group: str) -> MemoryConsumer:
        return MemoryConsumer(self._log, list(topics), group)

    def ensure_topics(self, topics: Sequence[str]) -> None:
        with self._log.cond:
            for topic in topics:
                self._log.topic(topic)

    def end_offsets(self, topic: str) -> list[int]:
        """Per partition, the offset the next message will get (for tests and lag)."""
        with self._log.cond:
            return [len(p) for p in self._log.topic(topic)]

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

    @staticmethod
    def reset(name: str) -> None:
        """Forget log `name` (tests start each case on an empty log)."""
        with _LOGS_LOCK:
            _LOGS.pop(name, None)


class MemoryConsumer:
    """A consumer-group member of a `MemoryBus`; joining or leaving re-deals the group's partitions, and
    every member then resumes each partition it holds from the group's committed offset."""

    def __init__(self, log: _Log, topics: list[str], group: str) -> None:
        self._log = log
        self.group = group
        self.member = uuid.uuid4().hex
        self._positions: dict[tuple[str, int], int] = {}
        self._generation = -1
        self._closed = False
        with log.cond:
            for topic in topics:
                log.topic(topic)
            log.subscriptions[self.member] = tuple(topics)
            g = log.groups.setdefault(group, _Group())
            g.members.append(self.member)
            g.generation += 1
            log.cond.notify_all()

    def _sync(self) -> list[tuple[str, int]]:
        """Current assignment; after a rebalance, positions restart from the committed offsets."""
        g = self._log.groups[self.group]
        pairs = self._log.assignment(self.group, self.member)
        if g.generation != self._generation:
            self._generation = g.generation
            self._positions = {pair: g.committed.get(pair, 0) for pair in pairs}
        return pairs

    def poll(self, max_messages: int = 1000, timeout_s: float = 1.0) -> list[Message]:
        if self._closed:
            raise ConfigurationError("poll on a closed consumer")
        deadline = time.monotonic() + timeout_s
        log = self._log
        with log.cond:
            while True:
                out: list[Message] = []
                for pair in self._sync():
                    if len(out) >= max_messages:
                        break
                    part = log.topic(pair[0])[pair[1]]
                    start = self._positions[pair]
                    taken = part[start : start + max_messages - len(out)]
                    if taken:
                        out.extend(taken)
                        self._positions[pair] = start + len(taken)
                if out:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                log.cond.wait(remaining)

    def commit(self, messages: Sequence[Message] | None = None) -> None:
        upto = self._positions if messages is None else next_offsets(messages)
        with self._log.cond:
            g = self._log.groups[self.group]
            if g.generation != self._generation:
                return  # partitions were re-dealt since the poll: their new owner replays from the last commit
            for pair, offset in upto.items():
                g.committed[pair] = max(offset, g.committed.get(pair, 0))

    def assignment(self) -> list[tuple[str, int]]:
        with self._log.cond:
            return self._sync()

    def lag(self) -> int:
        with self._log.cond:
            g = self._log.groups[self.group]
            return sum(
                len(self._log.topic(t)[p]) - g.committed.get((t, p), 0) for t, p in self._log.assignment(
                    self.group, self.member)
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._log.cond:
            g = self._log.groups[self.group]
            if self.member in g.members:
                g.members.remove(self.member)
                g.generation += 1
            self._log.subscriptions.pop(self.member, None)
            self._log.cond.notify_all()
