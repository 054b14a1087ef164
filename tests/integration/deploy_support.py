"""Shared by the deploy-artefact tests: where the artefacts are, the checkers' executables, and the names
of every metric and setting recstack really has (so an artefact that names another one fails)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from conftest import ROOT, unavailable
from recstack.config import Settings

DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes release the manifests and the chart are validated against (kubernetes-validate's schemas)."""


def tool(name: str) -> str:
    """A checker installed beside the interpreter (the dev extra), else on PATH; missing → unavailable."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        unavailable(name, "not installed: pip install -e '.[dev]' (or apt-get install prometheus for promtool)")
    assert found is not None
    return found


def exported_metrics() -> set[str]:
    """Every series name the api, stream and loop export, with the suffixes Prometheus gives them."""
    from recstack.jobs.loop_metrics import LoopMetrics
    from recstack.processing.stream import StreamMetrics
    from recstack.serving.metrics import Metrics

    names: set[str] = set()
    for registry in (Metrics().registry, StreamMetrics().registry, LoopMetrics().registry):
        for family in registry.collect():
            base = family.name
            names.add(base)
            if family.type == "counter":
                names.add(f"{base}_total")
            if family.type == "histogram":
                names.update({f"{base}_bucket", f"{base}_count", f"{base}_sum"})
    return names


def setting_names() -> set[str]:
    """`RECSTACK_<FIELD>` for every settings field, plus RECSTACK_CONFIG (the YAML file's path)."""
    return {f"RECSTACK_{name.upper()}" for name in Settings.model_fields} | {"RECSTACK_CONFIG"}
