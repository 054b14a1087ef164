"""`recstack train` and `recstack models` on a tiny synthetic store, run in-process (MLflow loads once)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from recstack.cli.main import app
from recstack.ingestion.synthetic import SyntheticConfig, generate
from recstack.storage.lake import Lake


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    files = generate(SyntheticConfig(users=80, items=60, interactions=4000, seed=3), root / "data")
    for kind in ("users", "items", "interactions"):
        result = run(root / "home", "ingest", str(files[kind]), "--kind", kind)
        assert result.exit_code == 0, result.output
    return root / "home"


def run(home: Path, *args: str) -> Result:
    # Only --home configures the run: RECSTACK_* variables of the calling environment are unset for it.
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("RECSTACK_")}
    return CliRunner().invoke(app, ["--home", str(home), *args], env={**env, "COLUMNS": "200"})


def listed(home: Path) -> dict[int, dict[str, object]]:
    result = run(home, "models", "list", "--json")
    assert result.exit_code == 0, result.output
    return {v["version"]: v for v in json.loads(result.stdout)}


def test_train_list_promote_rollback(home: Path) -> None:
    assert run(home, "models", "list").stdout.startswith("no versions")

    first = run(home, "train", "--model", "popularity")
    assert first.exit_code == 0, first.output
    assert "registered recstack version 1 (popularity)" in first.stdout
    assert "version 1 is the champion (first champion" in first.stdout
    assert len(Lake(str(home / "lake")).list_snapshots()) == 1  # made on the way, as `recstack snapshot` would
    assert (home / "mlflow.db").exists() and (home / "mlartifacts").is_dir()

    second = run(home, "train", "--model", "ease")
    assert second.exit_code == 0, second.output
    assert "version 2 is the champion" in second.stdout
    versions = listed(home)
    assert versions[2]["aliases"] == ["champion"] and versions[1]["aliases"] == ["previous-champion"]
    metrics = versions[2]["metrics"]
    assert isinstance(metrics, dict)
    assert {"ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10"} <= set(metrics)
    assert metrics["ndcg@10"] > versions[1]["metrics"]["ndcg@10"]  # type: ignore[index]

    third = run(home, "train", "--model", "popularity", "--no-promote")
    assert "version 3 not promoted (--no-promote)" in third.stdout
    assert listed(home)[3]["aliases"] == []
    assert len(Lake(str(home / "lake")).list_snapshots()) == 1  # the latest snapshot is reused

    refused = run(home, "models", "promote", "3")
    assert refused.exit_code == 0 and "not promoted" in refused.stdout
    forced = run(home, "models", "promote", "3", "--force")
    assert "version 3 is the champion (was version 2)" in forced.stdout
    back = run(home, "models", "rollback")
    assert "version 2 (ease) is the champion again (was version 3)" in back.stdout
    final = listed(home)
    assert (final[2]["aliases"], final[3]["aliases"], final[1]["aliases"]) == (["champion"], ["previous-champion"], [])

    table = run(home, "models", "list")
    assert "champion" in table.stdout and "ndcg@10" in table.stdout and "popularity" in table.stdout


def test_usage_errors(home: Path, tmp_path: Path) -> None:
    budget = run(home, "train", "--model", "ease", "--time-budget", "5")
    assert budget.exit_code != 0 and "only applies to --model auto" in budget.output
    unknown = run(home, "train", "--model", "nonsense")
    assert "unknown model 'nonsense'" in str(unknown.exception)
    empty = run(tmp_path / "empty", "train", "--model", "ease")
    assert "has no interactions" in str(empty.exception)
    missing = run(home, "models", "promote", "99")
    assert "has no version 99" in str(missing.exception)
