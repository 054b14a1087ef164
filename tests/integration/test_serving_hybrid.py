"""The hybrid as champion behind the real API: each item's reason names its source, and what was shown is
logged with the ranker's features to the lakehouse."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.serving_support import FixedSource, World, load, running
from recstack.config import Settings
from recstack.models.hybrid import HybridRecommender
from recstack.processing.features import feature_names
from recstack.serving.app import create_app
from recstack.storage import open_store
from recstack.storage.lake import Lake


@pytest.fixture(scope="module")
def hybrid(world: World) -> HybridRecommender:
    columns = ["user_id", "item_id", "event_type", "value", "timestamp"]
    return HybridRecommender(ranker={"n_estimators": 40, "num_threads": 1}).fit(
        world.interactions[columns], items=world.items
    )


def test_reasons_name_the_source_and_impressions_carry_features(
    world: World, hybrid: HybridRecommender, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    store = open_store(url)
    store.migrate()
    load(store, world)
    store.close()
    settings = Settings(home=tmp_path, database_url=url, cache_url="memory://", auth="none")
    app = create_app(settings, model_source=FixedSource(hybrid, version=3))
    users = [str(u) for u in hybrid.users.ids[:12]]
    titles = set(world.items["title"].astype(str))
    reasons: list[str] = []
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        for user in users:
            answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            assert body["model"] == "hybrid" and body["model_version"] == 3
            assert len(body["items"]) == 10
            reasons += [item["reason"] for item in body["items"]]
        deadline = time.monotonic() + 20
        lake = Lake(str(tmp_path / "lake"))
        while lake.read_impression_features().empty and time.monotonic() < deadline:
            time.sleep(0.2)
    assert "collaborative" in reasons
    watched = [r for r in reasons if r.startswith("because you watched ")]
    assert watched and all(r.removeprefix("because you watched ") in titles for r in watched)
    assert set(reasons) <= {"collaborative", "trending", "new", "content", *watched}
    logged = Lake(str(tmp_path / "lake")).read_impression_features()
    assert not logged.empty and set(logged["user_id"]) <= set(users)
    assert list(logged["feature_names"].iloc[0]) == feature_names()
    assert len(logged["features"].iloc[0]) == len(feature_names())
    assert logged["model_version"].iloc[0] == 3
    assert sorted(logged.loc[logged["request_id"] == logged["request_id"].iloc[0], "position"]) == list(range(1, 11))
