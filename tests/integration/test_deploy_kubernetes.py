"""The Kubernetes manifests and the Helm chart: every object validated against the pinned Kubernetes
release's schemas (kubernetes-validate, strict), the chart linted and rendered by the Helm engine, and the
rendering checked to hold the same objects, settings and probes as the plain manifests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from conftest import unavailable
from integration.deploy_support import DEPLOY, KUBERNETES_VERSION, exported_metrics, setting_names

CHART = DEPLOY / "helm" / "recstack"


def _validate(documents: list[dict[str, Any]]) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate", "not installed: pip install -e '.[dev]'")
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']} {doc['metadata'].get('name')}: {exc}") from exc


def _plain() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    try:
        import helm_python
    except ImportError:
        unavailable("helm-python-sdk", "not installed: pip install -e '.[dev]'")
    rendered = helm_python.Chart.load(str(CHART)).render(values or {}, name="rs", namespace="recs")
    docs: list[dict[str, Any]] = []
    for template, text in rendered.items():
        if template.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def test_plain_manifests_validate_against_the_pinned_kubernetes() -> None:
    docs = _plain()
    _validate(docs)
    kinds = _by_kind(docs)
    assert len(kinds["Deployment"]) == 2 and len(kinds["HorizontalPodAutoscaler"]) == 2
    assert {"Service", "ConfigMap", "Secret", "PodDisruptionBudget", "CronJob", "Job"} <= set(kinds)
    kustomized = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert all((DEPLOY / "k8s" / name).exists() for name in kustomized)


def _api(docs: list[dict[str, Any]]) -> dict[str, Any]:
    api = next(d for d in _by_kind(docs)["Deployment"] if d["metadata"]["name"].endswith("-api"))
    return dict(api["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("source", ["plain", "helm"])
def test_api_probes_shutdown_resources_and_autoscaling(source: str) -> None:
    docs = _plain() if source == "plain" else _render()
    container = _api(docs)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    hpas = {d["metadata"]["name"].rsplit("-", 1)[-1]: d["spec"] for d in _by_kind(docs)["HorizontalPodAutoscaler"]}
    api_metrics = {m["type"]: m for m in hpas["api"]["metrics"]}
    assert api_metrics["Resource"]["resource"]["name"] == "cpu"
    assert api_metrics["Pods"]["pods"]["metric"]["name"] == "recstack_http_requests_per_second"
    assert hpas["stream"]["metrics"][0]["pods"]["metric"]["name"] == "recstack_stream_consumer_lag"
    assert "recstack_stream_consumer_lag" in exported_metrics()
    adapter = yaml.safe_load((DEPLOY / "prometheus" / "adapter.yaml").read_text())["rules"]
    assert {r["name"]["as"] for r in adapter} == {"recstack_http_requests_per_second", "recstack_stream_consumer_lag"}
    assert {r["seriesQuery"].split("{")[0].strip("'") for r in adapter} <= exported_metrics()
    cron = _by_kind(docs)["CronJob"][0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert cron["args"][:2] == ["loop", "--once"]
    config = _by_kind(docs)["ConfigMap"][0]["data"]
    secret = _by_kind(docs)["Secret"][0]["stringData"]
    assert set(config) | set(secret) <= setting_names(), (set(config) | set(secret)) - setting_names()
    assert "RECSTACK_DATABASE_URL" in secret and "RECSTACK_DATABASE_URL" not in config


def test_chart_lints_clean_with_the_helm_engine() -> None:
    try:
        import helm_python
    except ImportError:
        unavailable("helm-python-sdk", "not installed: pip install -e '.[dev]'")
    report = helm_python.lint(str(CHART), strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert report["total_charts_linted"] == 1
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report


def test_chart_renders_the_plain_manifests_objects_and_validates() -> None:
    default = _render()
    _validate(default)
    plain_kinds = {k: len(v) for k, v in _by_kind(_plain()).items() if k != "Job"}
    assert {k: len(v) for k, v in _by_kind(default).items()} == plain_kinds
    with_training = _render({"train": {"enabled": True, "model": "ease"}, "image": {"tag": "1.2.3"}})
    _validate(with_training)
    job = _by_kind(with_training)["Job"][0]
    assert "recstack train --model" in job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert _api(with_training)["image"].endswith(":1.2.3")


def test_chart_values_drive_replicas_bounds_resources_urls_and_secrets() -> None:
    docs = _render({
        "api": {"autoscaling": {"enabled": False}, "replicas": 5, "resources": {"requests": {"cpu": "2"}}},
        "stream": {"enabled": False},
        "loop": {"enabled": False},
        "settings": {"bus_url": "kafka://b1:9092,b2:9092"},
        "existingSecret": "vault-recstack",
    })
    _validate(docs)
    kinds = _by_kind(docs)
    assert "HorizontalPodAutoscaler" not in kinds and "CronJob" not in kinds and "Secret" not in kinds
    api = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-api"))
    assert api["spec"]["replicas"] == 5 and len(kinds["Deployment"]) == 1
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert {"secretRef": {"name": "vault-recstack"}} in container["envFrom"]
    assert kinds["ConfigMap"][0]["data"]["RECSTACK_BUS_URL"] == "kafka://b1:9092,b2:9092"
    bounded = _render({"api": {"autoscaling": {"minReplicas": 3, "maxReplicas": 9}}})
    hpa = next(d for d in _by_kind(bounded)["HorizontalPodAutoscaler"] if d["metadata"]["name"].endswith("-api"))
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)


def test_chart_refuses_inverted_autoscaling_bounds() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="minReplicas"):
        _render({"api": {"autoscaling": {"minReplicas": 9, "maxReplicas": 3}}})


def test_pod_monitor_renders_for_the_prometheus_operator() -> None:
    docs = _by_kind(_render({"monitoring": {"podMonitor": {"enabled": True}}}))
    ports = {e["port"] for e in docs["PodMonitor"][0]["spec"]["podMetricsEndpoints"]}
    assert ports == {"http", "metrics"}
