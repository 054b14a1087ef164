"""The rate limit under load from a second process on loopback: `recstack serve --workers 2` with the Redis
cache, so both workers draw from one token bucket per key (the Lua script). A flooding key gets at most
its burst plus its rate over the run, and 429s with Retry-After beyond that; a polite key meanwhile is
never refused (one client's flood does not starve another)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from integration.serving_support import free_port, load, make_world, wait_ready
from recstack.serving.auth import Scope, issue_key
from recstack.storage import open_store

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RATE, BURST, SECONDS, CONNECTIONS = 20.0, 20, 4.0, 8

FLOOD = textwrap.dedent("""
    import json, sys, threading, time
    import httpx
    base, key, seconds, connections = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    statuses, retry_after, lock = [], [], threading.Lock()
    started = time.monotonic()
    def flood():
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": key}) as client:
            while time.monotonic() - started < seconds:
                r = client.get("/v1/users/u1/recommendations", params={"k": 3})
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 429:
                        retry_after.append(r.headers.get("Retry-After"))
    threads = [threading.Thread(target=flood) for _ in range(connections)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps({"statuses": statuses, "retry_after": retry_after, "elapsed": time.monotonic() - started}))
""")


def test_one_key_s_flood_is_limited_and_does_not_starve_another(tmp_path: Path, redis_cache_url: str) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'recstack.db'}")
    store.migrate()
    load(store, make_world())
    flooder, polite = (issue_key(store, Scope.READ, name).token for name in ("flood", "polite"))
    store.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")} | {
        "RECSTACK_HOME": str(tmp_path), "RECSTACK_CACHE_URL": redis_cache_url,
        "RECSTACK_RATE_LIMIT_PER_S": str(RATE), "RECSTACK_RATE_LIMIT_BURST": str(BURST),
    }
    recstack = str(Path(sys.executable).parent / "recstack")
    server = subprocess.Popen([recstack, "serve", "--port", str(port), "--workers", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, base, 120, 0.3)
        time.sleep(2.0)  # both workers up (the first answer came from one of them)
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, base, flooder, str(SECONDS), str(CONNECTIONS)],
                                 stdout=subprocess.PIPE, text=True)
        polite_statuses = []
        with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {polite}"}) as client:
            while flood.poll() is None:
                polite_statuses.append(client.get("/v1/users/u2/recommendations").status_code)
                time.sleep(0.1)
        out, _ = flood.communicate(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = json.loads(out)
    statuses = report["statuses"]
    allowed, refused = statuses.count(200), statuses.count(429)
    bound = BURST + RATE * report["elapsed"]
    assert set(statuses) <= {200, 429}, statuses
    assert refused > 0 and all(value is not None and int(value) >= 1 for value in report["retry_after"])
    # One bucket for both workers: at most burst + rate × elapsed (+1 s of rate for the edges of the window).
    assert allowed <= bound + RATE, (allowed, bound, len(statuses))
    assert allowed >= 0.5 * bound, (allowed, bound)
    assert polite_statuses and set(polite_statuses) == {200}, polite_statuses
    print(f"flood: {len(statuses)} requests in {report['elapsed']:.1f} s, {allowed} allowed "
          f"(bound {bound:.0f}), {refused} refused; polite: {len(polite_statuses)} all 200")
