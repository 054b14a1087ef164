"""A bounded soak of a running server: concurrent reads and events for a while, one promotion half-way.

What it checks is what a long-running deployment needs: no request fails (a hot swap to a new champion
included), memory stops growing after warm-up, and the tail latency stays flat (p99 recorded per window).
Used by `benchmarks/serve.py --soak` (10 minutes) and by the integration test (about a minute).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

__all__ = ["MemorySample", "SoakReport", "memory_of", "process_tree", "soak"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemorySample:
    """Memory of one process from /proc/PID/smaps_rollup, in KiB: `pss` counts a page shared by n
    processes as 1/n of it, `shared` the pages another process maps too (the page cache of the artefact)."""

    pid: int
    rss: int
    pss: int
    shared: int
    anonymous: int = 0


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's workers are children of the supervisor)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def memory_of(pid: int) -> MemorySample | None:
    """The memory sample of `pid`, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    shared = fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0)
    return MemorySample(pid, fields.get("Rss", 0), fields.get("Pss", 0), shared, fields.get("Anonymous", 0))


@dataclass
class SoakReport:
    """Requests and failures by kind, p99 per window, and the server's RSS over time."""

    seconds: float
    window_s: float
    requests: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    failure_examples: list[str] = field(default_factory=list)
    p99_ms_per_window: list[float] = field(default_factory=list)
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    # The private part of it: what a leak grows (the rest are mapped files, the artefact's pages).
    anonymous_kib: list[tuple[float, int]] = field(default_factory=list)
    versions_seen: list[str] = field(default_factory=list)
    promoted_at_s: float | None = None
    warmup_s: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def rss_growth(self) -> float:
        """Growth of the server's total RSS from the end of warm-up to the end (0.02 = 2 %)."""
        return _growth(self.rss_kib, self.warmup_s)

    @property
    def anonymous_growth(self) -> float:
        return _growth(self.anonymous_kib, self.warmup_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds, "window_s": self.window_s, "requests": self.requests,
            "failures": self.failures, "failure_examples": self.failure_examples[:10],
            "p99_ms_per_window": self.p99_ms_per_window, "rss_kib": self.rss_kib, "rss_growth": self.rss_growth,
            "anonymous_kib": self.anonymous_kib, "anonymous_growth": self.anonymous_growth,
            "versions_seen": self.versions_seen, "promoted_at_s": self.promoted_at_s, "warmup_s": self.warmup_s,
        }


def _growth(series: list[tuple[float, int]], since: float) -> float:
    after = [value for at, value in series if at >= since]
    return (after[-1] / after[0] - 1.0) if len(after) >= 2 and after[0] else 0.0


def soak(
    base_url: str, server_pid: int, user_ids: Sequence[str], item_ids: Sequence[str], seconds: float,
    promote: Callable[[], None] | None = None, readers: int = 4, window_s: float = 60.0, warmup_s: float | None = None,
    events_per_s: float = 20.0,
) -> SoakReport:
    """Run `readers` threads of recommendation requests and one of events (`events_per_s`) against
    `base_url` for `seconds`, call `promote` half-way, sample the memory of `server_pid`'s process tree
    every second. A failure is any status other than 200 (reads) or 202 (events), or a transport error."""
    report = SoakReport(seconds=seconds, window_s=window_s, warmup_s=seconds * 0.2 if warmup_s is None else warmup_s)
    lock = threading.Lock()
    latencies: list[tuple[float, float]] = []
    versions: set[str] = set()
    started = time.perf_counter()
    deadline = started + seconds
    stop = threading.Event()

    def record(kind: str, ok: bool, detail: str) -> None:
        with lock:
            report.requests[kind] = report.requests.get(kind, 0) + 1
            if not ok:
                report.failures[kind] = report.failures.get(kind, 0) + 1
                report.failure_examples.append(f"{kind}: {detail}")

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while not stop.is_set():
                user = user_ids[int(rng.integers(len(user_ids)))]
                at = time.perf_counter()
                try:
                    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
                except httpx.HTTPError as exc:
                    record("read", False, repr(exc))
                    continue
                elapsed = time.perf_counter() - at
                ok = response.status_code == 200
                record("read", ok, f"{response.status_code} {response.text[:200]}")
                if ok:
                    with lock:
                        latencies.append((at - started, elapsed))
                        versions.add(response.headers.get("X-Model-Version", "?"))

    def writer() -> None:
        rng = np.random.default_rng(99)
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while not stop.wait(1.0 / events_per_s):
                event = {"user_id": user_ids[int(rng.integers(len(user_ids)))],
                         "item_id": item_ids[int(rng.integers(len(item_ids)))],
                         "event_type": ["view", "like", "click"][int(rng.integers(3))]}
                try:
                    response = client.post("/v1/events", json=event)
                except httpx.HTTPError as exc:
                    record("event", False, repr(exc))
                    continue
                record("event", response.status_code in (201, 202), f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(readers)]
    threads.append(threading.Thread(target=writer, daemon=True))
    for thread in threads:
        thread.start()
    promoted = promote is None
    while (now := time.perf_counter()) < deadline:
        samples = [memory_of(pid) for pid in process_tree(server_pid)]
        report.rss_kib.append((now - started, sum(s.rss for s in samples if s is not None)))
        report.anonymous_kib.append((now - started, sum(s.anonymous for s in samples if s is not None)))
        if not promoted and now - started >= seconds / 2:
            assert promote is not None
            promote()
            report.promoted_at_s = time.perf_counter() - started
            promoted = True
            logger.info("soak: promoted at %.1f s", report.promoted_at_s)
        time.sleep(min(1.0, max(0.0, deadline - time.perf_counter())))
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    at = np.array([a for a, _ in latencies])
    ms = np.array([e for _, e in latencies]) * 1000
    for start in np.arange(0.0, seconds, window_s):
        inside = ms[(at >= start) & (at < start + window_s)]
        report.p99_ms_per_window.append(float(np.percentile(inside, 99)) if len(inside) else float("nan"))
    report.versions_seen = sorted(versions)
    return report
