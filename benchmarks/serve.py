"""Serving benchmark: the recommendation API on a 100,000-item × 200,000-user synthetic catalogue.

Run: `.venv/bin/python benchmarks/serve.py [--workdir DIR] [--seconds 15] [--workers 1,2] [--soak 600]
[--model als|auto] [--params JSON] [--scale]` (`--scale`: 1,000,000 items × 2,000,000 users, 20 M interactions).

1. Setup (reused when `--workdir` already holds it): synthetic catalogue and interactions ingested into a
   SQLite store, the champion trained (ALS by default, `--model auto` for the default of `recstack train`),
   logged to the MLflow registry and promoted; then its serving artefact prepared and uploaded, as the
   training job would (`recstack.serving.artefacts`: index, vectors, per-user plans).
2. For each worker count, `recstack serve --workers N` in its own process: seconds from start to ready, and
   from ready until the background start-up work (catalogue, trending, content index, novel ranks) is done
   (three quiet seconds in a row; measuring throughput while a background thread takes a core would
   compare the endpoints against a moving baseline); then the load generator in a second process on
   loopback (a minimal keep-alive HTTP/1.1 client on asyncio) and
   the memory of every worker (/proc/PID/smaps_rollup: RSS, PSS, shared).
3. Measured in the same run (one worker): the trivial JSON endpoint (`/healthz`) and uncached recommendations
   (every request a user not asked before) at saturation (throughput: the two alternated, the ratio the
   median of three adjacent pairs) and at low concurrency (latency); cached
   recommendations; event-to-effect latency (POST a like, poll until the answer changes); recall@100 of the
   served (memory-mapped) index against exact search. With N > 1 workers: throughput only.
4. `--auth-cost`: authentication off and on (an API key on every request), alternated twice in the same
   run, one worker: uncached throughput, cached latency and throughput, and their ratios (keys vs none).
5. `--impressions-cost`: the impression log off and on (`RECSTACK_LOG_IMPRESSIONS`), alternated twice in the
   same run, one worker: uncached and `/healthz` throughput, their ratio, p50/p99; with the log on, the rows
   it added to the store against the answers served (and the answers it dropped).
6. `--soak S`: reads and events for S seconds against one worker, a second prepared version promoted half-way
   (`recstack.testing.soak`): failures, p99 per minute, RSS over time.
Results: benchmarks/results/serve-<model>[-scale].json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "serve.json"
TARGETS = {"uncached_p99_ms": 30.0, "throughput_ratio": 0.8, "cached_p99_ms": 5.0, "recall_at_100": 0.95,
           "event_to_effect_s": 1.0, "startup_s": 10.0, "startup_s_scale": 30.0, "rss_per_worker_mib": 4096.0,
           "soak_rss_growth": 0.05}


# ---- setup ------------------------------------------------------------------------------------------------

def registry_of(workdir: Path) -> Any:
    from recstack.registry import Registry

    return Registry(f"sqlite:///{(workdir / 'mlflow.db').resolve()}", "recstack", cache_dir=workdir / "model-cache")


def prepare_version(workdir: Path, version: int) -> float:
    """What the training job does after registering: the serving artefact (index + plans), uploaded."""
    from recstack.cli.common import progress_bar
    from recstack.serving.artefacts import prepare
    from recstack.serving.data import HistoryReader, load_catalog
    from recstack.storage import open_store

    registry = registry_of(workdir)
    store = open_store(f"sqlite:///{workdir / 'recstack.db'}")
    started = time.perf_counter()
    directory = registry.serving_dir(version)
    model = registry.load(version)
    with progress_bar("planning users", total=len(model.users), unit="users") as progress:
        built = prepare(directory, model, version, HistoryReader(store), load_catalog(store), progress=progress)
    if built:
        registry.upload_serving(version, directory)
    store.close()
    meta = json.loads((directory / "meta.json").read_text())
    return float(meta.get("prepare_seconds", time.perf_counter() - started))


def challenger(workdir: Path, info: dict[str, Any]) -> int:
    """A second version (ALS, other seed) registered and prepared but not promoted: the soak promotes it."""
    if "challenger_version" in info:
        return int(info["challenger_version"])
    import pandas as pd

    from recstack.models.catalog import create
    from recstack.storage import open_store

    store = open_store(f"sqlite:///{workdir / 'recstack.db'}")
    frame = pd.concat(list(store.iter_interactions(500_000)), ignore_index=True)
    store.close()
    model = create("als", factors=32, iterations=10, regularization=0.05, random_state=7).fit(frame)
    version = registry_of(workdir).log(model, metrics={"ndcg@10": 0.0}).version
    info["challenger_version"] = version
    info["timings"]["challenger_prepare_s"] = prepare_version(workdir, version)
    (workdir / "setup.json").write_text(json.dumps(info, indent=2))
    return int(version)


def setup(
    workdir: Path, users: int, items: int, interactions: int, kind: str = "als", params: dict[str, Any] | None = None
) -> dict[str, Any]:
    marker = workdir / "setup.json"
    if marker.exists():
        info = dict(json.loads(marker.read_text()))
        if "prepare_s" not in info["timings"]:
            info["timings"]["prepare_s"] = prepare_version(workdir, int(info["version"]))
            marker.write_text(json.dumps(info, indent=2))
        return info
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
    for record_kind, frame in (("items", item_frame), ("users", user_frame)):
        ingest(store, [RawBatch(frame.assign(_location="synthetic"))], "synthetic", IngestOptions(record_kind))  # type: ignore[arg-type]
    chunks = []

    def batches() -> Any:
        for chunk in iter_interactions(config, chunk_size=250_000):
            chunks.append(chunk[["user_id", "item_id", "event_type", "value"]])
            yield RawBatch(chunk.assign(_location="synthetic"))

    ingest(store, batches(), "synthetic", IngestOptions("interactions"))
    store.close()
    timings["generate_and_ingest_s"] = time.perf_counter() - started
    started = time.perf_counter()
    frame = pd.concat(chunks, ignore_index=True)
    if params is None:
        params = {"factors": 32, "iterations": 10, "regularization": 0.05} if kind == "als" else {}
    model = create(kind, **params).fit(frame, item_frame)
    timings["train_s"] = time.perf_counter() - started
    started = time.perf_counter()
    registry = Registry(f"sqlite:///{(workdir / 'mlflow.db').resolve()}", "recstack", cache_dir=workdir / "model-cache")
    version = registry.log(model, metrics={"ndcg@10": 0.0})
    registry.promote(version.version, force=True)
    timings["register_s"] = time.perf_counter() - started
    timings["prepare_s"] = prepare_version(workdir, version.version)
    info = {"users": users, "items": items, "interactions": interactions, "timings": timings,
            "model": kind, "params": params, "version": version.version}
    marker.write_text(json.dumps(info, indent=2))
    return info


def recall(workdir: Path, users_file: Path) -> dict[str, Any]:
    """Recall@100 of the index the server builds (same config, same queries) against exact search."""
    from recstack.serving.artefacts import open_artefact

    registry = registry_of(workdir)
    champion = registry.champion()
    assert champion is not None
    model = registry.load(champion)
    users_file.write_text(json.dumps(model.users.ids.tolist()))
    (workdir / "items.json").write_text(json.dumps(model.items.ids.tolist()[:50_000]))
    # The very index the server memory-maps, against exact search over the same vectors.
    index = open_artefact(registry.serving_dir(champion), model, champion.version, None).model.index
    users = model.user_embeddings()
    if index is None or users is None:  # a champion without embeddings (auto's blend) is served without one
        return {"index": None, "recall_at_100": None}
    rng = np.random.default_rng(123)
    held_out = users[rng.choice(len(users), 2000, replace=False)]
    started = time.perf_counter()
    value = index.recall_at(100, held_out)
    return {"index": index.kind, "recall_at_100": value, "build_s": index.build_seconds,
            "queries": len(held_out), "measure_s": time.perf_counter() - started}


# ---- load generator (runs in its own process) -------------------------------------------------------------

# `Authorization: Bearer <key>` for every request when RECSTACK_BENCH_KEY is set (the auth-cost runs).
AUTH = f"Authorization: Bearer {os.environ['RECSTACK_BENCH_KEY']}\r\n" if os.environ.get("RECSTACK_BENCH_KEY") else ""


async def _connection(host: str, port: int, paths: list[str], lats: list[float], statuses: list[int],
                      deadline: float) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while paths and time.perf_counter() < deadline:
            path = paths.pop()
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{AUTH}\r\n".encode()
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
            assert response.status_code in (201, 202), response.text
            while True:
                after = [i["item_id"] for i in client.get(url).json()["items"]]
                if liked not in after and after != [i["item_id"] for i in before]:
                    break
                if time.perf_counter() - started > 5:
                    break
            delays.append(time.perf_counter() - started)
    return {"users": len(users), "mean_s": float(np.mean(delays)), "max_s": float(np.max(delays))}


def auth_client(port: int, user_ids: list[str], seconds: float, out: Path) -> None:
    """What authentication costs: recommendation routes only (every one is checked), uncached at
    saturation and cached at low concurrency (where a fixed per-request cost shows most)."""
    host = "127.0.0.1"
    rng = random.Random(5)
    rng.shuffle(user_ids)
    fresh = itertools.cycle(user_ids)
    paths = [f"/v1/users/{next(fresh)}/recommendations?k=10" for _ in range(60_000)]
    load(host, port, paths[-2000:], 4, 3)
    hot = paths[-500:]
    load(host, port, list(hot), 4, 5)
    results = {
        "uncached_throughput": load(host, port, paths[:-2000], 16, seconds),
        "cached_latency": load(host, port, hot * 400, 2, seconds),
        "cached_throughput": load(host, port, hot * 400, 16, seconds),
    }
    out.write_text(json.dumps(results, indent=2))


def auth_cost(workdir: Path, seconds: float, rounds: int = 2) -> dict[str, Any]:
    """Auth off and on, alternated `rounds` times in the same run (one worker each); medians and ratios."""
    from recstack.serving.auth import Scope, issue_key
    from recstack.storage import open_store

    store = open_store(f"sqlite:///{workdir / 'recstack.db'}")
    store.migrate()
    key = issue_key(store, Scope.READ, "benchmark").token
    store.close()
    measured: dict[str, list[dict[str, Any]]] = {"none": [], "keys": []}
    for _ in range(rounds):
        for mode in ("none", "keys"):
            server, base, _, _ = start_server(workdir, 1, auth=mode)
            out = workdir / f"auth-{mode}.json"
            env = {k: v for k, v in os.environ.items() if k != "RECSTACK_BENCH_KEY"}
            if mode == "keys":
                env["RECSTACK_BENCH_KEY"] = key
            try:
                subprocess.run([sys.executable, __file__, "--seconds", str(seconds), "--auth-client",
                                base.rsplit(":", 1)[1], str(workdir / "users.json"), str(out)],
                               check=True, cwd=ROOT, env=env)
            finally:
                stop(server)
            run = json.loads(out.read_text())
            assert all(r["errors"] == 0 for r in run.values()), f"auth {mode}: non-200 answers {run}"
            measured[mode].append(run)

    def median(mode: str, case: str, field: str) -> float:
        return float(np.median([r[case][field] for r in measured[mode]]))

    summary = {}
    for case, field in (("uncached_throughput", "rps"), ("cached_throughput", "rps"),
                        ("cached_latency", "p50_ms"), ("cached_latency", "p99_ms"),
                        ("uncached_throughput", "p99_ms")):
        off, on = median("none", case, field), median("keys", case, field)
        summary[f"{case}_{field}"] = {"auth_none": off, "auth_keys": on, "keys_vs_none": on / off}
    return {"rounds": rounds, "seconds": seconds, "summary": summary, "runs": measured}


def _metric_sum(base: str, name: str) -> float:
    """One metric of the server's /metrics, summed over its labels (0 when absent)."""
    import httpx

    text = httpx.get(f"{base}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "))


def wait_idle(pid: int, timeout: float = 600.0, busy_share: float = 0.15, quiet_s: int = 3) -> float:
    """Seconds until the server (and its workers) used under `busy_share` of a CPU in each of `quiet_s`
    consecutive seconds: its background start-up work (catalogue, trending, content index, novel ranks) done,
    so that it does not fall inside one arm of a comparison and not the other. Consecutive, because the
    stages run a tick apart: one quiet second between two of them is not the end."""
    from recstack.testing.soak import process_tree

    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        total = 0
        for p in process_tree(pid):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / tick

    started = time.monotonic()
    last, quiet = cpu(), 0
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = cpu()
        quiet = quiet + 1 if now - last < busy_share else 0
        if quiet >= quiet_s:
            return time.monotonic() - started - quiet_s
        last = now
    return time.monotonic() - started


def impressions_cost(workdir: Path, seconds: float, rounds: int = 2) -> dict[str, Any]:
    """The impression log off and on, alternated `rounds` times in the same run (one worker, throughput
    only); with it on, the impressions the server wrote against the answers it served."""
    import sqlite3

    def count() -> int:
        with sqlite3.connect(workdir / "recstack.db") as conn:
            query = "SELECT coalesce(sum(json_array_length(body, '$.items')), 0) FROM served_answers"
            return int(conn.execute(query).fetchone()[0])

    measured: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            os.environ["RECSTACK_LOG_IMPRESSIONS"] = "true" if mode == "on" else "false"
            before = count()
            server, base, _, _ = start_server(workdir, 1)
            try:
                settle_s = wait_idle(server.pid)
                client = run_client(workdir, base, seconds, throughput_only=True)
                served = _metric_sum(base, "recstack_recommendation_answers_total")
                dropped = _metric_sum(base, "recstack_impressions_dropped")
            finally:
                stop(server)  # the log writes what it still holds on shutdown
            uncached, trivial = client["uncached_throughput"], client["trivial_throughput"]
            run = {"uncached_rps": uncached["rps"], "trivial_rps": trivial["rps"],
                   "trivial_rps_runs": client["trivial_throughput_runs"],
                   "uncached_rps_runs": client["uncached_throughput_runs"],
                   "ratio": client["throughput_ratio"], "ratios": client["throughput_ratios"],
                   "p50_ms": uncached["p50_ms"], "p99_ms": uncached["p99_ms"],
                   "errors": client["uncached_errors"] + client["uncached_warmup"]["errors"],
                   "answers_served": served,
                   "answers_sent": client["uncached_requests"] + client["uncached_warmup"]["requests"],
                   "impressions_written": count() - before, "answers_dropped": dropped, "settle_s": settle_s,
                   "load_average": os.getloadavg()}
            print(f"impressions {mode}: {json.dumps(run)}", flush=True)
            measured[mode].append(run)
    os.environ.pop("RECSTACK_LOG_IMPRESSIONS", None)

    def median(mode: str, field: str) -> float:
        return float(np.median([r[field] for r in measured[mode]]))

    summary = {field: {"off": median("off", field), "on": median("on", field)}
               for field in ("ratio", "uncached_rps", "trivial_rps", "p50_ms", "p99_ms")}
    return {"rounds": rounds, "seconds": seconds, "summary": summary, "runs": measured}


def client_main(port: int, user_ids: list[str], seconds: float, out: Path, throughput_only: bool = False) -> None:
    host = "127.0.0.1"
    rng = random.Random(5)
    rng.shuffle(user_ids)
    # Enough distinct users for every uncached request at full scale. A small run wraps around: each later
    # pass excludes an item that does not exist, a new cache key for the same work, so it stays uncached.
    drawn = itertools.count()

    def take(n: int) -> list[str]:
        paths = []
        for _ in range(n):
            passed, at = divmod(next(drawn), len(user_ids))
            suffix = f"&exclude=_pass{passed}" if passed else ""
            paths.append(f"/v1/users/{user_ids[at]}/recommendations?k=10{suffix}")
        return paths

    results: dict[str, Any] = {}
    load(host, port, ["/healthz"] * 2000, 4, 2)  # warm-up: connections, code paths
    results["uncached_warmup"] = load(host, port, take(2000), 4, 3)
    # Throughput: `/healthz` and uncached alternated, H U H U H U H (each a third of `seconds`), each uncached
    # run divided by the mean of the `/healthz` runs either side of it; the ratio is the median of the three.
    # Other work on the machine moves both endpoints alike within a pair; the median drops a pair it hit.
    trivial = [load(host, port, ["/healthz"] * 10_000_000, 16, seconds / 3)]
    uncached: list[dict[str, Any]] = []
    for _ in range(3):
        uncached.append(load(host, port, take(30_000), 16, seconds / 3))
        trivial.append(load(host, port, ["/healthz"] * 10_000_000, 16, seconds / 3))
    ratios = [u["rps"] / ((a["rps"] + b["rps"]) / 2) for u, a, b in zip(uncached, trivial, trivial[1:], strict=False)]
    middle = sorted(range(3), key=lambda i: ratios[i])[1]
    results["throughput_ratios"] = ratios
    results["throughput_ratio"] = ratios[middle]
    results["uncached_throughput"] = uncached[middle]
    results["trivial_throughput"] = {**trivial[middle],
                                     "rps": (trivial[middle]["rps"] + trivial[middle + 1]["rps"]) / 2}
    results["trivial_throughput_runs"] = [r["rps"] for r in trivial]
    results["uncached_throughput_runs"] = [r["rps"] for r in uncached]
    results["uncached_requests"] = sum(r["requests"] for r in uncached)
    results["uncached_errors"] = sum(r["errors"] for r in uncached)
    if throughput_only:
        out.write_text(json.dumps(results, indent=2))
        return
    results["trivial_latency"] = load(host, port, ["/healthz"] * 10_000_000, 2, seconds / 2)
    results["uncached_latency"] = load(host, port, take(40_000), 2, seconds)
    hot = take(500)
    load(host, port, list(hot), 4, 10)  # fill the cache for these users
    results["cached_latency"] = load(host, port, hot * 400, 2, seconds)
    results["cached_throughput"] = load(host, port, hot * 400, 16, seconds / 2)
    users = [user_ids[next(drawn) % len(user_ids)] for _ in range(30)]
    results["event_to_effect"] = event_to_effect(f"http://{host}:{port}", users, {})
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


def scale_vectors(
    users: int, items: int, interactions: int, workdir: Path
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Item and user vectors of ALS trained on synthetic interactions generated by recstack, cached in
    `workdir/vectors` (generation and training take ≈ 14 minutes at 1M × 2M; the index runs reuse them)."""
    cache = workdir / "vectors"
    if (cache / "info.json").exists():
        info = dict(json.loads((cache / "info.json").read_text()))
        return np.load(cache / "item_vectors.npy"), np.load(cache / "user_vectors.npy"), info
    import pandas as pd

    from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
    from recstack.models.catalog import create

    timings: dict[str, float] = {}
    started = time.perf_counter()
    config = SyntheticConfig(users=users, items=items, interactions=interactions, seed=11)
    _, item_frame = make_catalog(config)
    frame = pd.concat([c[["user_id", "item_id", "event_type", "value"]]
                       for c in iter_interactions(config, chunk_size=1_000_000)], ignore_index=True)
    timings["generate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    model = create("als", factors=32, iterations=10, regularization=0.05).fit(frame, item_frame)
    del frame
    timings["train_s"] = time.perf_counter() - started
    vectors, queries = model.item_embeddings(), model.user_embeddings()
    assert vectors is not None and queries is not None
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "item_vectors.npy", vectors)
    np.save(cache / "user_vectors.npy", queries)
    info = {"users": len(queries), "items": len(vectors), "interactions": interactions, "timings": timings}
    (cache / "info.json").write_text(json.dumps(info, indent=2))
    return vectors, queries, info


def search_curve(index: Any, held_out: np.ndarray) -> list[dict[str, float]]:
    """An IVF's recall@100 (500 held-out users) and single-threaded k=200 search p50 / p99 (300 users) at
    other `nprobe` values; restored after."""
    if not hasattr(index.index, "nprobe"):
        return []
    nlist, tuned = index.index.nlist, index.index.nprobe
    curve = []
    for value in sorted({n for n in (64, 256, 1024, nlist) if n <= nlist}):
        index.index.nprobe = value
        ms = _search_ms(index, held_out[:300])
        curve.append({"nprobe": value, "recall_at_100": index.recall_at(100, held_out[:500]),
                      "search_k200_p50_ms": float(np.percentile(ms, 50)),
                      "search_k200_p99_ms": float(np.percentile(ms, 99))})
    index.index.nprobe = tuned
    return curve


def _search_ms(index: Any, queries: np.ndarray) -> np.ndarray:
    """Milliseconds of each k=200 search, one thread (the request path's case)."""
    import faiss

    faiss.omp_set_num_threads(1)
    lat = []
    for query in queries:
        at = time.perf_counter()
        index.search(query, 200)
        lat.append(time.perf_counter() - at)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return np.array(lat) * 1000


def scale_index(users: int, items: int, interactions: int, workdir: Path, kinds: list[str]) -> dict[str, Any]:
    """Retrieval at scale without the store: for each index kind (`auto`: what the artefact builds), the
    serving index built over the same vectors as the artefact builds it (tuned on user vectors), written,
    opened back as the server opens it, and measured: recall@100 against exact search on 2,000 held-out
    users, single-threaded k=200 search latency, build and open time, file size."""
    from dataclasses import replace

    import faiss

    from recstack.serving.retrieval import ItemIndex, RetrievalConfig

    vectors, queries, info = scale_vectors(users, items, interactions, workdir)
    rng = np.random.default_rng(123)
    held_out = np.ascontiguousarray(queries[rng.choice(len(queries), 2000, replace=False)], dtype=np.float32)
    mapped_vectors = np.load(workdir / "vectors" / "item_vectors.npy", mmap_mode="r").view(np.ndarray)
    results: dict[str, Any] = {}
    for kind in kinds:
        config = replace(RetrievalConfig(), approximate=kind)
        loads = [os.getloadavg()[0]]
        started = time.perf_counter()
        built = ItemIndex(vectors, config, queries=queries)
        build_s = time.perf_counter() - started
        out = workdir / f"index-{kind}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        meta = built.save(out)
        del built
        started = time.perf_counter()
        index = ItemIndex.open(out, mapped_vectors, meta, config)
        open_s = time.perf_counter() - started
        for query in held_out[:50]:  # warm the pages the searches touch
            index.search(query, 200)
        ms = _search_ms(index, held_out[:1000])
        started = time.perf_counter()
        value = index.recall_at(100, held_out)
        recall_s = time.perf_counter() - started
        curve = search_curve(index, held_out)
        loads.append(os.getloadavg()[0])
        results[kind] = {
            "index": index.kind, "recall_at_100": value, "tuned_recall": meta.get("recall"),
            "search_k200_p50_ms": float(np.percentile(ms, 50)), "search_k200_p99_ms": float(np.percentile(ms, 99)),
            "build_s": build_s, "open_s": open_s, "recall_measure_s": recall_s,
            "index_file_mib": sum(f.stat().st_size for f in out.iterdir()) / 2**20, "load_average_1m": loads,
            "curve": curve,
        }
        if index._bands is not None:  # share of the catalogue each held-out query scanned
            share = index._bands.search(held_out, 200)[2] / index.n_items
            results[kind]["scanned_k200"] = {f"p{q}": float(np.percentile(share, q)) for q in (50, 90, 95, 99)}
        print(json.dumps({kind: results[kind]}), flush=True)
        del index
    return {"users": info["users"], "items": info["items"], "interactions": interactions,
            "timings": info["timings"], "indexes": results, "faiss": faiss.__version__,
            "cpus": os.cpu_count(), "python": platform.python_version()}


def start_server(
    workdir: Path, workers: int, cache_ttl_s: float = 600, auth: str = "none"
) -> tuple[subprocess.Popen[bytes], str, float, dict[str, Any]]:
    """`recstack serve --workers N` on a free port; (process, base URL, seconds to ready, readyz). With
    `auth="keys"` the server checks keys (rate limit out of the way: this measures the check itself)."""
    port = free_port()
    env = {**os.environ, "RECSTACK_HOME": str(workdir), "RECSTACK_CACHE_URL": "memory://",
           "RECSTACK_CACHE_TTL_S": str(cache_ttl_s), "RECSTACK_AUTH": auth, "RECSTACK_RATE_LIMIT_PER_S": "1e9",
           "RECSTACK_RATE_LIMIT_BURST": "1000000000"}
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "recstack"), "serve", "--port", str(port), "--workers", str(workers)],
        env=env, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    ready = wait_ready(base, server)
    if workers > 1:  # /readyz answered by one worker: wait until every worker is up
        time.sleep(1.0)
        ready = wait_ready(base, server)
    return server, base, time.perf_counter() - started, ready


def worker_memory(server_pid: int) -> list[dict[str, int]]:
    """RSS, PSS and shared KiB of each serving process (the workers; the supervisor when there is one)."""
    from recstack.testing.soak import memory_of, process_tree

    tree = process_tree(server_pid)
    pids = [p for p in tree if p != server_pid] or [server_pid]
    return [vars(m) for m in (memory_of(p) for p in pids) if m is not None and m.rss > 100_000]


def run_client(workdir: Path, base: str, seconds: float, throughput_only: bool) -> dict[str, Any]:
    out = workdir / "client.json"
    port = base.rsplit(":", 1)[1]
    command = [sys.executable, __file__, "--seconds", str(seconds), "--client", port, str(workdir / "users.json"),
               str(out)]
    subprocess.run([*command, *(["--throughput-only"] if throughput_only else [])], check=True, cwd=ROOT)
    return dict(json.loads(out.read_text()))


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=60)


def run_soak(workdir: Path, info: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The soak: reads and events for `seconds`, the prepared challenger promoted half-way."""
    from recstack.testing.soak import soak

    registry = registry_of(workdir)
    champion = registry.champion()
    assert champion is not None
    version = challenger(workdir, info)
    registry.promote(int(info["version"]), force=True)
    # The in-process result cache holds every answer for its TTL: 30 s lets it reach its steady size within
    # the warm-up, so growth after it is the server's own (600 s would fill it for the whole soak).
    server, base, _, _ = start_server(workdir, 1, cache_ttl_s=30)
    try:
        users = json.loads((workdir / "users.json").read_text())
        items = json.loads((workdir / "items.json").read_text())
        report = soak(base, server.pid, users, items, seconds,
                      promote=lambda: registry.promote(version, force=True), window_s=60.0 if seconds >= 120 else 10.0)
    finally:
        stop(server)
        registry.promote(int(info["version"]), force=True)
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=2_500_000)
    parser.add_argument("--scale", action="store_true", help="1,000,000 items × 2,000,000 users, 20 M interactions")
    parser.add_argument("--model", default="als", help="champion kind trained by the setup (als, auto, …)")
    parser.add_argument("--params", type=json.loads, default=None,
                        help='the champion\'s constructor keywords as JSON (e.g. \'{"time_budget_s": 150}\' for auto)')
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts measured")
    parser.add_argument("--soak", type=float, default=0.0, help="soak seconds (600 for the full soak; 0: none)")
    parser.add_argument("--index-only", action="store_true", help="only retrieval: train, index, recall (no server)")
    parser.add_argument("--index-kinds", default="auto,ivf",
                        help="with --index-only: index kinds measured on the same vectors (auto, bands, ivf)")
    parser.add_argument("--soak-only", action="store_true", help="only the soak (setup reused)")
    parser.add_argument("--client", nargs=3, metavar=("PORT", "USERS_FILE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--throughput-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--auth-cost", action="store_true", help="only auth off vs on (setup reused), same run")
    parser.add_argument("--impressions-cost", action="store_true",
                        help="only the impression log off vs on (setup reused), same run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --auth-cost / --impressions-cost")
    parser.add_argument("--auth-client", nargs=3, metavar=("PORT", "USERS_FILE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.auth_client:
        port, users_file, out = args.auth_client
        auth_client(int(port), json.loads(Path(users_file).read_text()), args.seconds, Path(out))
        return
    if args.client:
        port, users_file, out = args.client
        client_main(int(port), json.loads(Path(users_file).read_text()), args.seconds, Path(out),
                    args.throughput_only)
        return
    if args.scale:
        args.users, args.items, args.interactions = 2_000_000, 1_000_000, 20_000_000
    if args.index_only:
        workdir = args.workdir or Path(f"/tmp/recstack-bench-index-{args.items}x{args.users}")
        found = scale_index(args.users, args.items, args.interactions, workdir, args.index_kinds.split(","))
        found.update(measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_average=os.getloadavg())
        RESULTS.with_name(f"serve-index-{args.items}x{args.users}.json").write_text(json.dumps(found, indent=2))
        print(json.dumps(found, indent=2))
        return
    workdir = args.workdir or Path(f"/tmp/recstack-bench-serve-{args.model}-{args.items}x{args.users}")
    info = setup(workdir, args.users, args.items, args.interactions, args.model, args.params)
    print(f"setup: {json.dumps(info['timings'])}")
    retrieval = recall(workdir, workdir / "users.json")
    print(f"retrieval: {retrieval}")
    if args.impressions_cost or args.auth_cost:
        measure, what = (impressions_cost, "impressions") if args.impressions_cost else (auth_cost, "auth")
        cost = measure(workdir, args.seconds, args.rounds)
        cost.update(measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_average=os.getloadavg(),
                    machine={"cpus": os.cpu_count(), "python": platform.python_version()},
                    setup={k: info[k] for k in ("users", "items", "interactions", "model")})
        RESULTS.with_name(f"serve-{args.model}-{what}.json").write_text(json.dumps(cost, indent=2))
        print(json.dumps(cost["summary"], indent=2))
        return
    if args.soak_only:
        soaked = run_soak(workdir, info, args.soak)
        out = RESULTS.with_name(f"serve-{args.model}{'-scale' if args.scale else ''}-soak.json")
        out.write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "load_average": os.getloadavg(), "soak": soaked}, indent=2))
        print(json.dumps({k: soaked[k] for k in ("requests", "failures", "rss_growth", "anonymous_growth",
                                                 "p99_ms_per_window", "versions_seen")}, indent=2))
        return
    runs: dict[str, Any] = {}
    for n in [int(w) for w in args.workers.split(",")]:
        server, base, startup_s, ready = start_server(workdir, n)
        try:
            print(f"{n} worker(s) ready in {startup_s:.1f} s: {ready}")
            settle_s = wait_idle(server.pid)
            print(f"{n} worker(s) settled {settle_s:.1f} s after ready")
            client = run_client(workdir, base, args.seconds, throughput_only=n != 1)
            memory = worker_memory(server.pid)
            metrics = server_metrics(base) if n == 1 else {}
        finally:
            stop(server)
        runs[str(n)] = {"startup_s": startup_s, "settle_s": settle_s, "client": client, "memory_kib": memory,
                        "server_metrics": metrics}
    one = runs["1"]
    client = one["client"]
    ratio = client["throughput_ratio"]
    summary: dict[str, Any] = {
        "startup_s": one["startup_s"],
        "settled_after_ready_s": one["settle_s"],
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
        "rss_per_worker_mib": max(m["rss"] for m in one["memory_kib"]) / 1024,
    }
    for n, run in runs.items():
        if n != "1":
            summary[f"workers_{n}_uncached_rps"] = run["client"]["uncached_throughput"]["rps"]
            summary[f"workers_{n}_vs_1"] = run["client"]["uncached_throughput"]["rps"] / summary["uncached_rps"]
            summary[f"workers_{n}_pss_mib"] = [m["pss"] / 1024 for m in run["memory_kib"]]
            summary[f"workers_{n}_shared_mib"] = [m["shared"] / 1024 for m in run["memory_kib"]]
            summary[f"workers_{n}_startup_s"] = run["startup_s"]
    passed = {
        "startup_s": summary["startup_s"] <= TARGETS["startup_s" if not args.scale else "startup_s_scale"],
        "uncached_p99_ms": summary["uncached_p99_ms"] <= TARGETS["uncached_p99_ms"],
        "throughput_ratio": ratio >= TARGETS["throughput_ratio"],
        "cached_p99_ms": summary["cached_p99_ms"] <= TARGETS["cached_p99_ms"],
        "recall_at_100": summary["recall_at_100"] is None or summary["recall_at_100"] >= TARGETS["recall_at_100"],
        "event_to_effect_s": summary["event_to_effect_s"] <= TARGETS["event_to_effect_s"],
        "rss_per_worker_mib": summary["rss_per_worker_mib"] <= TARGETS["rss_per_worker_mib"],
    }
    soaked = None
    if args.soak > 0:
        soaked = run_soak(workdir, info, args.soak)
        summary["soak_failed_requests"] = sum(soaked["failures"].values())
        summary["soak_rss_growth"] = soaked["rss_growth"]
        summary["soak_p99_ms_per_window"] = soaked["p99_ms_per_window"]
        passed["soak"] = summary["soak_failed_requests"] == 0 and soaked["rss_growth"] <= TARGETS["soak_rss_growth"]
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "setup": info, "retrieval": retrieval, "runs": runs, "soak": soaked, "summary": summary,
        "targets": TARGETS, "passed": passed,
    }
    out = RESULTS.with_name(f"serve-{args.model}{'-scale' if args.scale else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"summary": summary, "passed": passed}, indent=2))


if __name__ == "__main__":
    main()
