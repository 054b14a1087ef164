"""`train_and_register` as a library call: plain frames in, a registered (maybe promoted) version out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recstack.evaluation.holdout import Holdout
from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
from recstack.jobs.training import TrainingData, train_and_register
from recstack.registry import Registry


@pytest.fixture(scope="module")
def data() -> TrainingData:
    config = SyntheticConfig(users=80, items=60, interactions=3_000, categories=4, seed=5)
    users, items = make_catalog(config)
    events = pd.concat(list(iter_interactions(config)), ignore_index=True)
    events["timestamp"] = events["timestamp"].dt.as_unit("ms").astype("int64")
    return TrainingData(events, items, users)


def test_train_register_promote_with_each_holdout(tmp_path: Path, data: TrainingData) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", cache_dir=tmp_path / "cache")
    steps: list[str] = []
    first = train_and_register(registry, data, "ease", holdout=Holdout("temporal", 0.2), progress=steps.append)
    assert first.promoted and first.incumbent is None and first.version.version == 1
    assert first.version.params["split"] == "temporal(quantile=0.8)"
    assert first.evaluation.metrics["ndcg@10"] > 0 and first.evaluation.test_users > 0
    assert len(steps) == 3 and steps[0].startswith("fitting ease")

    second = train_and_register(registry, data, "popularity", holdout=Holdout("temporal", 0.2))
    assert not second.promoted and second.incumbent is not None and second.incumbent.version == 1
    assert second.evaluation.metrics["ndcg@10"] < first.evaluation.metrics["ndcg@10"]

    third = train_and_register(registry, data, "popularity", holdout=Holdout("user-temporal", 0.2), force=True)
    assert third.promoted and registry.champion() is not None
    assert third.version.params["split"] == "temporal_by_user(ratio=0.8)"
    assert "recstack.snapshot" not in third.version.tags
