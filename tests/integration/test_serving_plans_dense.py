"""Plans for a champion without embeddings (`auto`'s blend): ranked in batch by the model's own `score`,
they give the answers the live path gives, user by user, in memory and opened from the serving artefact;
active users are replanned in the background the same way."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from integration.serving_support import World, load
from integration.test_serving_plans import answer, live, planned_users, same, service_for
from recstack.models.auto import AutoRecommender
from recstack.models.base import Recommender
from recstack.serving.artefacts import open_artefact, prepare
from recstack.serving.data import HistoryReader
from recstack.serving.neighbours import DEPTH
from recstack.serving.recommender_service import FEED_SYNC_S
from recstack.serving.retrieval import RetrievalConfig
from recstack.storage import Store, open_store


@pytest.fixture(scope="module")
def blend(world: World) -> Recommender[Any]:
    columns = ["user_id", "item_id", "event_type", "value", "timestamp"]
    model = AutoRecommender(
        time_budget_s=20.0, max_trials=2, candidates=["ease", "item_knn"], folds=2, keep_within=0.01
    )
    return model.fit(world.interactions[columns], world.items)


def test_plans_of_a_champion_without_embeddings_answer_like_the_live_path(
    loaded: Store, store_url: str, blend: Recommender[Any]
) -> None:
    assert blend.item_embeddings() is None
    service = service_for(loaded, blend, RetrievalConfig())
    model = service.model
    assert model is not None and model.index is None and model.neighbours is not None
    assert service.plans is not None and bool(np.asarray(service.plans.planned).all())
    users = planned_users(service)
    assert len(users) == len(blend.users)
    held = store_url.startswith("sqlite")
    assert (service._held is service.plans) == held
    signalled = 0
    for user in users[:60]:
        history = service.history(user)
        assert service._planned(model, service.catalog, user, 10, None, [], history, -1) is not None  # type: ignore[arg-type]
        planned = service._planned(model, service.catalog, user, 10, None, [], None, service._version(user))  # type: ignore[arg-type]
        assert planned is not None and (planned[2] is None) == held
        signalled += any(event in ("like", "share", "purchase", "skip", "watch", "rating")
                         for event in history.event_types)
        same(answer(service, user), live(service, user))
        same(answer(service, user, read_history=True), live(service, user))
        exclude = [item for item, _, _ in live(service, user)[:3]]
        same(answer(service, user, exclude=exclude), live(service, user, exclude=exclude))
        assert not set(exclude) & {item for item, _, _ in answer(service, user, exclude=exclude)}
    assert signalled > 10  # the feedback shift is part of what the plans had to match


def test_item_neighbours_are_the_models_similar_items(loaded: Store, blend: Recommender[Any]) -> None:
    service = service_for(loaded, blend, RetrievalConfig())
    assert service.model is not None and service.model.neighbours is not None
    neighbours = service.model.neighbours
    for idx in (0, 7, len(blend.items) - 1):
        frame = blend.similar_items(str(blend.items.ids[idx]), k=DEPTH)
        n = len(frame)
        assert blend.items.ids[neighbours.items[idx, :n]].tolist() == frame["similar_item_id"].tolist()
        assert np.array_equal(neighbours.scores[idx, :n], frame["score"].to_numpy(np.float32))
        assert (neighbours.items[idx, n:] == -1).all()


def test_similar_items_of_a_champion_without_embeddings_are_read_from_its_neighbours(
    loaded: Store, blend: Recommender[Any]
) -> None:
    service = service_for(loaded, blend, RetrievalConfig())
    model = service.model
    assert model is not None and model.neighbours is not None and service.catalog is not None
    asked = dataclasses.replace(model, neighbours=None)  # what the model's own similar_items answers
    unavailable = set(service.catalog.ids[::4].tolist())
    service.set_catalog(service.catalog.with_unavailable(unavailable))
    allowed = service._aligned_for(model, service.catalog).available
    for idx in (0, 7, len(blend.items) - 1):
        item_id = str(blend.items.ids[idx])
        mask = allowed.copy()
        mask[idx] = False
        assert model.neighbours.nearest(idx, mask, 10) is not None  # answered without asking the model
        kept = service._model_neighbours(model, item_id, mask, 10)
        assert kept is not None and not unavailable & set(kept.item_ids)
        expected = service._model_neighbours(asked, item_id, mask, 10)
        assert expected is not None and kept.item_ids == expected.item_ids
        assert np.allclose(kept.scores, expected.scores)
    deep = service._model_neighbours(model, str(blend.items.ids[0]), allowed, DEPTH + 5)
    assert deep is not None and len(deep.item_ids) == DEPTH + 5  # past the kept depth: the model is asked


def test_the_artefact_of_a_champion_without_embeddings_holds_its_plans(
    sqlite_url: str, world: World, blend: Recommender[Any], tmp_path: Path
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    load(store, world)
    try:
        service = service_for(store, blend, RetrievalConfig())
        catalog = service.catalog
        users = planned_users(service)[:40]
        expected = {user: answer(service, user) for user in users}
        directory = tmp_path / "serving"
        steps: list[int] = []
        assert prepare(directory, blend, 1, HistoryReader(store), catalog, progress=steps.append)
        assert sum(steps) == len(blend.users) and len(steps) >= 1
        opened = open_artefact(directory, blend, 1, catalog)
        assert opened.plans is not None and opened.model.neighbours is not None
        assert isinstance(opened.plans.candidates.base, np.memmap)
        assert isinstance(opened.model.neighbours.items.base, np.memmap)
        service.set_model(opened.model, opened.plans)
        assert service._held is opened.plans
        for user in users:
            planned = service._planned(opened.model, catalog, user, 10, None, [], None, service._version(user))  # type: ignore[arg-type]
            assert planned is not None and planned[2] is None
            same(answer(service, user), expected[user])
            same(answer(service, user), live(service, user))

        # A posted event: the plan no longer holds, the user is queued and replanned by batch score.
        user = users[0]
        top = [item for item, _, _ in answer(service, user)]
        store.write_interactions(pd.DataFrame([{
            "event_id": uuid.uuid4().hex, "user_id": user, "item_id": top[0], "event_type": "like", "value": None,
            "timestamp": int(time.time() * 1000),
        }]))
        time.sleep(FEED_SYNC_S)  # how soon a request sees what another writer stored
        version = service._version(user)
        assert service._planned(opened.model, catalog, user, 10, None, [], None, version) is None  # type: ignore[arg-type]
        assert service.refresh_plans() == 1
        planned = service._planned(opened.model, catalog, user, 10, None, [], None, version)  # type: ignore[arg-type]
        assert planned is not None and planned[2] is None
        after = answer(service, user)
        assert top[0] not in {item for item, _, _ in after}
        same(after, live(service, user))
    finally:
        store.close()
