"""The recommendation API end to end: a real uvicorn server, a real store (SQLite and PostgreSQL), real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import pytest
import redis

from conftest import unavailable
from integration.serving_support import FixedSource, World, free_port, load, running
from recstack.config import Settings
from recstack.models.base import Recommender
from recstack.serving.app import create_app
from recstack.storage import open_store

REDIS_URL = "redis://127.0.0.1:6379/15"

Serve = Callable[..., AbstractContextManager[httpx.Client]]


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL}", str(exc))
    return f"{REDIS_URL}?prefix=test-{free_port()}:"


@pytest.fixture
def serve(store_url: str, world: World, als: Recommender[Any], tmp_path: Any) -> Serve:
    """Start a server on the parametrised store (loaded with `world`): `with serve(**options) as client:`."""
    store = open_store(store_url)
    store.migrate()
    load(store, world)
    store.close()

    @contextmanager
    def start(cache_url: str = "memory://", source: Any = "als", **options: Any) -> Iterator[httpx.Client]:
        settings = Settings(home=tmp_path, database_url=store_url, cache_url=cache_url, auth="none")
        app = create_app(settings, model_source=FixedSource(als) if source == "als" else source, **options)
        with running(app) as base, httpx.Client(base_url=base, timeout=10) as client:
            yield client

    return start


def seen_by(world: World, user_id: str) -> set[str]:
    return set(world.interactions.loc[world.interactions["user_id"] == user_id, "item_id"])


def item_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_recommendations_never_contain_filtered_items(serve: Serve, world: World) -> None:
    user = str(world.interactions["user_id"].iloc[0])
    seen = seen_by(world, user)
    with serve() as client:
        first = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
        body = first.json()
        assert body["model_version"] == 1 and body["source"] == "model"
        # Items the champion never saw may take a few places through their content.
        assert "collaborative" in {i["reason"] for i in body["items"]} <= {"collaborative", "content"}
        top = item_ids(first)
        assert len(top) == 10 and not seen & set(top)

        assert client.put(f"/v1/items/{top[0]}", json={"available": False}).status_code == 200
        excluded = top[1:3]
        params: dict[str, Any] = {"k": 10, "exclude": ",".join(excluded)}
        after = item_ids(client.get(f"/v1/users/{user}/recommendations", params=params))
        assert len(after) == 10 and not {top[0], *excluded} & set(after) and not seen & set(after)

        category = str(world.items["category"].iloc[0])
        in_category = set(world.items.loc[world.items["category"] == category, "item_id"])
        everything = item_ids(client.get(f"/v1/users/{user}/recommendations", params={"k": 1000, "category": category}))
        assert set(everything) <= in_category - seen - {top[0]}
        assert len(everything) == len(in_category - seen - {top[0]})
        none_left = client.get(f"/v1/users/{user}/recommendations", params={"category": "no-such-category"})
        assert item_ids(none_left) == []


def twin(client: httpx.Client, item: str, candidates: dict[str, float]) -> str | None:
    """The item's nearest neighbour when that neighbour is among `candidates`."""
    nearest = item_ids(client.get(f"/v1/items/{item}/similar", params={"k": 1}))[0]
    return nearest if nearest in candidates else None


def test_event_changes_the_next_answer_within_a_second(serve: Serve, world: World) -> None:
    user = str(world.interactions["user_id"].iloc[1])
    with serve() as client:
        url = f"/v1/users/{user}/recommendations"
        before = client.get(url, params={"k": 1000}).json()["items"]
        scores = {i["item_id"]: i["score"] for i in before}
        pairs = [(item, twin(client, item, scores)) for item in list(scores)[3:40]]
        usable = [(item, other) for item, other in pairs if other is not None]
        (liked, liked_twin), (skipped, skipped_twin) = usable[0], next(
            p for p in usable[1:] if p[1] != usable[0][1] and p[0] != usable[0][1] and p[1] != usable[0][0]
        )
        assert client.get(url, params={"k": 1000}).headers["X-Cache"] == "hit"

        started = time.perf_counter()
        posted = client.post("/v1/events", json={"user_id": user, "item_id": liked, "event_type": "like"})
        assert posted.status_code == 202, posted.text
        after = client.get(url, params={"k": 1000})
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0
        assert after.headers["X-Cache"] == "miss"
        new_scores = {i["item_id"]: i["score"] for i in after.json()["items"]}
        assert liked not in new_scores
        assert new_scores[liked_twin] > scores[liked_twin]

        client.post("/v1/events", json={"user_id": user, "item_id": skipped, "event_type": "skip"})
        skipped_scores = {i["item_id"]: i["score"] for i in client.get(url, params={"k": 1000}).json()["items"]}
        assert skipped not in skipped_scores
        assert skipped_scores[skipped_twin] < new_scores[skipped_twin]


@pytest.mark.redis
def test_redis_cache_is_invalidated_by_an_event(serve: Serve, world: World, redis_url: str) -> None:
    user = str(world.interactions["user_id"].iloc[2])
    with serve(cache_url=redis_url) as client:
        url = f"/v1/users/{user}/recommendations"
        first = client.get(url)
        assert first.headers["X-Cache"] == "miss"
        second = client.get(url)
        assert second.headers["X-Cache"] == "hit" and second.content == first.content
        top = item_ids(first)[0]
        event = {"event_id": f"inv-{user}", "user_id": user, "item_id": top, "event_type": "view"}
        assert client.post("/v1/events", json=event).status_code == 202
        third = client.get(url)
        assert third.headers["X-Cache"] == "miss" and top not in item_ids(third)
        again = client.post("/v1/events", json={"events": [event]}).json()
        assert again["duplicates"] == 1 and again["accepted"] == 0
        metrics = client.get("/metrics").text
        assert 'recstack_cache_requests_total{result="hit"} 1.0' in metrics
        assert 'recstack_events_total{outcome="duplicate"} 1.0' in metrics


def test_bad_input_is_a_4xx_naming_the_field(serve: Serve, world: World) -> None:
    user = str(world.interactions["user_id"].iloc[0])
    item = str(world.items["item_id"].iloc[0])
    with serve() as client:
        cases: list[tuple[httpx.Response, int, str]] = [
            (client.get(f"/v1/users/{user}/recommendations", params={"k": 0}), 422, "query.k"),
            (client.get(f"/v1/users/{user}/recommendations", params={"k": "many"}), 422, "query.k"),
            (client.get(f"/v1/users/{'x' * 300}/recommendations"), 422, "path.user_id"),
            (client.get(f"/v1/items/{item}/similar", params={"k": 5000}), 422, "query.k"),
            (client.get("/v1/items/no-such-item/similar"), 404, "item_id"),
            (client.post("/v1/events", json={"item_id": item, "event_type": "like"}), 422, "user_id"),
            (client.post("/v1/events", json={"user_id": user, "item_id": item, "event_type": "love"}), 422,
             "event_type"),
            (client.post("/v1/events", json={"user_id": user, "item_id": item, "timestamp": "yesterday"}), 422,
             "timestamp"),
            (client.post("/v1/events", json={"user_id": user, "item_id": item, "event_type": "rating"}), 422,
             "value"),
            (client.post("/v1/events", json={"user_id": user, "item": item}), 422, "body.item"),
            (client.post("/v1/events", json={"events": []}), 422, "body.events"),
            (client.post("/v1/events", json=[{"user_id": user, "item_id": {"a": 1}}]), 422, "body.0.item_id"),
            (client.post("/v1/events", content=b"{not json"), 422, "JSON"),
            (client.post("/v1/events", json="an event"), 422, "body"),
            (client.put(f"/v1/items/{item}", json={"duration_s": -3}), 422, "duration_s"),
            (client.put(f"/v1/items/{item}", json={"available": "perhaps"}), 422, "body.available"),
            (client.put(f"/v1/users/{user}", json={"preferences": ["jazz"]}), 422, "body.preferences"),
            (client.put(f"/v1/users/{user}", json={"created_at": "not a date"}), 422, "created_at"),
            (client.put(f"/v1/items/{item}", json={"category": "c" * 300}), 422, "body.category"),
            (client.get("/v1/users/a%00b/recommendations"), 422, "path.user_id"),
            (client.post("/v1/events", json={"user_id": "a\x00b", "item_id": item}), 422, "user_id"),
            (client.put(f"/v1/users/{user}", json={"preferences": {"note": "\x00"}}), 422, "preferences.note"),
        ]
        for response, status, field in cases:
            assert response.status_code == status, (field, response.text)
            assert field in response.json()["detail"], (field, response.text)

        batch = client.post("/v1/events", json={"events": [
            {"user_id": user, "item_id": item, "event_type": "like", "event_id": "ok-1"},
            {"user_id": user, "item_id": item, "event_type": "like", "value": -1},
        ]})
        assert batch.status_code == 202
        report = batch.json()
        assert report["accepted"] == 1 and report["rejected"] == 1
        assert report["records"][1]["status"] == "rejected" and "value" in report["records"][1]["reason"]
        assert 'recstack_events_total{outcome="rejected"}' in client.get("/metrics").text


def test_without_a_champion_the_answer_is_popularity_with_a_header(serve: Serve, world: World) -> None:
    with serve(source=None) as client:
        user = str(world.interactions["user_id"].iloc[0])
        response = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
        assert response.status_code == 200
        assert "popularity" in response.headers["X-Recstack-Fallback"]
        body = response.json()
        assert body["source"] == "trending" and body["model_version"] is None
        assert len(body["items"]) == 5 and not seen_by(world, user) & set(item_ids(response))
        ready = client.get("/readyz").json()
        assert ready["ready"] and not ready["checks"]["model"]


def test_new_users_get_trending_in_their_preferred_categories(serve: Serve, world: World) -> None:
    category = str(world.items["category"].iloc[3])
    in_category = set(world.items.loc[world.items["category"] == category, "item_id"])
    with serve() as client:
        assert client.put("/v1/users/newcomer", json={"preferences": {"categories": [category]}}).json()["created"]
        response = client.get("/v1/users/newcomer/recommendations", params={"k": 5})
        body = response.json()
        assert body["source"] == "trending" and {i["reason"] for i in body["items"]} == {"trending"}
        assert set(item_ids(response)) <= in_category


def test_an_unreachable_redis_is_reported_and_answers_go_uncached(serve: Serve, world: World) -> None:
    user = str(world.interactions["user_id"].iloc[0])
    with serve(cache_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        for _ in range(3):
            response = client.get(f"/v1/users/{user}/recommendations")
            assert response.status_code == 200 and len(item_ids(response)) == 10
        event = {"user_id": user, "item_id": item_ids(response)[0], "event_type": "skip"}
        assert client.post("/v1/events", json=event).status_code == 202
        # The online state lives in the same unreachable Redis: history comes from the store, where the
        # stream keeps storing events (each batch is retried until Redis answers), so the event still counts.
        assert event["item_id"] not in item_ids(client.get(f"/v1/users/{user}/recommendations"))
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"model": True, "store": True, "cache": False, "bus": True, "online": False}
        metrics = client.get("/metrics").text
        assert "recstack_cache_up 0.0" in metrics
        assert 'recstack_cache_requests_total{result="error"}' in metrics


def test_health_metrics_and_openapi(serve: Serve, world: World) -> None:
    with serve() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["ready"] and ready["model_version"] == 1 and ready["checks"]["cache"]
        user = str(world.interactions["user_id"].iloc[0])
        client.get(f"/v1/users/{user}/recommendations")
        metrics = client.get("/metrics").text
        route = 'route="/v1/users/{user_id}/recommendations"'
        assert f'recstack_http_requests_total{{method="GET",{route},status="200"}} 1.0' in metrics
        assert "recstack_http_request_duration_seconds_bucket" in metrics
        assert 'recstack_model_version{model="als"} 1.0' in metrics
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/users/{user_id}/recommendations", "/v1/items/{item_id}/similar", "/v1/events",
                "/v1/items/{item_id}", "/v1/users/{user_id}"} <= set(paths)


def test_a_champion_without_embeddings_is_served_through_its_own_scores(serve: Serve, world: World) -> None:
    from recstack.models.catalog import create

    knn = create("item_knn").fit(world.interactions[["user_id", "item_id", "event_type", "value"]])
    user = str(world.interactions["user_id"].iloc[3])
    seen = seen_by(world, user)
    with serve(source=FixedSource(knn, version=7)) as client:
        url = f"/v1/users/{user}/recommendations"
        before = client.get(url, params={"k": 10}).json()
        assert before["model"] == "item_knn" and before["model_version"] == 7
        top = [i["item_id"] for i in before["items"]]
        assert len(top) == 10 and not seen & set(top)
        like = {"user_id": user, "item_id": top[0], "event_type": "like"}
        assert client.post("/v1/events", json=like).status_code == 202
        after = item_ids(client.get(url, params={"k": 10}))
        assert top[0] not in after and len(after) == 10
        similar = client.get(f"/v1/items/{top[0]}/similar", params={"k": 5}).json()["items"]
        assert len(similar) == 5 and top[0] not in {i["item_id"] for i in similar}
        newcomer = client.get("/v1/users/someone-new/recommendations").json()
        assert newcomer["source"] == "trending"


def test_a_new_item_is_recommended_through_its_content(serve: Serve, world: World) -> None:
    liked = str(world.items["item_id"].iloc[0])
    source = world.items.iloc[0]
    twin = {
        "title": f"{source['title']} encore", "category": source["category"], "tags": list(source["tags"]),
        "description": source["description"],
    }
    with serve() as client:
        assert client.put("/v1/items/fresh-twin", json=twin).json()["created"]
        similar = client.get("/v1/items/fresh-twin/similar", params={"k": 5})
        assert "X-Recstack-Fallback" not in similar.headers
        items = similar.json()["items"]
        assert items[0]["item_id"] == liked and {i["reason"] for i in items} == {"content"}
        related = client.get(f"/v1/items/{liked}/similar", params={"k": 10}).json()["items"]
        assert {"item_id": "fresh-twin", "reason": "content"}.items() <= next(
            i for i in related if i["item_id"] == "fresh-twin"
        ).items()

        posted = client.post("/v1/events", json={"user_id": "content-fan", "item_id": liked, "event_type": "like"})
        assert posted.status_code == 202, posted.text
        picks = client.get("/v1/users/content-fan/recommendations", params={"k": 8}).json()["items"]
        assert {"item_id": "fresh-twin", "reason": "content"}.items() <= next(
            i for i in picks if i["item_id"] == "fresh-twin"
        ).items()
        assert liked not in [i["item_id"] for i in picks]


def test_odd_but_valid_records_are_stored_not_a_500(serve: Serve, world: World) -> None:
    item = str(world.items["item_id"].iloc[1])
    with serve() as client:
        assert client.put("/v1/users/odd", json={"created_at": -4.25e-160}).status_code == 200
        big = client.put(f"/v1/items/{item}", json={"attributes": {"n": [22436885245785112576]}})
        assert big.status_code == 200, big.text

