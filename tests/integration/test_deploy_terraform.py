"""The AWS module: `terraform init -backend=false -plugin-dir=…` and `terraform validate` run for real on
the hashicorp/aws provider found on disk, `terraform fmt` finds nothing to change, and checkov finds no
failed check (the few skipped ones carry their reason in the code)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import unavailable
from integration.deploy_support import DEPLOY, tool

MODULE = DEPLOY / "terraform"
_PLUGIN_DIRS = (
    "/opt/tf-plugins", "/usr/share/terraform/plugins", "~/.terraform.d/plugins", "~/.local/share/terraform/plugins",
)


def _plugin_dir() -> Path:
    """A plugin directory holding registry.terraform.io/hashicorp/aws: RECSTACK_TF_PLUGIN_DIR, else the usual places."""
    for candidate in [os.environ.get("RECSTACK_TF_PLUGIN_DIR", ""), *_PLUGIN_DIRS]:
        path = Path(candidate).expanduser() if candidate else None
        if path is not None and (path / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return path
    unavailable("the hashicorp/aws provider", f"no registry.terraform.io/hashicorp/aws under {', '.join(_PLUGIN_DIRS)}")
    raise AssertionError


def _terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        unavailable("terraform", "not on PATH")
    assert found is not None
    return found


def test_terraform_init_and_validate(tmp_path: Path) -> None:
    terraform, plugins = _terraform(), _plugin_dir()
    work = tmp_path / "module"
    shutil.copytree(MODULE, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([terraform, f"-chdir={work}", *args], capture_output=True, text=True, env=env,
                              check=False)

    init = run("init", "-backend=false", "-input=false", f"-plugin-dir={plugins}")
    assert init.returncode == 0, init.stdout + init.stderr
    validate = run("validate", "-json")
    report = json.loads(validate.stdout)
    assert validate.returncode == 0 and report["valid"], report["diagnostics"]
    assert report["error_count"] == 0
    fmt = run("fmt", "-check", "-recursive")
    assert fmt.returncode == 0, f"terraform fmt would change: {fmt.stdout}"


@pytest.mark.slow
def test_checkov_finds_no_failed_check() -> None:
    result = subprocess.run(
        [tool("checkov"), "-d", str(MODULE), "--framework", "terraform", "--compact", "--skip-download",
         "-o", "json"],
        capture_output=True, text=True, check=False, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert not failed, failed
    summary = report["summary"]
    assert summary["passed"] > 100 and summary["parsing_errors"] == 0
    skipped = report["results"]["skipped_checks"]
    assert all(c["check_result"].get("suppress_comment") for c in skipped), "every skip gives its reason"
    resources = {c["resource"].split(".")[0] for c in report["results"]["passed_checks"]}
    assert {"aws_eks_cluster", "aws_db_instance", "aws_elasticache_replication_group", "aws_msk_cluster",
            "aws_s3_bucket"} <= resources
