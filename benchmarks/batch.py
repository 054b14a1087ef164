"""Serving latency of a batch job's answer against a computed one, in-process, on MovieLens-100K.

Run: `.venv/bin/python benchmarks/batch.py [--data /work/shared/data] [--rounds 5] [--redis redis://…]
[--model als]`.

MovieLens-100K is ingested into a SQLite store and a champion (ALS by default: implicit, 64 factors, 15
iterations; any model of recstack's catalogue by `--model`, with its defaults) trained on all of it. Every
user's top 10 is then ranked once, as `recstack spark recommend` does on each partition (the model's own
`recommend`), and loaded into the cache under the champion's batch keys (`serving.batch`). For each cache
backend (the in-process memory cache; Redis when `--redis` answers) the same `RecommendationService` builds
one answer per user, `rounds` times over all 943 users in shuffled order, three ways in the same run,
interleaved user by user: `live` (no plans, no batch lists: retrieve, filter, rank), `planned` (the per-user
plans prepared at load, no batch lists) and `batch` (the lists loaded for the version it serves). Timed is
the answer's construction (`_compute`: history read, filters, ranking or batch lookup, JSON), not the result
cache in front of it, which answers a repeated request the same way for all three. Results:
benchmarks/results/batch-<model>.json, with the load average before and after and the raw Redis GET time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
K = 10


def build(workdir: Path, data: Path, name: str) -> tuple[Any, Any]:
    """The store with MovieLens-100K and a model `name` (recstack's catalogue) of all of it."""
    from recstack.ingestion import IngestOptions, ingest
    from recstack.ingestion import datasets as ds
    from recstack.models.catalog import create
    from recstack.storage import open_store

    store = open_store(f"sqlite:///{workdir / 'recstack.db'}")
    store.migrate()
    for kind, batches in ds.load("movielens-100k", data / "movielens-100k").items():
        ingest(store, batches, "movielens-100k", IngestOptions(kind=kind))
    import pandas as pd

    interactions = pd.concat(list(store.iter_interactions()), ignore_index=True)
    model = create("als", factors=64, iterations=15, random_state=7, num_threads=2) if name == "als" else create(name)
    model.fit(interactions[["user_id", "item_id", "event_type", "value"]], store.read_items())
    return store, model


def timings(services: dict[str, Any], users: list[str], rounds: int) -> dict[str, Any]:
    """Per-answer milliseconds of each service over `rounds` shuffled passes, the services interleaved user by
    user (in rotating order) so that the shared machine's load drifts alike for all; and how many answers came
    from each source."""
    import orjson

    order = list(users)
    modes = list(services)
    rng = random.Random(3)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    sources: dict[str, dict[str, int]] = {mode: {} for mode in modes}
    for _ in range(rounds):
        rng.shuffle(order)
        for n, user in enumerate(order):
            for mode in modes[n % len(modes):] + modes[: n % len(modes)]:
                service = services[mode]
                started = time.perf_counter()
                body = service._compute(service.model, service.catalog, user, K, None, [])
                times[mode].append((time.perf_counter() - started) * 1000)
                source = orjson.loads(body)["source"]
                sources[mode][source] = sources[mode].get(source, 0) + 1
    out: dict[str, Any] = {}
    for mode in modes:
        ms = np.array(times[mode])
        out[mode] = {"answers": len(ms), "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
                     "p99_ms": float(np.percentile(ms, 99)), "sources": sources[mode]}
    return out


def measure(store: Any, model: Any, cache: Any, rows: Any, rounds: int) -> dict[str, Any]:
    from recstack.serving.batch import load_cache, model_label
    from recstack.serving.data import load_catalog
    from recstack.serving.metrics import Metrics
    from recstack.serving.recommender_service import RecommendationService, ServingModel

    users = [str(u) for u in model.users.ids.tolist()]
    services: dict[str, Any] = {}
    for mode, version in (("live", 1), ("planned", 1), ("batch", 2)):
        # The batch service serves the same model as version 2, the only version whose lists are loaded.
        serving = ServingModel.build(model, version)
        service = RecommendationService(store, cache, Metrics(), plan_size=32 if mode == "planned" else 0)
        service.set_catalog(load_catalog(store))
        service.set_model(serving, service.prepare(serving))
        services[mode] = service
    load_cache(rows, cache, model_label(services["batch"].model.kind, 2), 3600.0)
    timings(services, users[:50], 1)  # warm: connections, the catalogue alignment
    out = timings(services, users, rounds)
    for mode in ("live", "planned"):
        out[f"batch_over_{mode}_p50"] = out["batch"]["p50_ms"] / out[mode]["p50_ms"]
        out[f"batch_over_{mode}_mean"] = out["batch"]["mean_ms"] / out[mode]["mean_ms"]
    return out


def round_trip_ms(cache: Any, n: int = 3000) -> dict[str, float]:
    """One cache GET of a present batch-sized value, in ms (p50, mean): what the batch path adds on Redis."""
    cache.set("probe", b"x" * 300, 60.0)
    ms = []
    for _ in range(n):
        started = time.perf_counter()
        cache.get("probe")
        ms.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(ms, 50)), "mean_ms": float(np.mean(ms))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RECSTACK_DATA_DIR", "/work/shared/data")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--model", default="als", help="A model of recstack's catalogue (default als).")
    args = parser.parse_args()

    from recstack.storage.cache import MemoryCache, RedisCache

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        store, model = build(Path(tmp), args.data, args.model)
        rows = model.recommend(model.users.ids, k=K)
        backends: dict[str, Any] = {"memory": MemoryCache()}
        redis = RedisCache(args.redis, prefix=f"bench-batch-{os.getpid()}:")
        if redis.ping():
            backends["redis"] = redis
        else:
            print(f"Redis at {args.redis} does not answer: memory cache only", file=sys.stderr)
        results = {name: measure(store, model, cache, rows, args.rounds) for name, cache in backends.items()}
        redis_get_ms = None
        if "redis" in backends:
            redis_get_ms = round_trip_ms(redis)
            redis.clear()
        store.close()
    import implicit

    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "implicit": implicit.__version__, "numpy": np.__version__},
        "data": "movielens-100k (943 users, 1682 items, 100,000 ratings)", "model": args.model, "k": K,
        "rounds": args.rounds, "redis_get_ms": redis_get_ms, "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"batch-{args.model}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
