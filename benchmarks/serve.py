"""Serving benchmark: the recommendation API on a 100,000-item × 200,000-user synthetic catalogue.

Run: `.venv/bin/python benchmarks/serve.py [--interactions 2500000] [--workdir DIR] [--seconds 15]`.

1. Setup (reused when `--workdir` already holds it): synthetic catalogue and interactions ingested into a
   SQLite store, an ALS model trained on them, logged to the MLflow registry and promoted to champion.
2. The server (`recstack serve`, one uvicorn worker) runs in its own process; the load generator in a second
   process on loopback: a minimal keep-alive HTTP/1.1 client on asyncio (far lighter than an HTTP library,
   so the measured ceiling is the server's, not the client's).
3. Measured in the same run: the trivial JSON endpoint (`/healthz`) and uncached recommendations (every
   request a user not asked before) at saturation (throughput) and at low concurrency (latency); cached
   recommendations (users asked before); event-to-effect latency (POST a like, poll until the answer
   changes); Faiss recall@100 of the served index against exact search.
Results: benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "serve.json"
TARGETS = {"uncached_p99_ms": 30.0, "throughput_ratio": 0.5, "cached_p99_ms": 5.0, "recall_at_100": 0.95,
           "event_to_effect_s": 1.0}


# ---- setup ------------------------------------------------------------------------------------------------

def setup(workdir: Path, users: int, items: int, interactions: int, model_name: str = "als") -> dict[str, Any]:
    marker = workdir / "setup.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    import pandas as pd

    from recstack.ingestion.pipeline import IngestOptions, RawBatch, ingest
    from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
    from recstack.models.catalog import create
    from recstack.registry import Registry
    from recstack.storage import open_store

    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    config = SyntheticConfig(users=users, items=items, interactions=interactions, seed=11)
    user_frame, item_frame = make_catalog(config)
    store = open_store(f"sqlite:///{workdir / 'recstack.db'}")
    store.migrate()
    for kind, frame in (("items", item_frame), ("users", user_frame)):
        ingest(store, [RawBatch(frame.assign(_location="synthetic"))], "synthetic", IngestOptions(kind))  # type: ignore[arg-type]
    chunks = []

    def batches() -> Any:
        for chunk in iter_interactions(config, chunk_size=250_000):
            chunks.append(chunk[["user_id", "item_id", "event_type", "value", "timestamp"]])
            yield RawBatch(chunk.assign(_location="synthetic"))

    ingest(store, batches(), "synthetic", IngestOptions("interactions"))
    store.close()
    timings["generate_and_ingest_s"] = time.perf_counter() - started
    started = time.perf_counter()
    frame = pd.concat(chunks, ignore_index=True)
    if model_name == "hybrid":
        # The full hybrid (sources → features → LambdaRank); EASE's dense solve does not fit 100,000 items.
        model = create("hybrid", candidates={"collaborative": None}).fit(frame, item_frame)
    else:
        als = create("als", factors=32, iterations=10, regularization=0.05)
        model = als.fit(frame.drop(columns="timestamp"), item_frame)
    timings["train_s"] = time.perf_counter() - started
    started = time.perf_counter()
    registry = Registry(f"sqlite:///{(workdir / 'mlflow.db').resolve()}", "recstack", cache_dir=workdir / "model-cache")
    version = registry.log(model, metrics={"ndcg@10": 0.0})
    registry.promote(version.version, force=True)
    timings["register_s"] = time.perf_counter() - started
    info = {"users": users, "items": items, "interactions": interactions, "timings": timings,
            "model": model_name, "version": version.version}
    marker.write_text(json.dumps(info, indent=2))
    return info


def served_users(workdir: Path, users_file: Path) -> dict[str, Any]:
    """The champion's users, written for the load generator (a model without embeddings has no index)."""
    from recstack.registry import Registry

    registry = Registry(f"sqlite:///{(workdir / 'mlflow.db').resolve()}", "recstack", cache_dir=workdir / "model-cache")
    champion = registry.champion()
    assert champion is not None
    users_file.write_text(json.dumps(registry.load(champion).users.ids.tolist()))
    return {"index": "none (the hybrid ranks its own candidates)"}


def recall(workdir: Path, users_file: Path) -> dict[str, Any]:
    """Recall@100 of the index the server builds (same config, same queries) against exact search."""
    from recstack.registry import Registry
    from recstack.serving.retrieval import ItemIndex

    registry = Registry(f"sqlite:///{(workdir / 'mlflow.db').resolve()}", "recstack", cache_dir=workdir / "model-cache")
    champion = registry.champion()
    assert champion is not None
    model = registry.load(champion)
    users_file.write_text(json.dumps(model.users.ids.tolist()))
    items, users = model.item_embeddings(), model.user_embeddings()
    assert items is not None and users is not None
    index = ItemIndex(items, queries=users)
    rng = np.random.default_rng(123)
    held_out = users[rng.choice(len(users), 2000, replace=False)]
    started = time.perf_counter()
    value = index.recall_at(100, held_out)
    return {"index": index.kind, "recall_at_100": value, "build_s": index.build_seconds,
            "queries": len(held_out), "measure_s": time.perf_counter() - started}


# ---- load generator (runs in its own process) -------------------------------------------------------------

async def _connection(host: str, port: int, paths: list[str], lats: list[float], statuses: list[int],
                      deadline: float) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while paths and time.perf_counter() < deadline:
            path = paths.pop()
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lats.append(time.perf_counter() - started)
            statuses.append(int(head[9:12]))
    finally:
        writer.close()


def load(host: str, port: int, paths: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load: `concurrency` connections each sending the next path as soon as the last answered."""
    lats: list[float] = []
    statuses: list[int] = []
    queue = list(reversed(paths))

    async def main() -> float:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*[_connection(host, port, queue, lats, statuses, deadline) for _ in range(concurrency)])
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    ms = np.array(lats) * 1000
    return {
        "requests": len(lats), "concurrency": concurrency, "seconds": elapsed, "rps": len(lats) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
        "errors": sum(s != 200 for s in statuses),
    }


def event_to_effect(base: str, users: list[str], items_of: dict[str, str]) -> dict[str, Any]:
    import httpx

    delays = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for user in users:
            url = f"/v1/users/{user}/recommendations"
            before = client.get(url).json()["items"]
            liked = before[0]["item_id"]
            started = time.perf_counter()
            response = client.post("/v1/events", json={"user_id": user, "item_id": liked, "event_type": "like"})
            assert response.status_code == 201, response.text
            while True:
                after = [i["item_id"] for i in client.get(url).json()["items"]]
                if liked not in after and after != [i["item_id"] for i in before]:
                    break
                if time.perf_counter() - started > 5:
                    break
            delays.append(time.perf_counter() - started)
    return {"users": len(users), "mean_s": float(np.mean(delays)), "max_s": float(np.max(delays))}


def client_main(port: int, user_ids: list[str], seconds: float, out: Path) -> None:
    host = "127.0.0.1"
    rng = random.Random(5)
    rng.shuffle(user_ids)
    # Enough distinct users for every uncached request at full scale; only a small run wraps around.
    fresh = itertools.cycle(user_ids)

    def take(n: int) -> list[str]:
        return [f"/v1/users/{next(fresh)}/recommendations?k=10" for _ in range(n)]

    results: dict[str, Any] = {}
    load(host, port, ["/healthz"] * 2000, 4, 2)  # warm-up: connections, code paths
    load(host, port, take(2000), 4, 3)
    results["trivial_throughput"] = load(host, port, ["/healthz"] * 10_000_000, 16, seconds)
    results["uncached_throughput"] = load(host, port, take(60_000), 16, seconds)
    results["trivial_latency"] = load(host, port, ["/healthz"] * 10_000_000, 2, seconds / 2)
    results["uncached_latency"] = load(host, port, take(40_000), 2, seconds)
    hot = take(500)
    load(host, port, list(hot), 4, 10)  # fill the cache for these users
    results["cached_latency"] = load(host, port, hot * 400, 2, seconds)
    results["cached_throughput"] = load(host, port, hot * 400, 16, seconds / 2)
    results["event_to_effect"] = event_to_effect(f"http://{host}:{port}", [next(fresh) for _ in range(30)], {})
    out.write_text(json.dumps(results, indent=2))


# ---- orchestration -----------------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 300) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2)
            if ready.status_code == 200 and ready.json()["checks"]["model"]:
                return dict(ready.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready")


def server_metrics(base: str) -> dict[str, float]:
    import httpx

    text = httpx.get(f"{base}/metrics").text
    wanted = ("recstack_cache_requests_total", "recstack_events_total", "recstack_model_version")
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith(wanted)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=2_500_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recstack-bench-serve"))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--model", choices=["als", "hybrid"], default="als", help="the champion to serve")
    parser.add_argument("--client", nargs=3, metavar=("PORT", "USERS_FILE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        port, users_file, out = args.client
        client_main(int(port), json.loads(Path(users_file).read_text()), args.seconds, Path(out))
        return

    info = setup(args.workdir, args.users, args.items, args.interactions, args.model)
    print(f"setup: {json.dumps(info['timings'])}")
    users_file = args.workdir / "users.json"
    retrieval = recall(args.workdir, users_file) if args.model == "als" else served_users(args.workdir, users_file)
    print(f"retrieval: {retrieval}")
    port = free_port()
    env = {**os.environ, "RECSTACK_HOME": str(args.workdir), "RECSTACK_CACHE_URL": "memory://",
           "RECSTACK_CACHE_TTL_S": "600"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "recstack"), "serve", "--port", str(port)], env=env, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        ready = wait_ready(base, server)
        startup_s = time.perf_counter() - started
        print(f"server ready in {startup_s:.1f} s: {ready}")
        out = args.workdir / "client.json"
        subprocess.run(
            [sys.executable, __file__, "--seconds", str(args.seconds), "--client", str(port), str(users_file),
             str(out)],
            check=True, cwd=ROOT,
        )
        client = json.loads(out.read_text())
        metrics = server_metrics(base)
    finally:
        server.terminate()
        server.wait(timeout=30)
    ratio = client["uncached_throughput"]["rps"] / client["trivial_throughput"]["rps"]
    summary = {
        "uncached_p50_ms": client["uncached_latency"]["p50_ms"],
        "uncached_p99_ms": client["uncached_latency"]["p99_ms"],
        "uncached_p99_ms_at_saturation": client["uncached_throughput"]["p99_ms"],
        "uncached_rps": client["uncached_throughput"]["rps"],
        "trivial_rps": client["trivial_throughput"]["rps"],
        "throughput_ratio": ratio,
        "cached_p50_ms": client["cached_latency"]["p50_ms"],
        "cached_p99_ms": client["cached_latency"]["p99_ms"],
        "recall_at_100": retrieval["recall_at_100"],
        "event_to_effect_s": client["event_to_effect"]["max_s"],
    }
    passed = {
        "uncached_p99_ms": summary["uncached_p99_ms"] <= TARGETS["uncached_p99_ms"],
        "throughput_ratio": ratio >= TARGETS["throughput_ratio"],
        "cached_p99_ms": summary["cached_p99_ms"] <= TARGETS["cached_p99_ms"],
        "recall_at_100": summary["recall_at_100"] >= TARGETS["recall_at_100"],
        "event_to_effect_s": summary["event_to_effect_s"] <= TARGETS["event_to_effect_s"],
    }
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "setup": info, "server_startup_s": startup_s, "retrieval": retrieval, "client": client,
        "server_metrics": metrics, "summary": summary, "targets": TARGETS, "passed": passed,
    }
    path = RESULTS if args.model == "als" else RESULTS.with_name(f"serve-{args.model}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps({"summary": summary, "passed": passed}, indent=2))


if __name__ == "__main__":
    main()
