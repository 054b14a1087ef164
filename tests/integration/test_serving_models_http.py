"""Model promotion and rollback over HTTP (admin scope) against the real MLflow registry: the answering
server switches before it answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from integration.serving_support import World, load, running, train
from recstack.config import Settings
from recstack.models.base import Recommender
from recstack.registry import Registry
from recstack.serving.app import create_app
from recstack.serving.auth import Scope, issue_key
from recstack.storage import open_store


def test_admins_promote_and_roll_back_over_http(
    tmp_path: Path, sqlite_url: str, world: World, als: Recommender[Any]
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    load(store, world)
    admin, writer = (issue_key(store, scope).token for scope in (Scope.ADMIN, Scope.WRITE))
    store.close()
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", "http-models", cache_dir=tmp_path / "models")
    first = registry.log(als, metrics={"ndcg@10": 0.2})
    assert registry.promote(first.version)
    second = registry.log(train(world, seed=2, factors=8), metrics={"ndcg@10": 0.1})
    settings = Settings(home=tmp_path, database_url=sqlite_url, auth="keys")
    url = f"/v1/users/{world.interactions['user_id'].iloc[0]}/recommendations"
    with running(create_app(settings, model_source=registry, reload_interval_s=60)) as base, \
            httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {admin}"}) as client:
        listed = client.get("/v1/models").json()
        assert {(v["version"], v["champion"]) for v in listed} == {(first.version, True), (second.version, False)}
        refused = client.post(f"/v1/models/{second.version}/promote", headers={"Authorization": f"Bearer {writer}"})
        assert refused.status_code == 403
        kept = client.post(f"/v1/models/{second.version}/promote")
        assert kept.status_code == 200 and kept.json()["changed"] is False, "it does not beat the champion"
        forced = client.post(f"/v1/models/{second.version}/promote", params={"force": "true"})
        assert forced.status_code == 200 and forced.json()["changed"] is True
        assert forced.json()["champion"]["version"] == second.version
        assert client.get(url).headers["X-Model-Version"] == str(second.version), "switched before answering"
        back = client.post("/v1/models/rollback")
        assert back.status_code == 200 and back.json()["champion"]["version"] == first.version
        assert client.get(url).headers["X-Model-Version"] == str(first.version)
        assert client.post("/v1/models/999/promote").status_code == 404
