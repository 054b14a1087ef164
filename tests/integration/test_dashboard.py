"""The dashboard over HTTP on a real server and store (SQLite and PostgreSQL): every page answers, access
follows the key's scope, forms need their CSRF token, a test event changes the answer, the CSV export holds
the quarantine, odd input never gets a 500.

The browser-level checks (console errors, screenshots, MovieLens titles) are in tests/e2e/test_dashboard_browser.py.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from integration.serving_support import FixedSource, World, load, running
from recstack.config import Settings
from recstack.models.base import Recommender
from recstack.serving.app import create_app
from recstack.serving.auth import KeyRing, Scope, issue_key
from recstack.serving.dashboard import queries
from recstack.storage import Store, open_store

PAGES = ("/dashboard", "/dashboard/models", "/dashboard/quarantine", "/dashboard/stream", "/dashboard/search?q=1")


@pytest.fixture
def store(store_url: str, world: World) -> Iterator[Store]:
    store = open_store(store_url)
    store.migrate()
    load(store, world)
    bad = pd.DataFrame({"location": ["row 7"], "reason": ["value: not a number"], "record": ['{"value": "x"}']})
    store.quarantine("run-csv", "interactions", "events.csv", bad)
    yield store
    store.close()


@contextmanager
def dashboard(store: Store, store_url: str, tmp_path: Path, model: Recommender[Any], auth: str) -> Iterator[
        tuple[httpx.Client, Any]]:
    settings = Settings(home=tmp_path, database_url=store_url, auth=auth)  # type: ignore[arg-type]
    app = create_app(settings, model_source=FixedSource(model))
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        if auth == "keys" and getattr(app.state, "keyring", None) is None:
            app.state.keyring = KeyRing(store)
        yield client, app


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_every_page_answers_without_auth(store: Store, store_url: str, tmp_path: Path, als: Recommender[Any],
                                         world: World) -> None:
    user = str(world.interactions["user_id"].iloc[0])
    item = str(world.items["item_id"].iloc[0])
    with dashboard(store, store_url, tmp_path, als, "none") as (client, _):
        for path in (*PAGES, f"/dashboard/users/{user}", f"/dashboard/items/{item}"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            assert "text/html" in response.headers["content-type"]
            assert "script-src 'self'" in response.headers["content-security-policy"]
        assert client.get("/dashboard/static/dashboard.css").status_code == 200
        assert client.get("/dashboard/items/no-such-item").status_code == 404
        assert client.get("/dashboard/users/u1?k=0").status_code == 422
        live = client.get("/dashboard/live.json").json()
        assert {"requests_per_s", "p50_ms", "p99_ms", "cache_hit_rate", "errors_total", "champion"} <= set(live)
        assert live["champion"] == "als v1"
        assert "/dashboard" not in client.get("/openapi.json").text


def test_a_test_event_changes_the_answer_and_needs_csrf(store: Store, store_url: str, tmp_path: Path,
                                                        als: Recommender[Any], world: World) -> None:
    user = str(world.interactions["user_id"].iloc[0])
    with dashboard(store, store_url, tmp_path, als, "none") as (client, _):
        page = client.get(f"/dashboard/users/{user}")
        before = re.findall(r'<li data-item="([^"]+)"', page.text.split('id="recommendations"')[1])
        assert len(before) == 10
        form = {"user_id": user, "item_id": before[0], "event_type": "like"}
        refused = client.post("/dashboard/events", data=form)
        assert refused.status_code == 403 and "CSRF" in refused.text
        posted = client.post("/dashboard/events", data={**form, "csrf": csrf_of(page.text)})
        assert posted.status_code == 303
        after_page = client.get(posted.headers["location"])
        after = re.findall(r'<li data-item="([^"]+)"', after_page.text.split('id="recommendations"')[1])
        assert before[0] not in after and len(after) == 10
        assert before[0] in after_page.text.split('id="history"')[1].split("</table>")[0]
        events = queries.event_series(store)  # today's test event lies far after the synthetic data
        assert events.outside >= 1 and events.end_ms < int(time.time() * 1000) - 86_400_000
        assert sum(n for points in events.series.values() for _, n in points) == len(world.interactions) - (
            events.outside - 1)
        bad = client.post("/dashboard/events", data={**form, "event_type": "nope", "csrf": csrf_of(page.text)})
        assert bad.status_code == 422 and "event_type" in bad.text
        assert client.post("/dashboard/events", content=b"\xff", headers={
            "content-type": "application/x-www-form-urlencoded"}).status_code == 422


def test_scopes_sessions_and_header_keys(store: Store, store_url: str, tmp_path: Path,
                                         als: Recommender[Any], world: World) -> None:
    read, write = issue_key(store, Scope.READ, "reader").token, issue_key(store, Scope.WRITE, "writer").token
    user = str(world.interactions["user_id"].iloc[0])
    with dashboard(store, store_url, tmp_path, als, "keys") as (client, _):
        first = client.get("/dashboard/models")
        assert first.status_code == 303 and first.headers["location"].startswith("/dashboard/login?next=")
        assert client.get("/dashboard/live.json").status_code == 401
        assert client.get("/dashboard", headers={"Authorization": f"Bearer {read}"}).status_code == 200
        assert client.get("/dashboard", headers={"X-API-Key": "rk_nope_nope"}).status_code == 401
        login = client.get("/dashboard/login")
        wrong = client.post("/dashboard/login", data={"key": "rk_x_y", "csrf": csrf_of(login.text)})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert client.post("/dashboard/login", data={"key": read}).status_code == 403
        signed = client.post("/dashboard/login", data={"key": read, "csrf": csrf_of(login.text),
                                                       "next": "https://evil.example/"})
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and read.lower() not in cookie
        page = client.get(f"/dashboard/users/{user}")
        assert page.status_code == 200 and "reader · read" in page.text
        refused = client.post("/dashboard/events", data={"user_id": user, "item_id": "i1", "csrf": csrf_of(page.text)})
        assert refused.status_code == 403 and "write" in refused.text
        client.post("/dashboard/logout", data={"csrf": csrf_of(page.text)})
        client.cookies.clear()
        assert client.get("/dashboard").status_code == 303
        headers = {"Authorization": f"Bearer {write}"}
        item = str(world.items["item_id"].iloc[3])
        by_header = client.post("/dashboard/events", data={"user_id": user, "item_id": item}, headers=headers)
        assert by_header.status_code == 303


def test_quarantine_filters_and_exports_csv(store: Store, store_url: str, tmp_path: Path,
                                            als: Recommender[Any]) -> None:
    with dashboard(store, store_url, tmp_path, als, "none") as (client, _):
        page = client.get("/dashboard/quarantine", params={"reason": "NOT A NUMBER"})
        assert page.status_code == 200 and "events.csv" in page.text and "row 7" in page.text
        assert "row 7" not in client.get("/dashboard/quarantine", params={"reason": "100%_"}).text
        exported = client.get("/dashboard/quarantine.csv", params={"text": "run-csv"})
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [(r["location"], r["reason"], r["source"]) for r in rows] == [
            ("row 7", "value: not a number", "events.csv")]


def test_odd_input_never_gets_a_server_error(store: Store, store_url: str, tmp_path: Path,
                                             als: Recommender[Any]) -> None:
    with dashboard(store, store_url, tmp_path, als, "none") as (client, _):
        csrf = csrf_of(client.get("/dashboard/users/u1").text)
        gets = ["/dashboard/users/%00", "/dashboard/users/" + "x" * 300, "/dashboard/items/%00",
                "/dashboard/users/a%2Fb/c", "/dashboard/items/" + "%C3%A9" * 10, "/dashboard/search?q=%00%25_",
                "/dashboard/search?q=" + "y" * 300, "/dashboard/quarantine?limit=abc", "/dashboard/quarantine?kind=%00",
                "/dashboard/users/u1?compare=99", "/dashboard/users/u1?compare=-1", "/dashboard/users/u1?k=1e9",
                "/dashboard/login?next=//evil.example", "/dashboard/models?done=%3Cscript%3E",
                "/dashboard/quarantine.csv?reason=%25"]
        for path in gets:
            response = client.get(path)
            assert response.status_code < 500, (path, response.status_code, response.text[:300])
            assert "<script>" not in response.text.replace('<script src="/dashboard/static/dashboard.js"', "")
        posts: list[tuple[str, Any]] = [
            ("/dashboard/models/promote", {"csrf": csrf, "version": "999"}),
            ("/dashboard/models/promote", {"csrf": csrf, "version": "x"}),
            ("/dashboard/models/rollback", {"csrf": csrf}),
            ("/dashboard/events", {"csrf": csrf}),
            ("/dashboard/events", {"csrf": csrf, "user_id": "u1", "item_id": "x" * 300}),
            ("/dashboard/events", {"csrf": csrf, "user_id": "u1", "item_id": "i1", "value": "abc"}),
            ("/dashboard/events", {"csrf": csrf, "user_id": "u1", "item_id": "i1", "event_type": "rating",
                                   "value": "1e308"}),
            ("/dashboard/login", {"key": "x"}),
            ("/dashboard/logout", {}),
        ]
        for path, form in posts:
            response = client.post(path, data=form)
            assert response.status_code < 500, (path, form, response.status_code, response.text[:300])
        huge = client.post("/dashboard/events", content=b"a=" + b"b" * 20_000,
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert huge.status_code in {413, 422}
        assert client.post("/dashboard/events", json={"user_id": "u1"}).status_code == 422
