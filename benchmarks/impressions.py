"""What the impression log's writer costs the serving process, in process: the writer's own CPU per answer
and how much it slows a request-like thread (Python work between short waits, as a request thread does)
sharing the GIL with it, for the store paths the writer can take.

Run: `.venv/bin/python benchmarks/impressions.py [--answers 20000] [--rate 1500]`; a SQLite store in a
temporary directory. Results: benchmarks/results/impressions-writer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from recstack.serving.impressions import ImpressionLog
from recstack.storage import Store, open_store

RESULTS = Path(__file__).parent / "results" / "impressions-writer.json"


def body(n: int) -> bytes:
    items = [{"item_id": f"i{(n * 7 + j) % 100_000}", "score": 0.9 - j / 100, "reason": "collaborative"}
             for j in range(10)]
    return orjson.dumps({"user_id": f"u{n}", "model": "als", "model_version": 1, "items": items,
                         "fallback": False})


class RowsOnly(ImpressionLog):
    """The writer with every body read in Python first (the path a batch with a body that is not JSON falls
    back to)."""

    def _write(self, entries: list[Any]) -> int:
        answers = [(at, user, version, f"r{n}", raw) for n, (at, user, raw, version) in enumerate(entries)]
        written, taken = self._write_checked(answers)
        self.answers += taken
        self.written += written
        return written


def victim(stop: threading.Event, counts: list[int]) -> None:
    payload = {"items": [{"item_id": f"i{j}", "score": j / 10} for j in range(10)]}
    n = 0
    while not stop.is_set():
        for _ in range(20):
            orjson.dumps(payload)
        time.sleep(0)  # a request thread waits on its socket between requests
        n += 1
    counts.append(n)


def measure(store: Store, kind: str, answers: int, rate: float) -> dict[str, Any]:
    log: ImpressionLog | None = None
    if kind == "json":
        log = ImpressionLog(store)
    elif kind == "rows":
        log = RowsOnly(store)
    bodies = [body(n) for n in range(answers)]
    stop, counts = threading.Event(), []
    thread = threading.Thread(target=victim, args=(stop, counts))
    cpu = 0.0
    if log is not None:
        log.start()
        writer = log._thread
        assert writer is not None
    thread.start()
    started = time.perf_counter()
    for n, raw in enumerate(bodies):
        if log is not None:
            log.record(f"u{n}", raw, 1)
        delay = started + (n + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    if log is not None:
        cpu_before = time.thread_time()
        log.stop()
        cpu = time.thread_time() - cpu_before
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - started
    return {"writer": kind, "answers": answers, "seconds": elapsed, "victim_per_s": counts[0] / elapsed,
            "written": log.written if log else 0, "dropped": log.dropped if log else 0, "stop_cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1500.0, help="answers recorded per second")
    args = parser.parse_args()
    load_start = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'recstack.db'}")
        store.migrate()
        # Writer CPU per answer, apart from the victim: one flush of every answer at once.
        for kind in ("json", "rows"):
            log = ImpressionLog(store) if kind == "json" else RowsOnly(store)
            for n in range(args.answers):
                log.record(f"u{n}", body(n), 1)
            cpu = time.thread_time()
            log.flush()
            runs.append({"writer": kind, "flush_cpu_us_per_answer": (time.thread_time() - cpu) / args.answers * 1e6})
        for kind in ("none", "json", "rows", "none", "json", "rows"):
            runs.append(measure(store, kind, args.answers, args.rate))
            print(json.dumps(runs[-1]), flush=True)
        store.close()
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "rate": args.rate, "runs": runs}
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(runs[:2]))


if __name__ == "__main__":
    main()
