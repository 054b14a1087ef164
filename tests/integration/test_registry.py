"""The registry on a real MLflow SQLite store: logging, promotion rules, rollback and loading.

One store per module (creating it runs MLflow's migrations, seconds); each test registers under a model
name of its own, so tests do not see each other's versions or aliases.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from recstack.config import Settings
from recstack.errors import ConfigurationError, NotFound
from recstack.models.als import ALS
from recstack.models.base import Recommender
from recstack.models.ease import EASE
from recstack.models.popularity import Popularity
from recstack.registry import CHAMPION, PREVIOUS_CHAMPION, Registry


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    users = rng.integers(0, 60, 2500)
    # Two taste groups so collaborative models have something to learn.
    items = (users % 2) * 25 + rng.integers(0, 25, 2500)
    return pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items]})


@pytest.fixture(scope="module")
def fitted(interactions: pd.DataFrame) -> dict[str, Recommender]:  # type: ignore[type-arg]
    return {
        "ease": EASE(l2=50.0).fit(interactions),
        "popularity": Popularity().fit(interactions),
        "als": ALS(factors=8, iterations=5).fit(interactions),
    }


@pytest.fixture
def registry(store_dir: Path) -> Iterator[Registry]:
    yield Registry(
        f"sqlite:///{store_dir / 'mlflow.db'}",
        model_name=f"m-{uuid.uuid4().hex[:8]}",
        cache_dir=store_dir / "cache",
    )


def test_empty_registry(registry: Registry) -> None:
    assert registry.champion() is None
    assert registry.versions() == []
    with pytest.raises(NotFound, match="no previous champion"):
        registry.rollback()


def test_log_records_run_artifacts_and_version(
    registry: Registry, fitted: dict[str, Recommender], tmp_path: Path  # type: ignore[type-arg]
) -> None:
    report = tmp_path / "evaluation.json"
    report.write_text(json.dumps({"ndcg@10": 0.5}))
    before = datetime.now(UTC).replace(microsecond=0)
    version = registry.log(
        fitted["als"],
        metrics={"ndcg@10": 0.5, "ndcg@10[cold]": math.nan},
        params={"snapshot_id": "s1"},
        report=report,
        tags={"team": "recs"},
    )
    assert (version.version, version.model_kind, version.aliases) == (1, "als", ())
    assert version.metrics["ndcg@10"] == 0.5 and math.isnan(version.metrics["ndcg@10[cold]"])
    assert version.params["factors"] == 8 and version.params["snapshot_id"] == "s1"
    assert before <= version.created_at <= datetime.now(UTC)

    run = registry.client.get_run(version.run_id)
    assert run.data.metrics == {"ndcg_at_10": 0.5}  # MLflow-safe name; NaN is kept on the version only
    assert run.data.params["factors"] == "8" and run.data.tags["team"] == "recs"
    artifacts = {a.path for a in registry.client.list_artifacts(version.run_id)}
    assert artifacts == {"model", "embeddings", "report"}
    saved = {a.path for a in registry.client.list_artifacts(version.run_id, "embeddings")}
    assert saved == {"embeddings/item_embeddings.npy", "embeddings/item_ids.npy"}
    assert registry.get(1) == version
    assert registry.versions() == [version]


def test_promotion_rules_and_rollback(registry: Registry, fitted: dict[str, Recommender]) -> None:  # type: ignore[type-arg]
    strong = registry.log(fitted["ease"], metrics={"ndcg@10": 0.30})
    weak = registry.log(fitted["popularity"], metrics={"ndcg@10": 0.20})
    tied = registry.log(fitted["popularity"], metrics={"ndcg@10": 0.30})

    assert registry.promote(strong.version)  # the first champion needs to beat nobody
    assert not registry.promote(strong.version)  # already champion: nothing changes
    assert not registry.promote(weak.version)
    assert not registry.promote(tied.version)  # a tie keeps the incumbent
    champion = registry.champion()
    assert champion is not None and champion.version == strong.version and champion.aliases == (CHAMPION,)

    assert registry.promote(weak.version, force=True)
    aliases = {v.version: v.aliases for v in registry.versions()}
    assert aliases == {tied.version: (), weak.version: (CHAMPION,), strong.version: (PREVIOUS_CHAMPION,)}

    restored = registry.rollback()
    assert restored.version == strong.version and restored.is_champion
    assert {v.version: v.aliases for v in registry.versions()}[weak.version] == (PREVIOUS_CHAMPION,)
    assert registry.rollback().version == weak.version  # a second rollback undoes the first


def test_version_without_the_metric_never_wins_unforced(
    registry: Registry, fitted: dict[str, Recommender]  # type: ignore[type-arg]
) -> None:
    first = registry.log(fitted["popularity"], metrics={"ndcg@10": 0.1})
    unscored = registry.log(fitted["popularity"], metrics={"recall@10": 0.9})
    assert registry.promote(first.version)
    assert not registry.promote(unscored.version)
    assert registry.promote(unscored.version, force=True)
    assert registry.promote(first.version)  # a finite score beats a champion without one


def test_load_round_trip_gives_identical_recommendations(
    registry: Registry, fitted: dict[str, Recommender], store_dir: Path  # type: ignore[type-arg]
) -> None:
    users = ["u0", "u1", "u7", "u30", "nobody"]
    for name in ("ease", "als"):
        version = registry.log(fitted[name], metrics={"ndcg@10": 0.4})
        loaded = registry.load(version)
        assert type(loaded) is type(fitted[name])
        pdt.assert_frame_equal(loaded.recommend(users, k=10), fitted[name].recommend(users, k=10))
        pdt.assert_frame_equal(loaded.similar_items(["i1"], k=5), fitted[name].similar_items(["i1"], k=5))
    # Another process (a fresh registry) finds the download in the shared cache directory.
    twin = Registry(registry.tracking_uri, registry.model_name, cache_dir=store_dir / "cache")
    directory = twin.model_dir(version.version)
    assert directory == registry.model_dir(version) and (directory.parent / ".complete").exists()
    assert isinstance(twin.load(version.version), ALS)


def test_errors_name_what_is_missing(registry: Registry, fitted: dict[str, Recommender]) -> None:  # type: ignore[type-arg]
    with pytest.raises(NotFound, match="has no version 9"):
        registry.get(9)
    with pytest.raises(ConfigurationError, match="unfitted"):
        registry.log(EASE(), metrics={})
    with pytest.raises(ConfigurationError, match="does not exist"):
        registry.log(fitted["ease"], metrics={}, report=Path("/nonexistent/report.json"))
    with pytest.raises(ConfigurationError, match="model_name"):
        Registry("sqlite:///x.db", model_name="bad'name")


def test_settings_default_to_a_local_store_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    registry = Registry.from_settings(settings)
    assert registry.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert registry.artifact_root == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert (registry.model_name, registry.champion_metric) == ("recstack", "ndcg@10")
    assert (settings.cache_url, settings.cache_ttl_s) == ("memory://", 60.0)
