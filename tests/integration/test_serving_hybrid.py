"""The hybrid as champion behind the real API: each item's reason names its source, and what was shown is
logged; the loop's pass then writes the ranker's features of every impression to the lakehouse, the very
features the served version computes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from integration.serving_support import FixedSource, World, load, running
from recstack.config import Settings
from recstack.jobs import impression_features
from recstack.models.hybrid import HybridRecommender
from recstack.processing.features import feature_names
from recstack.registry import Registry
from recstack.serving.app import create_app
from recstack.storage import open_store
from recstack.storage.lake import Lake


@pytest.fixture(scope="module")
def hybrid(world: World) -> HybridRecommender:
    columns = ["user_id", "item_id", "event_type", "value", "timestamp"]
    return HybridRecommender(ranker={"n_estimators": 40, "num_threads": 1}).fit(
        world.interactions[columns], items=world.items
    )


def test_reasons_name_the_source_and_the_loop_logs_the_features_of_what_was_shown(
    world: World, hybrid: HybridRecommender, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    store = open_store(url)
    store.migrate()
    load(store, world)
    settings = Settings(home=tmp_path, database_url=url, cache_url="memory://", auth="none")
    registry = Registry.from_settings(settings)
    version = registry.log(hybrid, metrics={"ndcg@10": 0.0}).version
    app = create_app(settings, model_source=FixedSource(hybrid, version=version))
    users = [str(u) for u in hybrid.users.ids[:12]]
    titles = set(world.items["title"].astype(str))
    reasons: list[str] = []
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        for user in users:
            answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            assert body["model"] == "hybrid" and body["model_version"] == version
            assert len(body["items"]) == 10
            reasons += [item["reason"] for item in body["items"]]
    assert "collaborative" in reasons
    watched = [r for r in reasons if r.startswith("because you watched ")]
    assert watched and all(r.removeprefix("because you watched ") in titles for r in watched)
    assert set(reasons) <= {"collaborative", "trending", "new", "content", *watched}

    lake = Lake(settings.lake_root)
    assert lake.read_impression_features().empty  # the server computes no features
    shown = store.read_impressions(0, 2**62)
    assert len(shown) == 120 and set(shown["user_id"]) == set(users)
    now = int(shown["served_at"].max()) + impression_features.LAG_MS + 1
    assert impression_features.catch_up(store, lake, registry, now) == 120
    assert impression_features.catch_up(store, lake, registry, now + 1) == 0  # past the watermark
    store.close()

    logged = lake.read_impression_features()
    assert len(logged) == 120 and set(logged["user_id"]) == set(users)
    assert list(logged["feature_names"].iloc[0]) == feature_names()
    assert (logged["model_version"] == version).all()
    first = logged.loc[logged["request_id"] == logged["request_id"].iloc[0]].sort_values("position")
    assert first["position"].tolist() == list(range(1, 11))
    # The registered version, loaded again by the loop, gives exactly what the served model computes.
    found = hybrid.ranking_features(int(hybrid.users.index(str(first["user_id"].iloc[0]))[0]),
                                    hybrid.items.index(first["item_id"].astype(str).to_numpy()))
    assert found is not None
    np.testing.assert_array_equal(np.stack(first["features"].to_numpy()), found[1])
    assert np.isfinite(found[1]).any()
