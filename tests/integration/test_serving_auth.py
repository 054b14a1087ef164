"""The API's front door over real HTTP: keys and scopes on every route (the fast recommendation path
included), key management, limits, security headers, CORS, protected /metrics and /docs, and no internal
detail in any answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.serving_support import FixedSource, World, running
from recstack.config import Settings
from recstack.models.base import Recommender
from recstack.serving.app import create_app
from recstack.serving.auth import Scope, issue_key
from recstack.storage import Store

Serve = Callable[..., AbstractContextManager[tuple[httpx.Client, dict[str, str]]]]


@pytest.fixture
def serve(tmp_path: Path, loaded: Store, als: Recommender[Any]) -> Serve:
    """A server with keys on; yields a client without a key and one token per scope."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
        tokens = {scope.label: issue_key(loaded, scope, scope.label).token for scope in Scope}
        settings = Settings(home=tmp_path, database_url=loaded.url, auth="keys", **overrides)
        with running(create_app(settings, model_source=FixedSource(als), store=loaded)) as base, \
                httpx.Client(base_url=base, timeout=30) as client:
            yield client, tokens

    return start


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_v1_route_needs_a_key_of_its_scope(serve: Serve, world: World) -> None:
    user, item = str(world.interactions["user_id"].iloc[0]), str(world.items["item_id"].iloc[0])
    event = {"user_id": user, "item_id": item, "event_type": "like"}
    routes: list[tuple[str, str, dict[str, Any], Scope]] = [
        ("GET", f"/v1/users/{user}/recommendations", {}, Scope.READ),  # the fast path
        ("GET", f"/v1/users/{user}/recommendations", {"params": {"k": 3, "category": "x"}}, Scope.READ),
        ("GET", f"/v1/users/{user}/recommendations", {"params": {"k": "many"}}, Scope.READ),  # the declared route
        ("GET", f"/v1/items/{item}/similar", {}, Scope.READ),
        ("POST", "/v1/events", {"json": event}, Scope.WRITE),
        ("PUT", f"/v1/items/{item}", {"json": {"title": "t"}}, Scope.WRITE),
        ("PUT", f"/v1/users/{user}", {"json": {"attributes": {"a": 1}}}, Scope.WRITE),
        ("GET", "/v1/keys", {}, Scope.ADMIN),
        ("GET", "/v1/models", {}, Scope.ADMIN),
    ]
    with serve() as (client, tokens):
        for method, url, options, needed in routes:
            missing = client.request(method, url, **options)
            assert missing.status_code == 401, (method, url, missing.text)
            assert missing.headers["WWW-Authenticate"] == 'Bearer realm="recstack"'
            assert "API key" in missing.json()["detail"]
            wrong = client.request(method, url, headers=bearer("rk_nope_nope"), **options)
            assert wrong.status_code == 401 and wrong.json() == {"detail": "the API key is unknown or revoked"}
            for scope in Scope:
                answer = client.request(method, url, headers={"X-API-Key": tokens[scope.label]}, **options)
                if scope < needed:
                    assert answer.status_code == 403, (method, url, scope, answer.text)
                    assert f"needs {needed.label}" in answer.json()["detail"]
                else:
                    assert answer.status_code in {200, 202, 404, 422}, (method, url, scope, answer.text)
        for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            assert client.get(open_path).status_code == 200, open_path


def test_keys_are_managed_over_http_and_a_revoked_key_is_refused_at_once(serve: Serve, world: World) -> None:
    url = f"/v1/users/{world.interactions['user_id'].iloc[0]}/recommendations"
    with serve() as (client, tokens):
        admin = bearer(tokens["admin"])
        created = client.post("/v1/keys", json={"scope": "read", "name": "web"}, headers=admin)
        assert created.status_code == 201
        body = created.json()
        assert body["scope"] == "read" and body["name"] == "web" and body["key"].startswith(f"rk_{body['id']}_")
        assert client.get(url, headers=bearer(body["key"])).status_code == 200
        listed = client.get("/v1/keys", headers=admin).json()
        assert {k["id"] for k in listed} >= {body["id"]} and all("key" not in k for k in listed)
        revoked = client.delete(f"/v1/keys/{body['id']}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert client.get(url, headers=bearer(body["key"])).status_code == 401
        assert client.delete(f"/v1/keys/{body['id']}", headers=admin).status_code == 404
        own = client.get("/v1/keys", headers=admin).json()
        own_id = next(k["id"] for k in own if k["name"] == "admin")
        assert client.delete(f"/v1/keys/{own_id}", headers=admin).status_code == 409
        assert client.post("/v1/keys", json={"scope": "root"}, headers=admin).status_code == 422


def test_limits_answer_413_422_and_429(serve: Serve, world: World) -> None:
    user, item = str(world.interactions["user_id"].iloc[0]), str(world.items["item_id"].iloc[0])
    with serve(max_body_bytes=2_048, max_events_per_batch=5, max_k=50, rate_limit_per_s=1.0,
               rate_limit_burst=40) as (client, tokens):
        writer = bearer(tokens["write"])
        big = client.post("/v1/events", content=b"[" + b" " * 4_000 + b"]", headers=writer)
        assert big.status_code == 413 and big.json()["detail"] == "body: at most 2048 bytes"

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b" " * 1_000

        chunked = client.post("/v1/events", content=chunks(), headers={**writer, "Content-Type": "application/json"})
        assert chunked.status_code == 413, "a body without Content-Length is cut off at the limit too"
        events = [{"user_id": user, "item_id": item, "event_type": "view", "event_id": f"b{i}"} for i in range(6)]
        batch = client.post("/v1/events", json={"events": events}, headers=writer)
        assert batch.status_code == 422 and "at most 5 events" in batch.json()["detail"]
        reader = bearer(tokens["read"])
        too_many = client.get(f"/v1/users/{user}/recommendations", params={"k": 51}, headers=reader)
        assert too_many.status_code == 422 and "query.k" in too_many.json()["detail"]
        long_id = client.get(f"/v1/users/{'u' * 257}/recommendations", headers=reader)
        assert long_id.status_code == 422 and "user_id" in long_id.json()["detail"]
        statuses = [client.get(f"/v1/users/{user}/recommendations", headers=reader) for _ in range(60)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1
        assert limited[0].json()["detail"].startswith("rate limit exceeded")
        assert client.get(f"/v1/users/{user}/recommendations", headers=writer).status_code == 200, \
            "another key has its own bucket"


def test_answers_carry_security_headers_and_no_internal_detail(serve: Serve) -> None:
    with serve() as (client, tokens):
        for response in (client.get("/healthz"), client.get("/v1/users/u/recommendations"), client.get("/docs")):
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in client.get("/healthz").headers["Content-Security-Policy"]
        preflight = client.options("/v1/events", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers, "CORS is off unless configured"
        bad = client.post("/v1/events", content=b"{\"user_id\": ", headers=bearer(tokens["write"]))
        assert bad.status_code == 422 and bad.json() == {"detail": "body: not valid JSON"}
        odd = client.put("/v1/users/u1", json={"created_at": -2.5606128452537724e-142}, headers=bearer(tokens["write"]))
        assert odd.status_code in {200, 422} and "Traceback" not in odd.text
        assert client.delete("/v1/events").headers["Allow"] == "POST"


def test_cors_metrics_and_docs_follow_the_settings(serve: Serve) -> None:
    with serve(cors_origins=["https://app.example"], protect_metrics=True, protect_docs=True) as (client, tokens):
        preflight = client.options("/v1/events", headers={"Origin": "https://app.example",
                                                           "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=bearer(tokens["write"])).status_code == 403, path
            assert client.get(path, headers=bearer(tokens["admin"])).status_code == 200, path
        assert client.get("/healthz").status_code == 200


def test_auth_none_must_be_set_and_then_everyone_is_admin(tmp_path: Path, loaded: Store) -> None:
    assert Settings(home=tmp_path).auth == "keys"
    settings = Settings(home=tmp_path, database_url=loaded.url, auth="none")
    with running(create_app(settings, model_source=None, store=loaded)) as base:
        assert httpx.get(f"{base}/v1/keys").status_code == 200
        document = httpx.get(f"{base}/openapi.json").json()
        assert "securitySchemes" not in document["components"]
