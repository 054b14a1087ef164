"""Monitoring: promtool checks the scrape config, the alert rules and their unit tests; every Grafana panel
query parses (promtool, as a recording rule) and names only metrics recstack exports; and a real Prometheus
server scrapes a running API and a loop exporter, and the series arrive."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import start_http_server

from integration.deploy_support import DEPLOY, exported_metrics, tool
from integration.serving_support import free_port, running
from recstack.config import Settings
from recstack.jobs.loop import Decision, LoopConfig
from recstack.jobs.loop_metrics import LoopMetrics
from recstack.registry import Registry
from recstack.storage import open_store

PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
_METRIC = re.compile(r"\brecstack_[a-z0-9_]+\b")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, check=False)


def _panels() -> list[tuple[str, str]]:
    out = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return out


def _rule_exprs() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "rules" / "recstack.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_scrape_config_and_rules_pass_promtool() -> None:
    config = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", str(PROMETHEUS / "rules" / "recstack.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tests = _promtool("test", "rules", str(PROMETHEUS / "tests" / "recstack_test.yml"))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    alerts = {r["alert"] for g in yaml.safe_load((PROMETHEUS / "rules" / "recstack.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    assert {"RecstackHighErrorRate", "RecstackHighLatencyP99", "RecstackConsumerLagHigh", "RecstackDeadLettersGrowing",
            "RecstackNoChampion", "RecstackStaleChampion"} <= alerts


def test_rules_and_panels_name_only_exported_metrics() -> None:
    exported = exported_metrics()
    for where, expr in [("rule", e) for e in _rule_exprs()] + _panels():
        used = set(_METRIC.findall(expr))
        assert used, f"{where}: {expr} names no recstack metric"
        assert used <= exported, f"{where}: {sorted(used - exported)} are not exported by recstack"


def test_every_panel_query_parses(tmp_path: Path) -> None:
    panels = _panels()
    assert {"Requests per second by route", "Cache hit ratio", "Consumer lag", "Champion version"} <= {
        where.split(": ", 1)[1] for where, _ in panels}
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:{i}", "expr": expr} for i, (_, expr) in enumerate(panels)]}]}
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "recstack.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_prometheus_scrapes_a_running_api_and_the_loop(tmp_path: Path) -> None:
    server_bin = tool("prometheus")
    settings = Settings(home=tmp_path / "home", auth="none")
    loop = LoopMetrics()
    loop_port = free_port()
    exporter, _thread = start_http_server(loop_port, addr="127.0.0.1", registry=loop.registry)

    store = open_store(settings.store_url)
    store.migrate()
    decisions = [Decision("retrain", "not_triggered", "0 new events", None)]
    loop.observe(decisions, 0.1, Registry.from_settings(settings), store, LoopConfig(), int(time.time() * 1000))
    store.close()
    from recstack.serving.app import create_app

    with running(create_app(settings)) as api:
        assert httpx.get(f"{api}/healthz").status_code == 200
        api_target = api.removeprefix("http://")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS / "rules" / "recstack.yml")],
            "scrape_configs": [
                {"job_name": "recstack-api", "static_configs": [{"targets": [api_target]}]},
                {"job_name": "recstack-loop", "static_configs": [{"targets": [f"127.0.0.1:{loop_port}"]}]},
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115
        prometheus = subprocess.Popen(
            [server_bin, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            found: dict[str, list[dict[str, Any]]] = {}
            wanted = ['recstack_http_requests_total{route="/healthz"}', "recstack_model_version",
                      "recstack_http_request_duration_seconds_bucket", "recstack_loop_champion_version",
                      "recstack_loop_decisions_total"]
            while time.monotonic() < deadline:
                assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
                try:
                    # 503 until the TSDB is open, then empty results until the first scrapes land.
                    found = {expr: _query(base, expr) for expr in wanted}
                except (httpx.HTTPError, ValueError):
                    found = {}
                if found and all(found.values()):
                    break
                time.sleep(0.5)
            assert found and all(found.values()), {k: bool(v) for k, v in found.items()}
            up = {r["metric"]["job"]: r["value"][1] for r in _query(base, "up")}
            assert up == {"recstack-api": "1", "recstack-loop": "1"}
            assert found["recstack_model_version"][0]["metric"]["model"] == "popularity"
            assert found["recstack_loop_decisions_total"][0]["metric"]["decision"] == "not_triggered"
            rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
            assert {g["name"] for g in rules} == {"recstack-api", "recstack-stream", "recstack-loop"}
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
            log.close()
            exporter.shutdown()
