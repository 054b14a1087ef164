"""The image and the one-host deployment: hadolint on the Dockerfile, the Compose specification's JSON
Schema on compose.yaml, and every RECSTACK_* variable a real setting."""

from __future__ import annotations

import subprocess

import yaml

from conftest import ROOT
from integration.deploy_support import DEPLOY, setting_names, tool


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([tool("hadolint"), "--failure-threshold", "info", str(DEPLOY / "docker" / "Dockerfile")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_non_root_and_dockerignore_keeps_the_sources() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert text.count("\nFROM ") >= 2 and "COPY --from=build" in text
    assert "USER 10001" in text and 'ENTRYPOINT ["recstack"]' in text
    kept = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    assert {"!pyproject.toml", "!constraints.txt", "!README.md", "!src/"} <= set(kept)


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_brings_up_every_role_and_backend_with_health_checks() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api", "stream", "loop", "postgres", "redis", "kafka", "mlflow", "prometheus", "grafana"} <= set(services)
    for name in ("api", "stream", "loop", "postgres", "redis", "kafka", "mlflow", "prometheus", "grafana"):
        assert "test" in services[name]["healthcheck"], name
    assert services["api"]["command"][0] == "serve" and services["stream"]["command"][0] == "stream"
    assert services["loop"]["command"][0] == "loop"
    env = services["api"]["environment"]
    assert set(env) <= setting_names(), set(env) - setting_names()
    assert env["RECSTACK_BUS_URL"].startswith("kafka://") and env["RECSTACK_CACHE_URL"].startswith("redis://")
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), source


def test_ci_workflow_matches_the_github_workflow_schema() -> None:
    workflow = ROOT / ".github" / "workflows" / "ci.yml"
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    assert any("bash .ci/run" in step.get("run", "") for step in jobs["test"]["steps"])
    assert {"image", "chart", "release"} <= set(jobs)
