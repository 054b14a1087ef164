"""The API's contract, fuzzed: schemathesis (`--checks all`, a fixed seed, a bounded number of examples per
operation, every phase including the stateful one) against the real server on PostgreSQL and Redis, with
an admin key. Zero failures, or the test fails with schemathesis's own report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.serving_support import World, load, running
from recstack.config import Settings
from recstack.models.base import Recommender
from recstack.registry import Registry
from recstack.serving.app import create_app
from recstack.serving.auth import Scope, issue_key
from recstack.storage import open_store

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261202
EXAMPLES = 30


def test_schemathesis_finds_no_failure(
    tmp_path: Path, postgres_url: str, redis_cache_url: str, world: World, als: Recommender[Any]
) -> None:
    store = open_store(postgres_url)
    store.migrate()
    load(store, world)
    admin = issue_key(store, Scope.ADMIN, "schemathesis").token
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", "contract", cache_dir=tmp_path / "models")
    assert registry.promote(registry.log(als, metrics={"ndcg@10": 0.1}).version)
    settings = Settings(
        home=tmp_path, database_url=postgres_url, cache_url=redis_cache_url, auth="keys",
        rate_limit_per_s=1e6, rate_limit_burst=1_000_000,
    )
    report = tmp_path / "schemathesis.txt"
    try:
        with running(create_app(settings, model_source=registry)) as base:
            command = [
                str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(CONFIG), "run",
                f"{base}/openapi.json",
                "--checks", "all", "--seed", str(SEED), "--max-examples", str(EXAMPLES),
                "--phases", "examples,coverage,fuzzing,stateful", "--workers", "1", "--no-color",
                "-H", f"Authorization: Bearer {admin}", "--request-timeout", "30",
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        store.close()
    output = done.stdout + done.stderr
    report.write_text(output)
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    assert done.returncode == 0, f"schemathesis failed (full report in {report}):\n{output[-12000:]}"
    generated = re.search(r"(\d+) generated", summary)
    assert generated is not None and int(generated.group(1)) >= 300, summary
    assert "failure" not in summary.split("Test cases:")[-1].split("\n")[1], summary
    print(f"schemathesis: {generated.group(1)} cases generated, 0 failures (seed {SEED})")
