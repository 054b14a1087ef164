"""A batch job's lists in the cache are served for their model version through the live path's filters, on
the in-process cache and on Redis alike; anything they cannot answer in full is computed live."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from integration.serving_support import World, load
from recstack.models.base import Recommender
from recstack.serving.batch import LoadedVersions, load_cache
from recstack.serving.data import load_catalog
from recstack.serving.metrics import Metrics
from recstack.serving.recommender_service import RecommendationService, ServingModel
from recstack.storage import open_store
from recstack.storage.cache import Cache, MemoryCache, open_cache


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "memory":
        return MemoryCache()
    return open_cache(str(request.getfixturevalue("redis_cache_url")))


@pytest.fixture
def service(sqlite_url: str, world: World, als: Recommender[Any], cache: Cache) -> Iterator[RecommendationService]:
    store = open_store(sqlite_url)
    store.migrate()
    load(store, world)
    service = RecommendationService(store, cache, Metrics())
    service.set_catalog(load_catalog(store))
    model = ServingModel.build(als, 1)
    service.set_model(model, service.prepare(model))
    yield service
    store.close()


@pytest.fixture
def batch(als: Recommender[Any]) -> pd.DataFrame:
    """A batch job's rows for every user: the model's places 11–30, so a served list cannot be the live one."""
    ranked = als.recommend(als.users.ids, k=30)
    kept = ranked.loc[ranked["rank"] > 10].copy()
    kept["rank"] -= 10
    return kept


def ask(service: RecommendationService, user: str, k: int = 10, category: str | None = None,
        exclude: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(service.recommend(user, k, category, exclude or []).body)
    return body


def items(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def listed(batch: pd.DataFrame, user: str) -> list[str]:
    return batch.loc[batch["user_id"] == user].sort_values("rank")["item_id"].tolist()


def test_the_batch_list_of_the_served_version_is_the_answer(
    service: RecommendationService, batch: pd.DataFrame, als: Recommender[Any]
) -> None:
    now = [0.0]
    service.batches = LoadedVersions(recheck_s=10.0, clock=lambda: now[0])
    user = str(als.users.ids[0])
    live = ask(service, user)
    assert live["source"] == "model"
    assert load_cache(batch, service.cache, "als1", 600.0) == len(als.users)
    assert ask(service, user, k=7)["source"] == "model", "the marker was read as absent less than 10 s ago"
    now[0] = 10.0
    answer = ask(service, user, k=8)
    assert answer["source"] == "batch" and items(answer) == listed(batch, user)[:8]
    assert items(answer) != items(live)[:8]
    scores = batch.loc[batch["user_id"] == user].sort_values("rank")["score"].to_numpy()[:8]
    assert np.allclose([i["score"] for i in answer["items"]], scores, atol=1e-6)
    assert {i["reason"] for i in answer["items"]} == {als.reason}
    metrics = service.metrics.render().decode()
    assert 'recstack_recommendation_answers_total{source="batch"} 1.0' in metrics
    assert 'recstack_recommendation_answers_total{source="model"} 2.0' in metrics

    assert service.model is not None
    service.set_model(ServingModel.build(als, 2))
    assert ask(service, user, k=8)["source"] == "model", "a new champion never serves an old version's lists"


def test_filters_apply_to_the_batch_list_and_a_short_list_goes_live(
    service: RecommendationService, batch: pd.DataFrame, als: Recommender[Any]
) -> None:
    load_cache(batch, service.cache, "als1", 600.0)
    user = str(als.users.ids[1])
    expected = listed(batch, user)
    assert service.catalog is not None
    catalog = service.catalog

    answer = ask(service, user, k=5, exclude=expected[:2])
    assert answer["source"] == "batch" and items(answer) == expected[2:7]

    category = str(catalog.category[catalog.lookup[expected[3]]])
    in_category = [i for i in expected if catalog.category[catalog.lookup[i]] == category]
    answer = ask(service, user, k=len(in_category), category=category)
    assert answer["source"] == "batch" and items(answer) == in_category
    assert ask(service, user, k=len(in_category) + 1, category=category)["source"] == "model"

    service.set_catalog(catalog.with_unavailable({expected[0]}))
    answer = ask(service, user, k=10)
    assert answer["source"] == "batch" and items(answer) == expected[1:11]

    short = ask(service, user, k=20)
    assert short["source"] == "model" and len(short["items"]) == 20 and expected[0] not in items(short)


def test_a_new_event_removes_its_item_from_the_batch_answer(
    service: RecommendationService, batch: pd.DataFrame, als: Recommender[Any]
) -> None:
    load_cache(batch, service.cache, "als1", 600.0)
    user = str(als.users.ids[2])
    expected = listed(batch, user)
    first = ask(service, user)
    assert items(first) == expected[:10]
    assert service.recommend(user, 10, None, []).headers["X-Cache"] == "hit"

    event = pd.DataFrame([{"event_id": uuid.uuid4().hex, "user_id": user, "item_id": expected[0],
                           "event_type": "view", "value": None, "timestamp": int(time.time() * 1000)}])
    service.store.write_interactions(event)
    service.invalidate([user])  # what the stream does after storing an event
    after = ask(service, user)
    assert after["source"] == "batch" and items(after) == expected[1:11]
