"""The serving artefact: prepared once per version, memory-mapped by every worker, answering exactly as the
plans prepared in memory do; stored with the version in MLflow; active users replanned in the background."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from integration.test_serving_plans import answer, live, planned_users, same, service_for
from recstack.models.base import Recommender
from recstack.registry import Registry
from recstack.serving.artefacts import open_artefact, prepare, prepared
from recstack.serving.data import HistoryReader, load_catalog
from recstack.serving.recommender_service import FEED_SYNC_S
from recstack.serving.retrieval import RetrievalConfig
from recstack.storage import Store


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    """These tests use the shared `loaded` store on the embedded default only."""
    return sqlite_url


@pytest.mark.parametrize("exact_max_items", [50_000, 100], ids=["exact", "ivf"])
def test_an_opened_artefact_answers_like_plans_prepared_in_memory(
    loaded: Store, als: Recommender[Any], tmp_path: Path, exact_max_items: int
) -> None:
    retrieval = RetrievalConfig(exact_max_items=exact_max_items)
    service = service_for(loaded, als, retrieval)
    catalog = service.catalog
    directory = tmp_path / "serving"
    assert prepare(directory, als, 1, HistoryReader(loaded), catalog, retrieval=retrieval)
    assert prepared(directory)
    assert not prepare(directory, als, 1, HistoryReader(loaded), catalog, retrieval=retrieval)  # once only
    opened = open_artefact(directory, als, 1, catalog, retrieval)
    assert opened.plans is not None and opened.model.index is not None
    # Memory-mapped, not copied: every worker on the host shares these pages.
    assert isinstance(opened.plans.candidates.base, np.memmap)
    assert isinstance(opened.model.user_vectors.base, np.memmap)
    assert opened.model.index.kind == ("exact" if exact_max_items > 1000 else service.model.index.kind)  # type: ignore[union-attr]
    users = planned_users(service)[:40]
    expected = {user: answer(service, user) for user in users}
    service.set_model(opened.model, opened.plans)
    assert service._held is opened.plans  # the artefact's watermark lets the change feed vouch for its plans
    # The worker ranks its novel items for the opened plans once (the artefact has none): same answers.
    assert opened.plans.novel_content() is None
    assert service.rank_novel() and opened.plans.novel_content() is service.new_items.content
    hits = held = 0
    for user in users:
        history = service.history(user)
        hits += service._planned(opened.model, catalog, user, 10, None, [], history, -1) is not None  # type: ignore[arg-type]
        planned = service._planned(opened.model, catalog, user, 10, None, [], None, service._version(user))  # type: ignore[arg-type]
        held += planned is not None and planned[2] is None
        same(answer(service, user), expected[user])
        same(answer(service, user, read_history=True), expected[user])
        same(answer(service, user), live(service, user))
    assert hits == held == len(users)


def test_history_fingerprints_agree_across_processes() -> None:
    code = ("from recstack.processing.online import history_fingerprint as f; "
            "print(f([('i1', 'view', 1.0), ('i2', 'like', None)]))")
    values = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, check=True,
                       capture_output=True, text=True).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(values) == 1


def test_active_users_are_replanned_in_the_background(
    loaded: Store, als: Recommender[Any], tmp_path: Path
) -> None:
    service = service_for(loaded, als, RetrievalConfig())
    model, user = service.model, planned_users(service)[0]
    assert model is not None and service.catalog is not None
    top = [item for item, _, _ in answer(service, user)]
    loaded.write_interactions(pd.DataFrame([{
        "event_id": uuid.uuid4().hex, "user_id": user, "item_id": top[0], "event_type": "like", "value": None,
        "timestamp": int(time.time() * 1000),
    }]))
    time.sleep(FEED_SYNC_S)  # how soon a request sees what another writer stored
    history = service.history(user)
    version = service._version(user)
    assert service._planned(model, service.catalog, user, 10, None, [], None, version) is None  # stale: queued
    assert service.refresh_plans() == 1
    assert service._planned(model, service.catalog, user, 10, None, [], history, -1) is not None
    # The refreshed plan carries the user's version: it holds without reading the history again.
    planned = service._planned(model, service.catalog, user, 10, None, [], None, version)
    assert planned is not None and planned[2] is None
    after = answer(service, user)
    assert top[0] not in {item for item, _, _ in after}
    same(after, live(service, user))
    service.set_model(model, service.plans)  # a new champion drops the refreshed plans
    assert service.fresh == {}


def test_the_registry_keeps_the_artefact_with_the_version(
    loaded: Store, als: Recommender[Any], tmp_path: Path
) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", "artefacts", cache_dir=tmp_path / "cache-a")
    version = registry.log(als, metrics={"ndcg@10": 0.1})
    directory = registry.serving_dir(version)
    assert not prepared(directory)
    prepare(directory, registry.load(version), version.version, HistoryReader(loaded), load_catalog(loaded))
    registry.upload_serving(version, directory)
    # Another host (another cache directory) downloads it instead of preparing it again.
    other = Registry(registry.tracking_uri, "artefacts", cache_dir=tmp_path / "cache-b")
    downloaded = other.serving_dir(version.version)
    assert downloaded != directory and prepared(downloaded)
    opened = open_artefact(downloaded, other.load(version.version), version.version, load_catalog(loaded))
    assert opened.plans is not None
    assert np.array_equal(np.asarray(opened.plans.candidates), np.load(directory / "plans" / "candidates.npy"))
