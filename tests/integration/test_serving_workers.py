"""`recstack serve --workers 2` on the embedded defaults (SQLite, memory cache, in-process bus): an event
taken by one worker changes the other worker's next answer, although each worker has its own memory cache
(a cached answer is keyed by the user's history, which both read from the store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from integration.serving_support import free_port, load, make_world
from recstack.storage import open_store


def test_an_event_through_one_worker_changes_the_other_s_next_answer(tmp_path: Path) -> None:
    world = make_world()
    store = open_store(f"sqlite:///{tmp_path / 'recstack.db'}")
    store.migrate()
    load(store, world)
    store.close()
    recstack = str(Path(sys.executable).parent / "recstack")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")} | {
        "RECSTACK_HOME": str(tmp_path), "RECSTACK_CACHE_TTL_S": "600"}
    key = json.loads(subprocess.run([recstack, "keys", "create", "--scope", "write", "--json"], env=env,
                                    capture_output=True, text=True, check=True).stdout)["key"]
    port = free_port()
    server = subprocess.Popen([recstack, "serve", "--port", str(port), "--workers", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    user = str(world.interactions["user_id"].iloc[0])
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "server not ready in 120 s"
                time.sleep(0.3)
            url = f"/v1/users/{user}/recommendations"
            auth = {"Authorization": f"Bearer {key}", "Connection": "close"}

            def ask(_: int) -> httpx.Response:
                return httpx.get(f"http://127.0.0.1:{port}{url}", headers=auth, timeout=30)

            with ThreadPoolExecutor(8) as pool:
                # Until each worker has computed the answer once and cached it (two misses; the rest hits), or
                # the test would prove nothing: the second worker may still be starting.
                warm: list[httpx.Response] = []
                deadline = time.monotonic() + 90
                while [r.headers["X-Cache"] for r in warm].count("miss") < 2:
                    assert time.monotonic() < deadline, "only one worker ever answered"
                    warm += pool.map(ask, range(40))
                    assert {r.status_code for r in warm} == {200}
                top = warm[-1].json()["items"][0]["item_id"]
                posted = client.post("/v1/events", json={"user_id": user, "item_id": top, "event_type": "view"})
                assert posted.status_code == 202, posted.text
                after = [r.json() for r in pool.map(ask, range(120))]
    finally:
        server.terminate()
        server.wait(timeout=30)
    stale = [i for i, body in enumerate(after) if top in {item["item_id"] for item in body["items"]}]
    assert not stale, f"answers {stale} of 120 still recommend the item the user just saw"
