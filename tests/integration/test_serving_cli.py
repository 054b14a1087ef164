"""`recstack serve` as users run it: its own process, settings from the CLI and environment, the default
(empty) MLflow registry, so it answers with popularity and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from integration.serving_support import free_port, load, make_world, wait_ready
from recstack.storage import open_store


def test_recstack_serve_answers_from_its_own_process(tmp_path: Path) -> None:
    world = make_world()
    store = open_store(f"sqlite:///{tmp_path / 'recstack.db'}")
    store.migrate()
    load(store, world)
    store.close()
    port = free_port()
    command = [str(Path(sys.executable).parent / "recstack"), "--home", str(tmp_path), "serve", "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECSTACK_")}
    created = subprocess.run([*command[:3], "keys", "create", "--scope", "read", "--json"], env=env,
                             capture_output=True, text=True, check=True)
    key = json.loads(created.stdout)["key"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, base, 90, 0.3)
        user = str(world.interactions["user_id"].iloc[0])
        url = f"{base}/v1/users/{user}/recommendations"
        refused = httpx.get(url, params={"k": 4})
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        response = httpx.get(url, params={"k": 4}, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert "no champion" in response.headers["X-Recstack-Fallback"]
        assert len(response.json()["items"]) == 4
        assert httpx.get(f"{base}/docs").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
