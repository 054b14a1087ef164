"""The Kafka bus (`kafka://host:port[,host:port…]`) on confluent-kafka (librdkafka).

The producer is idempotent with `acks=all`, so a retried batch is not duplicated by the broker, and it
batches for throughput (a few ms of linger, large batches); `publish` returns only when the broker has
acknowledged every message. A short message timeout (5 s unless `message_timeout_ms` says otherwise) makes
an unreachable broker fail a publish in seconds, and for a second after a failure further publishes fail at
once, so a producer falls back to its outbox without waiting each time.

Options: `KafkaBus(url, partitions=4, **client_options)`, where each client option is a librdkafka property
with dots written as underscores (`message_timeout_ms=2000`, `security_protocol="SASL_SSL"`); the URL's
query (`kafka://h:9092?linger.ms=10`) sets properties too. They apply to every client the bus makes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from recstack.bus.base import Message, next_offsets
from recstack.errors import BackendUnavailable, ConfigurationError, MissingExtra

__all__ = ["KafkaBus", "KafkaConsumer"]

log = logging.getLogger(__name__)
client_log = logging.getLogger(f"{__name__}.librdkafka")

DOWN_GRACE_S = 1.0
ADMIN_TIMEOUT_S = 5.0

_PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.timeout.ms": 5_000,
    "partitioner": "murmur2_random",
    "delivery.report.only.error": True,
}
_CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": False,
    "session.timeout.ms": 6_000,
    "heartbeat.interval.ms": 1_000,
    "fetch.wait.max.ms": 50,
    "fetch.error.backoff.ms": 20,
}
_PRODUCER_ONLY = {
    "enable.idempotence", "acks", "linger.ms", "batch.size", "batch.num.messages", "queue.buffering.max.messages",
    "queue.buffering.max.kbytes", "message.timeout.ms", "partitioner", "delivery.report.only.error",
    "compression.type", "retries", "retry.backoff.ms", "request.timeout.ms",
}
_CONSUMER_ONLY = {
    "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset", "enable.partition.eof", "session.timeout.ms",
    "heartbeat.interval.ms", "max.poll.interval.ms", "partition.assignment.strategy", "group.instance.id",
    "fetch.min.bytes", "fetch.max.bytes", "fetch.wait.max.ms", "fetch.error.backoff.ms", "queued.min.messages",
    "isolation.level",
}


def _kafka() -> Any:
    try:
        import confluent_kafka
        import confluent_kafka.admin
    except ImportError as exc:
        raise MissingExtra("confluent-kafka", "bus") from exc
    return confluent_kafka


def _bootstrap(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ConfigurationError(f"not a Kafka bus URL: {url!r} (use kafka://host:port[,host:port…])")
    return parts.netloc, dict(parse_qsl(parts.query))


class KafkaBus:
    """A Bus on a Kafka cluster (see the module docstring); `partitions` is the count `ensure_topics` creates."""

    def __init__(self, url: str, partitions: int = 4, **client_options: Any) -> None:
        if partitions < 1:
            raise ConfigurationError(f"partitions must be >= 1, not {partitions}")
        self._kafka = _kafka()
        servers, query = _bootstrap(url)
        self.url = url
        self.partitions = partitions
        self._common: dict[str, Any] = {"bootstrap.servers": servers, "logger": client_log, **query}
        self._common.update({key.replace("_", "."): value for key, value in client_options.items()})
        self._producer: Any = None
        self._admin: Any = None
        self._lock = threading.Lock()
        self._down_at: float | None = None
        timeout_ms = self._common.get("message.timeout.ms", _PRODUCER_DEFAULTS["message.timeout.ms"])
        self._message_timeout_s = float(timeout_ms) / 1000

    def _config(self, defaults: dict[str, Any], *, drop: set[str]) -> dict[str, Any]:
        """`defaults` overridden by the URL's and the caller's options, less those another kind of client
        takes (librdkafka warns about each one it ignores)."""
        config = {**defaults, **self._common}
        return {k: v for k, v in config.items() if k not in drop}

    def _on_error(self, err: Any) -> None:
        if err.code() == self._kafka.KafkaError._ALL_BROKERS_DOWN:
            self._down_at = time.monotonic()
        log.debug("kafka producer: %s", err)

    def _get_producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                config = self._config(_PRODUCER_DEFAULTS, drop=_CONSUMER_ONLY)
                self._producer = self._kafka.Producer({**config, "error_cb": self._on_error})
            return self._producer

    def _get_admin(self) -> Any:
        with self._lock:
            if self._admin is None:
                self._admin = self._kafka.admin.AdminClient(self._config({}, drop=_PRODUCER_ONLY | _CONSUMER_ONLY))
            return self._admin

    def _recently_down(self) -> bool:
        down_at = self._down_at
        return down_at is not None and time.monotonic() - down_at < DOWN_GRACE_S

    def publish(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        if not messages:
            return
        if self._recently_down():
            raise BackendUnavailable(f"Kafka at {self.url} was unreachable less than {DOWN_GRACE_S:g}s ago")
        producer = self._get_producer()
        failures: list[Any] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err)

        produce, poll = producer.produce, producer.poll
        try:
            for key, value in messages:
                while True:
                    try:
                        produce(topic, value, key, on_delivery=on_delivery)
                        break
                    except BufferError:
                        poll(0.01)
            remaining = producer.flush(self._message_timeout_s + 5.0)
        except (self._kafka.KafkaException, SystemError) as exc:
            # SystemError: confluent-kafka raises a fatal producer error from inside a delivery callback.
            self._discard(producer)
            raise BackendUnavailable(f"Kafka at {self.url} refused a publish to {topic!r}: {exc}") from exc
        if remaining or failures:
            self._discard(producer)
            reason = failures[0] if failures else f"{remaining} messages unacknowledged"
            raise BackendUnavailable(
                f"Kafka at {self.url} did not acknowledge {len(failures) + remaining} of {len(messages)} messages "
                f"to {topic!r}: {reason}"
            )
        self._down_at = None

    def _discard(self, producer: Any) -> None:
        """Mark the broker down and drop the producer: its queue is purged (the caller was told the publish
        failed) and a fresh producer, with a fresh idempotence id, serves the next publish."""
        self._down_at = time.monotonic()
        with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            producer.purge()
            producer.flush(0)
        except (self._kafka.KafkaException, SystemError):
            log.debug("kafka producer: purge after failure failed", exc_info=True)

    def consumer(self, topics: Sequence[str], group: str) -> KafkaConsumer:
        config = self._config(_CONSUMER_DEFAULTS, drop=_PRODUCER_ONLY)
        return KafkaConsumer(self._kafka, {**config, "group.id": group}, list(topics))

    def ensure_topics(self, topics: Sequence[str]) -> None:
        if not topics:
            return
        new = [self._kafka.admin.NewTopic(t, num_partitions=self.partitions) for t in topics]
        futures = self._get_admin().create_topics(new, request_timeout=ADMIN_TIMEOUT_S)
        for name, future in futures.items():
            try:
                future.result(timeout=ADMIN_TIMEOUT_S + 1)
            except self._kafka.KafkaException as exc:
                if exc.args[0].code() != self._kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BackendUnavailable(f"Kafka at {self.url} could not create topic {name!r}: {exc}") from exc
            except TimeoutError as exc:
                raise BackendUnavailable(f"Kafka at {self.url} did not answer creating {name!r}") from exc

    def ping(self) -> bool:
        try:
            self._get_admin().list_topics(timeout=1.0)
        except self._kafka.KafkaException:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            producer, self._producer, self._admin = self._producer, None, None
        if producer is not None:
            producer.flush(5.0)


class KafkaConsumer:
    """One member of a Kafka consumer group; `commit` stores, synchronously, the offset after the last message
    `poll` returned in each partition the member still holds."""

    def __init__(self, kafka: Any, config: dict[str, Any], topics: list[str]) -> None:
        self._kafka = kafka
        self.group = str(config["group.id"])
        self._positions: dict[tuple[str, int], int] = {}
        self._consumer = kafka.Consumer({**config, "error_cb": self._on_error})
        self._consumer.subscribe(topics, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self._closed = False

    def _on_error(self, err: Any) -> None:
        log.warning("kafka consumer (group %s): %s", self.group, err)

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._positions.pop((tp.topic, tp.partition), None)

    def poll(self, max_messages: int = 1000, timeout_s: float = 1.0) -> list[Message]:
        if self._closed:
            raise ConfigurationError("poll on a closed consumer")
        consume = self._consumer.consume
        try:
            # `consume(n, t)` waits for n messages or t seconds: take what is fetched already, else wait for
            # the first message only, so one event is handled as soon as it arrives.
            batch = consume(max_messages, 0)
            if not batch:
                batch = consume(1, timeout_s)
                if batch and max_messages > 1:
                    batch.extend(consume(max_messages - 1, 0))
        except self._kafka.KafkaException as exc:
            raise BackendUnavailable(f"Kafka consumer (group {self.group}) failed: {exc}") from exc
        out: list[Message] = []
        append, positions = out.append, self._positions
        for m in batch:
            if m.error() is not None:
                self._on_message_error(m)
                continue
            topic, partition, offset, ts = m.topic(), m.partition(), m.offset(), m.timestamp()[1]
            append(Message(topic, partition, offset, m.key(), m.value() or b"", ts if ts >= 0 else None))
            positions[(topic, partition)] = offset + 1
        return out

    def _on_message_error(self, m: Any) -> None:
        err = m.error()
        if err.fatal():
            raise BackendUnavailable(f"Kafka consumer (group {self.group}) failed: {err}")
        if err.code() != self._kafka.KafkaError._PARTITION_EOF:
            log.warning("kafka consumer (group %s) on %s[%s]: %s", self.group, m.topic(), m.partition(), err)

    def commit(self, messages: Sequence[Message] | None = None) -> None:
        upto = self._positions if messages is None else next_offsets(messages)
        if not upto:
            return
        tp = self._kafka.TopicPartition
        offsets = [tp(topic, partition, offset) for (topic, partition), offset in upto.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except self._kafka.KafkaException as exc:
            err = exc.args[0]
            if err.code() in _rebalance_codes(self._kafka):
                log.warning("kafka consumer (group %s): commit lost to a rebalance, will replay: %s", self.group, err)
                return
            raise BackendUnavailable(f"Kafka consumer (group {self.group}) could not commit: {err}") from exc
        if messages is None:
            self._positions.clear()

    def assignment(self) -> list[tuple[str, int]]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def lag(self) -> int:
        """High watermark minus committed offset over the assignment. The watermark is the one the member's
        last fetch reported (fresh within a fetch wait for a member that polls), else the one the broker
        lists: listing waits behind the connection's long-poll fetch, and tansu lists the last batch's base
        offset + 1 rather than the end of the log."""
        assigned = self._consumer.assignment()
        if not assigned:
            return 0
        watermarks = self._consumer.get_watermark_offsets
        try:
            total = 0
            for tp in self._consumer.committed(assigned, timeout=ADMIN_TIMEOUT_S):
                low, high = watermarks(tp, cached=True)
                if high < 0:
                    low, high = watermarks(tp, timeout=ADMIN_TIMEOUT_S, cached=False)
                total += max(0, high - (tp.offset if tp.offset >= 0 else max(low, 0)))
        except self._kafka.KafkaException as exc:
            log.warning("kafka consumer (group %s): lag unknown: %s", self.group, exc)
            return 0
        return total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._consumer.close()


def _rebalance_codes(kafka: Any) -> set[int]:
    e = kafka.KafkaError
    return {e.REBALANCE_IN_PROGRESS, e.ILLEGAL_GENERATION, e.UNKNOWN_MEMBER_ID, e._ASSIGNMENT_LOST, e._STATE,
            e._NO_OFFSET}
