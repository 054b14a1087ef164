"""The stream processor against each bus (in-process and the real Kafka broker) and each store: every event
stored exactly once, poison messages dead-lettered with their reason, partitions shared by a group."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import generate_latest

from recstack.bus import Bus, open_bus
from recstack.bus.base import Topics
from recstack.bus.events import encode_catalog, encode_events, read_dead_letter
from recstack.ingestion.pipeline import IngestOptions, RawBatch
from recstack.ingestion.produce import produce
from recstack.processing.online import MemoryOnlineState
from recstack.processing.stream import StreamProcessor
from recstack.schema import validate_interactions
from recstack.storage import Store
from recstack.storage.cache import MemoryCache

BASE_MS = 1_700_000_000_000


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    url = f"memory://{uuid.uuid4().hex}" if request.param == "memory" else str(request.getfixturevalue("kafka_url"))
    the_bus = open_bus(url)
    yield the_bus
    the_bus.close()


@pytest.fixture
def topics() -> Topics:
    tag = uuid.uuid4().hex[:8]
    return Topics(events=f"events-{tag}", catalog=f"catalog-{tag}", dlq=f"dlq-{tag}")


def _events(n: int, users: int = 50, start: int = 0) -> pd.DataFrame:
    raw = pd.DataFrame({
        "user_id": [f"u{i % users}" for i in range(start, start + n)],
        "item_id": [f"i{i % 37}" for i in range(start, start + n)],
        "event_type": "view",
        "timestamp": [BASE_MS + i * 1000 for i in range(start, start + n)],
    })
    return validate_interactions(raw).accepted.drop(columns=["_location"], errors="ignore")


def _processor(bus: Bus, store: Store, topics: Topics, group: str = "g", **kw: object) -> StreamProcessor:
    return StreamProcessor(bus, store, kw.pop("online", MemoryOnlineState()), topics=topics, group=group,  # type: ignore[arg-type]
                           poll_timeout_s=0.2, **kw)  # type: ignore[arg-type]


def _dead_letters(bus: Bus, topic: str) -> list[dict[str, object]]:
    consumer = bus.consumer([topic], f"dlq-reader-{uuid.uuid4().hex[:6]}")
    out: list[dict[str, object]] = []
    for _ in range(20):
        batch = consumer.poll(1000, 0.3)
        out.extend(read_dead_letter(m.value) for m in batch)
        if not batch and out:
            break
    consumer.close()
    return out


def test_events_are_stored_once_and_poison_goes_to_the_dead_letter_topic(
    bus: Bus, store: Store, topics: Topics
) -> None:
    bus.ensure_topics(topics.all())
    good = _events(300)
    messages = encode_events(good)
    poison = [
        (b"u1", b"\x00garbage"),
        (b"u2", orjson.dumps({"schema_version": 2, "event_id": "bad1", "user_id": "u2", "item_id": "i1",
                              "event_type": "dance", "value": None, "timestamp": BASE_MS})),
        (b"u3", orjson.dumps({"schema_version": 7, "user_id": "u3"})),
    ]
    mixed = messages[:100] + poison[:2] + messages[100:200] + poison[2:] + messages[200:] + messages[:50]
    bus.publish(topics.events, mixed)
    online = MemoryOnlineState()
    cache = MemoryCache()
    cache.set("epoch:u1", b"old", 60)
    processor = _processor(bus, store, topics, online=online, cache=cache)
    total = processor.run(idle_exit_s=1.0)
    processor.close()
    assert store.counts()["interactions"] == 300
    assert total.stored == 300 and total.duplicates == 50 and total.rejected == 3
    exposition = generate_latest(processor.metrics.registry).decode()
    assert "recstack_stream_dead_letters_total 3.0" in exposition
    assert 'recstack_stream_events_total{outcome="stored"} 300.0' in exposition
    assert "recstack_stream_batch_duration_seconds_count" in exposition
    letters = _dead_letters(bus, topics.dlq)
    reasons = sorted(str(d["reason"]) for d in letters)
    assert len(letters) == 3
    assert any("not valid JSON" in r for r in reasons)
    assert any("event_type 'dance'" in r for r in reasons)
    assert any("schema_version 7" in r for r in reasons)
    assert {bytes(d["original"]) for d in letters} == {p[1] for p in poison}  # type: ignore[call-overload]
    assert len(store.list_quarantine(limit=None)) == 3
    assert cache.get("epoch:u1") != b"old"
    assert online.history("u1").item_ids[0] == good.loc[good["user_id"] == "u1"].iloc[-1]["item_id"]


def test_uncommitted_batch_is_replayed_without_doubling(bus: Bus, store: Store, topics: Topics) -> None:
    bus.ensure_topics(topics.all())
    bus.publish(topics.events, encode_events(_events(500)))
    online = MemoryOnlineState()
    first = _processor(bus, store, topics, online=online, batch_size=200)
    first.consumer.commit = lambda *_: None  # type: ignore[method-assign]  # dies before every commit
    done = 0
    for _ in range(100):
        done += first.step() is not None
        if done == 2:
            break
    assert done == 2 and 0 < store.counts()["interactions"] <= 400
    first.close()
    second = _processor(bus, store, topics, online=online)
    total = second.run(idle_exit_s=1.0)
    second.close()
    assert store.counts()["interactions"] == 500
    assert total.messages == 500 and total.stored + total.duplicates == 500
    assert sum(online.trending(10**12).values()) == 500


def test_two_processors_share_partitions_and_hand_over_on_stop(bus: Bus, store: Store, topics: Topics) -> None:
    bus.ensure_topics(topics.all())
    a = _processor(bus, store, topics, group="pair", batch_size=100)
    b = _processor(bus, store, topics, group="pair", batch_size=100)
    bus.publish(topics.events, encode_events(_events(2000, users=200)))
    done = 0
    for _ in range(200):
        for p in (a, b):
            report = p.step()
            done += report.messages if report else 0
        if done >= 1000:
            break
    assert a.consumer.assignment() and b.consumer.assignment()
    assert not set(a.consumer.assignment()) & set(b.consumer.assignment())
    a.close()
    bus.publish(topics.events, encode_events(_events(1000, users=200, start=2000)))
    b.run(idle_exit_s=2.0)
    b.close()
    assert store.counts()["interactions"] == 3000


def test_producing_the_same_file_twice_stores_each_event_once(bus: Bus, store: Store, topics: Topics) -> None:
    bus.ensure_topics(topics.all())
    raw = pd.DataFrame({
        "uid": [f"u{i % 20}" for i in range(400)], "item_id": [f"i{i % 30}" for i in range(400)],
        "timestamp": [str(BASE_MS + i) if i != 7 else "yesterday-ish" for i in range(400)],
        "_location": [f"line {i + 2}" for i in range(400)],
    })
    options = IngestOptions(kind="interactions", mapping={"uid": "user_id"})
    publisher = _DirectPublisher(bus)
    for _ in range(2):
        run = produce(store, publisher, [RawBatch(raw)], "plays.csv", options, topics)
        assert (run.read, run.accepted, run.rejected) == (400, 399, 1)
    processor = _processor(bus, store, topics)
    processor.run(idle_exit_s=1.0)
    processor.close()
    counts = store.counts()
    assert counts["interactions"] == 399
    assert counts["quarantined"] == 2


def test_catalogue_changes_are_applied_and_bad_ones_dead_lettered(bus: Bus, store: Store, topics: Topics) -> None:
    bus.ensure_topics(topics.all())
    online = MemoryOnlineState()
    bus.publish(topics.catalog, [
        encode_catalog("item", {"item_id": "v1", "title": "Jazz night", "category": "jazz", "available": False}),
        encode_catalog("user", {"user_id": "u1"}, {"categories": ["jazz"]}),
        encode_catalog("item", {"item_id": "v2", "duration_s": -5}),
        (b"x", b"{}"),
    ])
    processor = _processor(bus, store, topics, online=online)
    total = processor.run(idle_exit_s=1.0)
    processor.close()
    items = store.read_items().set_index("item_id")
    assert not bool(items.loc["v1", "available"]) and items.loc["v1", "category"] == "jazz"
    assert store.get_preferences("u1") == {"categories": ["jazz"]}
    assert "v2" not in items.index
    assert total.rejected == 2 and online.catalog_epoch() == 1
    assert {"duration_s '-5' is below 0"} <= {str(d["reason"]) for d in _dead_letters(bus, topics.dlq)}


class _DirectPublisher:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def publish(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> str:
        self.bus.publish(topic, messages)
        return "sent"


def test_value_nan_survives(bus: Bus, store: Store, topics: Topics) -> None:
    frame = _events(3)
    frame["value"] = [np.nan, 2.5, 0.0]
    bus.ensure_topics(topics.all())
    bus.publish(topics.events, encode_events(frame))
    processor = _processor(bus, store, topics)
    processor.run(idle_exit_s=1.0)
    processor.close()
    stored = pd.concat(list(store.iter_interactions())).sort_values("timestamp")
    assert stored["value"].isna().tolist() == [True, False, False]
