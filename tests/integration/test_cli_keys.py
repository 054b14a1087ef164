"""`recstack keys` as a user runs it: create (shown once), list, revoke, and the exit code of a bad request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from recstack.serving.auth import KeyRing
from recstack.storage import open_store


def recstack(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")}
    env |= {"RECSTACK_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "recstack", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=home)


def test_keys_are_created_listed_and_revoked(tmp_path: Path) -> None:
    created = recstack(tmp_path, "keys", "create", "--scope", "write", "--name", "app", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["scope"] == "write" and key["key"].startswith(f"rk_{key['id']}_")
    shown = recstack(tmp_path, "keys", "create", "--scope", "read")
    assert shown.returncode == 0 and "rk_" in shown.stdout and "only its hash is kept" in shown.stdout

    listed = json.loads(recstack(tmp_path, "keys", "list", "--json").stdout)
    assert listed[0]["name"] == "app" and len(listed) == 2
    assert all("key" not in k for k in listed)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("recstack.db*"))
    assert key["key"].encode() not in stored and key["id"].encode() in stored, "only the hash is stored"
    table = recstack(tmp_path, "keys", "list")
    assert table.returncode == 0 and key["id"] in table.stdout

    store = open_store(f"sqlite:///{tmp_path / 'recstack.db'}")
    try:
        assert KeyRing(store).authenticate(key["key"]) is not None
        assert recstack(tmp_path, "keys", "revoke", key["id"]).returncode == 0
        assert KeyRing(store).authenticate(key["key"]) is None
    finally:
        store.close()
    again = recstack(tmp_path, "keys", "revoke", key["id"])
    assert again.returncode == 1 and "no active key" in again.stderr
    bad = recstack(tmp_path, "keys", "create", "--scope", "root")
    assert bad.returncode == 1 and "scope" in bad.stderr
