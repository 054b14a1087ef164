"""The outbox against a real broker: while the broker is stopped publishes are answered ("spooled") at
once after the first; once it is back, everything drains in order and nothing is lost."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from recstack.bus import open_bus
from recstack.bus.outbox import Outbox, Publisher
from recstack.testing.broker import KafkaBroker
from recstack.testing.bus import consume, publish_when_up, settle

pytestmark = pytest.mark.kafka


def test_a_stopped_broker_spools_and_a_restarted_one_gets_everything_in_order(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    bus = open_bus(kafka_broker.test_url, message_timeout_ms=1000)
    topic = f"events-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    publish_when_up(bus, topic, [(b"warmup", b"0")])
    publisher = Publisher(bus, Outbox(tmp_path / "outbox"), drain_interval_s=0.1)

    kafka_broker.stop()
    batches = [[(f"u{i % 5}".encode(), f"{n}:{i}".encode()) for i in range(50)] for n in range(20)]
    answers = [publisher.publish(topic, batches[0])]
    started = time.monotonic()
    answers += [publisher.publish(topic, b) for b in batches[1:]]
    assert set(answers) == {"spooled"}
    assert time.monotonic() - started < 3, "only the first publish waits for the broker"
    assert publisher.pending == 1000 and not publisher.bus_up

    kafka_broker.start()
    bus.ensure_topics([topic])
    with publisher:
        deadline = time.monotonic() + 20
        while publisher.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.pending == 0 and publisher.bus_up
        if publisher.publish(topic, [(b"u0", b"after")]) == "spooled":  # a loaded machine can miss the 1 s timeout
            while publisher.pending and time.monotonic() < deadline + 20:
                time.sleep(0.05)
        assert publisher.pending == 0

    consumer = bus.consumer([topic], f"check-{uuid.uuid4().hex[:8]}")
    [got] = consume([consumer], 1001, 30)
    got.extend(settle([consumer], 0.5))
    consumer.close()
    bus.close()
    keyed: dict[bytes | None, list[bytes]] = defaultdict(list)
    for m in got:
        keyed[m.key].append(m.value)
    expected: dict[bytes | None, list[bytes]] = defaultdict(list)
    for b in batches:
        for key, value in b:
            expected[key].append(value)
    expected[b"u0"].append(b"after")
    assert dict(keyed) == dict(expected), "the restarted broker (memory storage) holds exactly the spool, in order"
