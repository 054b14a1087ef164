"""The README's main job, end to end as a user runs it, on the embedded default."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from recstack.config import Settings
from recstack.registry import Registry
from recstack.storage.lake import Lake


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")}
    env |= {"RECSTACK_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "recstack", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=home)


def test_demo_runs_end_to_end_and_is_idempotent(tmp_path: Path) -> None:
    args = ("demo", "--users", "300", "--items", "150", "--interactions", "20000", "--seed", "3", "--no-serve")
    first = run(tmp_path, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "snapshot" in first.stdout
    for model in ("popularity", "item_knn", "ease", "als"):
        assert model in first.stdout
    assert "ndcg" in first.stdout and "top 5 from" in first.stdout
    counts = json.loads(run(tmp_path, "stats", "--json").stdout)
    assert counts["interactions"] == 20_000
    assert (counts["users"], counts["items"], counts["quarantined"]) == (300, 150, 0)
    assert (tmp_path / "recstack.db").exists()
    champion = Registry.from_settings(Settings(home=tmp_path)).champion()
    assert champion is not None and champion.version == 1 and "ndcg@10" in champion.metrics

    second = run(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert json.loads(run(tmp_path, "stats", "--json").stdout) == counts
    snapshots = Lake(str(tmp_path / "lake")).list_snapshots()
    assert len(snapshots) == 2 and snapshots[-1].interactions == 20_000


def test_demo_ends_by_serving_the_api(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")} | {"RECSTACK_HOME": str(tmp_path),
                                                                                    "PYTHONFAULTHANDLER": "1"}
    args = ("demo", "--users", "50", "--items", "30", "--interactions", "600", "--no-train", "--port", str(port))
    server = subprocess.Popen([sys.executable, "-m", "recstack", *args], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300  # a freshly forked CI machine has been seen to take over 120 s
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:  # SIGABRT makes faulthandler print where every thread waits
                    server.send_signal(signal.SIGABRT)
                    stacks = server.communicate(timeout=30)[0]
                    raise AssertionError(f"the demo's server never answered:\n{stacks}") from None
                time.sleep(0.3)
        assert response.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/dashboard/login", timeout=10).status_code == 200
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"'http://127.0.0.1:{port}/v1/users/" in output
    assert "-H 'Authorization: Bearer rk_" in output
    assert f"Dashboard at http://127.0.0.1:{port}/dashboard" in output
