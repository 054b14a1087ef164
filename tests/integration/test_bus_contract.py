"""The bus contract against the in-process log and against a real Kafka-compatible broker (tansu), plus
what only the Kafka bus promises: an unreachable broker fails a publish in seconds, and then at once."""

from __future__ import annotations

import sys
import time
import uuid

import pytest

from recstack.bus import open_bus
from recstack.bus.kafka import KafkaBus
from recstack.errors import BackendUnavailable, ConfigurationError, MissingExtra
from recstack.testing.broker import KafkaBroker
from recstack.testing.bus import BusContract, consume, publish_when_up


class TestMemoryBus(BusContract):
    @pytest.fixture
    def bus_url(self) -> str:
        return f"memory://{uuid.uuid4().hex}"


@pytest.mark.kafka
class TestKafkaBus(BusContract):
    settle_s = 0.5

    @pytest.fixture
    def bus_url(self, kafka_url: str) -> str:
        return kafka_url


@pytest.mark.kafka
def test_an_unreachable_broker_fails_in_seconds_then_at_once(kafka_broker: KafkaBroker) -> None:
    bus = open_bus(kafka_broker.test_url, message_timeout_ms=1000)
    topic = f"t-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    publish_when_up(bus, topic, [(b"k", b"before")])
    kafka_broker.stop()
    assert not bus.ping()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        bus.publish(topic, [(b"k", b"while down")])
    assert time.monotonic() - started < 15  # the 1 s message timeout, not librdkafka's default 300 s
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="unreachable"):
        bus.publish(topic, [(b"k", b"again")])
    assert time.monotonic() - started < 1.0  # known down: no second timeout
    kafka_broker.start()
    bus.ensure_topics([topic])
    publish_when_up(bus, topic, [(b"k", b"after")])
    [got] = consume([bus.consumer([topic], f"g-{uuid.uuid4().hex[:8]}")], 1, 20)
    assert [m.value for m in got] == [b"after"]
    bus.close()


def test_kafka_urls_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        KafkaBus("kafka://")
    with pytest.raises(ConfigurationError):
        KafkaBus("kafka://127.0.0.1:9092", partitions=0)


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(MissingExtra, match=r"recstack\[bus\]"):
        KafkaBus("kafka://127.0.0.1:9092")
