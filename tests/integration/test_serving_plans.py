"""User plans (candidates searched in batch when a champion is prepared) give the answers the live path gives,
and step aside whenever they may not: a changed history, a category, filters that leave fewer than k."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from integration.serving_support import World
from recstack.models.base import Recommender
from recstack.serving.content import load_content
from recstack.serving.data import load_catalog
from recstack.serving.metrics import Metrics
from recstack.serving.recommender_service import FEED_SYNC_S, RecommendationService, ServingModel
from recstack.serving.retrieval import RetrievalConfig
from recstack.storage import Store
from recstack.storage.cache import MemoryCache


def service_for(store: Store, als: Recommender[Any], retrieval: RetrievalConfig) -> RecommendationService:
    service = RecommendationService(store, MemoryCache(), Metrics(), retrieval=retrieval)
    service.set_catalog(load_catalog(store))
    service.new_items.content = load_content(store)
    model = ServingModel.build(als, 1, retrieval)
    service.set_model(model, service.prepare(model))
    return service


def answer(
    service: RecommendationService, user: str, k: int = 10, read_history: bool = False, **options: Any
) -> list[tuple[str, float, str]]:
    """The answer as a request computes it: with the change feed's version of the user's history (SQLite),
    or, with `read_history`, from the history read and checked by fingerprint."""
    version = -1 if read_history else service._version(user)
    body = orjson.loads(service._compute(
        service.model, service.catalog, user, k, options.get("category"), options.get("exclude", []), None, version
    ))
    return [(i["item_id"], i["score"], i["reason"]) for i in body["items"]]


def live(service: RecommendationService, user: str, k: int = 10, **options: Any) -> list[tuple[str, float, str]]:
    plans, service.plans = service.plans, None
    try:
        return answer(service, user, k, **options)
    finally:
        service.plans = plans


def same(planned: list[tuple[str, float, str]], expected: list[tuple[str, float, str]]) -> None:
    assert [(i, r) for i, _, r in planned] == [(i, r) for i, _, r in expected]
    assert np.allclose([s for _, s, _ in planned], [s for _, s, _ in expected], atol=2e-6)


def planned_users(service: RecommendationService) -> list[str]:
    assert service.plans is not None and service.model is not None
    users = service.model.users.ids
    return [str(u) for u in users[np.flatnonzero(service.plans.planned)].tolist()]


@pytest.mark.parametrize("exact_max_items", [50_000, 100], ids=["exact", "ivf"])
def test_plans_answer_like_the_live_path(
    loaded: Store, store_url: str, als: Recommender[Any], world: World, exact_max_items: int
) -> None:
    service = service_for(loaded, als, RetrievalConfig(exact_max_items=exact_max_items))
    users = planned_users(service)
    # Users with long histories are left to the live path, which searches them exactly in this small catalogue.
    assert 50 <= len(users) <= als.users.ids.size
    held = store_url.startswith("sqlite")
    assert (service._held is service.plans) == held  # the change feed vouches for plans on SQLite only
    for user in users[:60]:
        history = service.history(user)
        assert service._planned(service.model, service.catalog, user, 10, None, [], history, -1) is not None  # type: ignore[arg-type]
        version = service._version(user)
        planned = service._planned(service.model, service.catalog, user, 10, None, [], None, version)  # type: ignore[arg-type]
        assert planned is not None
        assert (planned[2] is None) == held, "a held plan needs no history read"
        same(answer(service, user), live(service, user))
        same(answer(service, user, read_history=True), live(service, user))
        exclude = [item for item, _, _ in live(service, user)[:3]]
        same(answer(service, user, exclude=exclude), live(service, user, exclude=exclude))
        assert not set(exclude) & {item for item, _, _ in answer(service, user, exclude=exclude)}


def test_a_posted_event_or_a_filter_sends_the_request_to_the_live_path(
    loaded: Store, als: Recommender[Any], world: World
) -> None:
    service = service_for(loaded, als, RetrievalConfig())
    model, user = service.model, planned_users(service)[0]
    assert model is not None and service.catalog is not None
    top = [item for item, _, _ in answer(service, user)]
    event = pd.DataFrame([{"event_id": uuid.uuid4().hex, "user_id": user, "item_id": top[0], "event_type": "like",
                           "value": None, "timestamp": int(time.time() * 1000)}])
    loaded.write_interactions(event)
    time.sleep(FEED_SYNC_S)  # how soon a request sees what another writer stored
    history = service.history(user)
    assert service._planned(model, service.catalog, user, 10, None, [], history, -1) is None
    assert service._planned(model, service.catalog, user, 10, None, [], None, service._version(user)) is None
    after = answer(service, user)
    assert top[0] not in {item for item, _, _ in after}
    same(after, live(service, user))

    other = planned_users(service)[1]
    history = service.history(other)
    assert service._planned(model, service.catalog, other, 10, "jazz", [], history, -1) is None
    assert service._planned(model, service.catalog, other, 1000, None, [], history, -1) is None
    first = [item for item, _, _ in answer(service, other)]
    service.set_catalog(service.catalog.with_unavailable(set(first)))
    again = answer(service, other)
    assert not set(first) & {item for item, _, _ in again}
    same(again, live(service, other))
