"""README promises of the API not covered elsewhere: `/similar` without a champion, and idempotent events
(a re-posted event and an event without an id are stored once)."""

from __future__ import annotations

from pathlib import Path

import httpx

from integration.serving_support import World, load, running
from recstack.config import Settings
from recstack.serving.app import create_app
from recstack.storage import open_store


def test_similar_without_a_champion_and_idempotent_events(sqlite_url: str, world: World, tmp_path: Path) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    load(store, world)
    before = store.counts()["interactions"]
    store.close()
    app = create_app(Settings(home=tmp_path, database_url=sqlite_url, auth="none"), model_source=None)
    with running(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        item = str(world.items["item_id"].iloc[0])
        similar = client.get(f"/v1/items/{item}/similar", params={"k": 5})
        # no champion: similar items still come, from the items' content, and say so
        assert similar.status_code == 200, similar.text
        body = similar.json()
        assert body["model_version"] is None and len(body["items"]) == 5
        assert {i["reason"] for i in body["items"]} == {"content"}
        assert item not in [i["item_id"] for i in body["items"]]

        user, other = str(world.users["user_id"].iloc[0]), str(world.items["item_id"].iloc[1])
        with_id = {"event_id": "once-1", "user_id": user, "item_id": item, "event_type": "like"}
        without_id = {"user_id": user, "item_id": other, "event_type": "view", "timestamp": 1_740_823_620_000}
        for body in (with_id, with_id, without_id, without_id, {"events": [with_id, without_id]}):
            assert client.post("/v1/events", json=body).status_code == 202
    store = open_store(sqlite_url)
    try:
        assert store.counts()["interactions"] == before + 2
    finally:
        store.close()
