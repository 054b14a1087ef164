"""The Bus protocol: the narrow surface recstack needs from an event log (Kafka's consumer contract).

Publishing takes a batch of `(key, value)` byte pairs and returns only once the broker holds them all (or
raises `BackendUnavailable`), so a producer that was told "done" may tell its client "accepted". Consuming
is as a member of a consumer group: the group's members share a topic's partitions, each partition's
messages come in order, and `commit` records how far the member got. A member that stops without
committing hands its partitions to the others, who start again from the last committed offset: delivery
is at-least-once, and consumers make their writes idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["Bus", "Consumer", "Message", "Topics", "next_offsets"]


@dataclass(frozen=True)
class Topics:
    """Topic names of one deployment (each configurable, so several deployments can share a broker)."""

    events: str = "recstack.events"
    catalog: str = "recstack.catalog"
    dlq: str = "recstack.events.dlq"

    def all(self) -> tuple[str, str, str]:
        return (self.events, self.catalog, self.dlq)


class Message(NamedTuple):
    """One consumed message; `key` and `value` are the bytes as published (a tuple: a consumer makes
    hundreds of thousands a second)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


@runtime_checkable
class Consumer(Protocol):
    """One member of a consumer group, reading the topics it subscribed to."""

    def poll(self, max_messages: int = 1000, timeout_s: float = 1.0) -> list[Message]:
        """Up to `max_messages` messages, waiting at most `timeout_s` for the first; [] when none came."""

    def commit(self, messages: Sequence[Message] | None = None) -> None:
        """Record `messages` — by default every message `poll` returned so far — as processed, so the group
        resumes after them (synchronously). Batches are committed in the order they were polled."""

    def assignment(self) -> list[tuple[str, int]]:
        """The `(topic, partition)` pairs this member reads now."""

    def lag(self) -> int:
        """Messages in this member's partitions not yet committed (0 when unknown)."""

    def close(self) -> None:
        """Leave the group; uncommitted messages go to the next member that takes the partitions."""


@runtime_checkable
class Bus(Protocol):
    """An event log: publish batches, consume as a group member."""

    url: str

    def publish(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Append `messages` (key, value) to `topic`, keyed to partitions by `key`; returns once all are
        stored by the broker, else raises `BackendUnavailable` (some may have been stored: publishing
        again is safe because consumers de-duplicate)."""

    def consumer(self, topics: Sequence[str], group: str) -> Consumer:
        """Join consumer group `group` for `topics`, starting from the group's committed offsets (from the
        beginning when it has none)."""

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the topics that do not exist yet (with the bus's partition count)."""

    def ping(self) -> bool:
        """True when the broker answers now."""

    def close(self) -> None: ...


def next_offsets(messages: Sequence[Message]) -> dict[tuple[str, int], int]:
    """Per partition, the offset after the last of `messages`: where the group resumes once they are done."""
    out: dict[tuple[str, int], int] = {}
    for m in messages:
        pair = (m.topic, m.partition)
        if m.offset + 1 > out.get(pair, 0):
            out[pair] = m.offset + 1
    return out
