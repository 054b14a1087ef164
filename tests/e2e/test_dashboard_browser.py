"""The dashboard in a real browser: Playwright driving Debian's Chromium (`executable_path`: Playwright's own
browser download needs the internet) against a real server on MovieLens-100K, with two registered versions
(popularity v1, ALS v2 champion) in a real MLflow registry and API keys in the store.

Every page loads at 1280×800 and at phone width (390×844) with no console error, no failed request and no
horizontal scrolling; a screenshot of each is written under the test's output folder (paths printed), with
the page load times measured in the browser (`page-load-times.json` beside them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from conftest import unavailable
from integration.serving_support import running
from recstack.config import Settings
from recstack.ingestion import datasets as ds
from recstack.ingestion.pipeline import IngestOptions, ingest
from recstack.jobs.training import TrainingData, train_and_register
from recstack.registry import Registry
from recstack.serving.app import create_app
from recstack.serving.auth import KeyRing, Scope, issue_key
from recstack.serving.dashboard import queries
from recstack.storage import open_store

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
USER = "1"


def chromium_path() -> str:
    found = os.environ.get("RECSTACK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        unavailable("Chromium", "no chromium on PATH: apt-get install chromium (scripts/system-deps.sh does)")
    return str(found)


@dataclass
class Site:
    base: str
    keys: dict[str, str]
    registry: Registry
    out: Path
    item: str
    timings: dict[str, dict[str, float]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def site(movielens_100k: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("dashboard-home")
    out = tmp_path_factory.mktemp("dashboard-screens")
    url = f"sqlite:///{home / 'recstack.db'}"
    store = open_store(url)
    store.migrate()
    for kind, batches in ds.load("movielens-100k", movielens_100k).items():
        ingest(store, batches, "movielens-100k", IngestOptions(kind=kind))  # type: ignore[arg-type]
    bad = pd.DataFrame({"location": ["u.data line 7"], "reason": ["value: 9 is above 5"], "record": ["1\t2\t9\t0"]})
    store.quarantine("ml-bad", "interactions", "u.data", bad)
    settings = Settings(home=home, database_url=url, auth="keys", log_impressions=True)
    registry = Registry.from_settings(settings)
    interactions = pd.concat(list(store.iter_interactions()), ignore_index=True)
    data = TrainingData(interactions, store.read_items(), None)
    train_and_register(registry, data, "popularity", force=True)
    train_and_register(registry, data, "als", {"factors": 32, "iterations": 8, "num_threads": 1}, force=True)
    keys = {scope.label: issue_key(store, scope, f"{scope.label} key").token for scope in Scope}
    app = create_app(settings, reload_interval_s=0.5)
    with running(app) as base:
        if getattr(app.state, "keyring", None) is None:
            app.state.keyring = KeyRing(store)
        serve_traffic(base, keys, store)
        intake = app.state.intake  # one message the stream cannot decode: the dead-letter queue has a row
        intake.sender.publish(intake.topics.events, [(b"1", b"{not json")])
        deadline = time.monotonic() + 60
        while queries.dead_letters(store)[0] == 0:
            assert time.monotonic() < deadline, "the broken message never reached the dead-letter queue"
            time.sleep(0.2)
        yield Site(base, keys, registry, out, item=str(data.interactions["item_id"].iloc[0]))
    store.close()


def serve_traffic(base: str, keys: dict[str, str], store: Any) -> None:
    """Some API answers and feedback on them, so the live figures and the feedback rates have data."""
    with httpx.Client(base_url=base, timeout=30) as client:
        for user in range(2, 42):
            answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 10},
                                headers={"Authorization": f"Bearer {keys['read']}"})
            assert answer.status_code == 200, answer.text
            if user % 3 == 0:
                liked = answer.json()["items"][0]["item_id"]
                posted = client.post("/v1/events", json={"user_id": str(user), "item_id": liked, "event_type": "like"},
                                     headers={"Authorization": f"Bearer {keys['write']}"})
                assert posted.status_code == 202, posted.text
    deadline = time.monotonic() + 60
    now = int(time.time() * 1000)
    while store.feedback_rates(now - 3_600_000, now + 3_600_000, 3_600_000).empty:
        assert time.monotonic() < deadline, "the served answers were never logged as impressions"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright", "pip install -e '.[dev]'")
    path = chromium_path()
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        except Exception as exc:
            unavailable(f"Chromium at {path}", str(exc).splitlines()[0])
        yield launched
        launched.close()
    timings = site.out / "page-load-times.json"
    timings.write_text(json.dumps(site.timings, indent=2) + "\n")
    print(f"\npage load times: {timings}")


class Watched:
    """A page whose console errors, page errors and failed requests are collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    def clean(self) -> None:
        problems, self.problems = self.problems, []
        assert not problems, problems


def signed_in(browser: Any, site: Site, scope: str, viewport: dict[str, int]) -> Watched:
    context = browser.new_context(viewport=viewport, base_url=site.base)
    watched = Watched(context.new_page())
    page = watched.page
    page.goto("/dashboard/models")
    assert "/dashboard/login" in page.url
    page.fill("#key", site.keys[scope])
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/dashboard/models")
    watched.clean()
    return watched


def load_time_ms(page: Any) -> dict[str, float]:
    entry = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
        return {dom_content_loaded_ms: n.domContentLoadedEventEnd - n.startTime, load_ms: n.loadEventEnd - n.startTime,
                response_ms: n.responseEnd - n.requestStart, bytes: n.transferSize}; }""")
    return {k: round(float(v), 1) for k, v in entry.items()}


def test_every_page_loads_clean_at_desktop_and_phone_width(browser: Any, site: Site) -> None:
    pages = {
        "overview": "/dashboard",
        "models": "/dashboard/models",
        "user": f"/dashboard/users/{USER}?compare=1",
        "item": f"/dashboard/items/{site.item}",
        "quarantine": "/dashboard/quarantine",
        "stream": "/dashboard/stream",
        "search": "/dashboard/search?q=star+wars",
    }
    # Desktop first: its loads are the first visits (cold memo, version 1 loaded for the comparison).
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        watched = signed_in(browser, site, "admin", viewport)
        page = watched.page
        page.goto("/healthz", wait_until="load")  # the baseline: the same server's most trivial answer
        site.timings[f"baseline /healthz ({label})"] = load_time_ms(page)
        for name, path in pages.items():
            page.goto(path, wait_until="load")
            page.wait_for_load_state("networkidle")
            watched.clean()
            site.timings[f"{name} ({label})"] = load_time_ms(page)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {viewport}"
            shot = site.out / f"{name}-{label}.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot {name} ({label}): {shot}")
        page.context.close()
    charts = browser.new_page(base_url=site.base, extra_http_headers={"X-API-Key": site.keys["read"]})
    charts.goto("/dashboard")
    for svg in charts.query_selector_all("svg.chart"):
        labels = [t.text_content() for t in svg.query_selector_all("text")]
        assert len(labels) >= 6 and svg.query_selector("title") is not None
    drawn = " ".join(t.text_content() for t in charts.query_selector_all("svg.chart text, figcaption"))
    axes = ("events per week", "not drawn", "time (UTC)", "events per user", "item rank (most popular first)", "users")
    for axis in axes:
        assert axis in drawn, drawn
    assert charts.inner_text("#count-interactions") == "100k"
    charts.goto("/dashboard/search?q=star+wars")
    assert "Star Wars (1977)" in charts.inner_text("#item-results")
    charts.fill("#q", "1")
    charts.press("#q", "Enter")
    charts.wait_for_selector("#user-results")
    assert "1" in charts.eval_on_selector_all("#user-results a", "els => els.map(e => e.textContent)")
    charts.goto(f"/dashboard/items/{site.item}")
    assert charts.eval_on_selector_all("#similar li", "els => els.length") == 10
    assert re.search(r"\(\d{4}\)", charts.inner_text("#similar")) and charts.query_selector("#engagers td a")
    charts.goto("/dashboard/stream")
    dead = charts.inner_text("#dead-letters")
    assert "recstack.events" in dead and "{not json" in dead, dead
    charts.close()


def test_the_overview_follows_live_traffic(browser: Any, site: Site) -> None:
    watched = signed_in(browser, site, "read", DESKTOP)
    page = watched.page
    page.goto("/dashboard")
    before = page.inner_text("[data-field=window_s]")
    with httpx.Client(base_url=site.base, timeout=30) as client:
        for user in range(100, 130):
            answer = client.get(f"/v1/users/{user}/recommendations", headers={"X-API-Key": site.keys["read"]})
            assert answer.status_code == 200
    deadline = time.monotonic() + 30
    while page.inner_text("[data-field=window_s]") == before:  # the page polls every 5 s
        assert time.monotonic() < deadline, "the live figures never updated"
        page.wait_for_timeout(250)
    assert float(page.inner_text("[data-field=requests_per_s]")) > 0
    assert page.inner_text("[data-field=p50_ms]") not in {"", "–"}
    watched.clean()
    page.context.close()


def test_explorer_shows_titled_recommendations_and_a_test_event_changes_them(browser: Any, site: Site) -> None:
    watched = signed_in(browser, site, "admin", DESKTOP)
    page = watched.page
    page.goto(f"/dashboard/users/{USER}")
    history = page.inner_text("#history")
    assert "rating" in history and re.search(r"\(19\d\d\)", history), history[:300]
    before = page.eval_on_selector_all("#recommendations li", "els => els.map(e => e.dataset.item)")
    titles = page.eval_on_selector_all("#recommendations li a", "els => els.map(e => e.textContent)")
    assert len(before) == 10 and all(re.search(r"\(\d{4}\)$", t) for t in titles), titles
    assert "collaborative" in page.inner_text("#recommendations")
    page.select_option("#compare", "1")
    page.click("form.controls button[type=submit]")
    page.wait_for_selector("#comparison")
    assert "popularity" in page.inner_text("main")
    assert page.eval_on_selector_all("#comparison li", "els => els.length") == 10
    assert page.input_value("#event-item") == before[0]
    page.select_option("#event-type", "like")
    page.click("#post-event")
    page.wait_for_selector("#posted")
    after = page.eval_on_selector_all("#recommendations li", "els => els.map(e => e.dataset.item)")
    assert before[0] not in after and len(after) == 10 and after != before
    assert page.eval_on_selector_all("#comparison li", "els => els.length") == 10
    assert "like" in page.inner_text("#history tbody tr:first-child")
    watched.clean()
    page.context.close()


def test_promote_and_rollback_need_an_admin_key(browser: Any, site: Site) -> None:
    reader = signed_in(browser, site, "read", DESKTOP)
    page = reader.page
    assert page.is_disabled("tr[data-version='1'] button.promote")
    assert "v2" in page.inner_text("#feedback") and "%" in page.inner_text("#feedback")
    page.eval_on_selector("tr[data-version='1'] button.promote", "b => { b.disabled = false; }")
    page.on("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("tr[data-version='1'] button.promote")
    assert "Not allowed" in page.inner_text("h1") and "admin" in page.inner_text("main")
    reader.problems.clear()  # the refusal is the 403 this test expects
    champion = site.registry.champion()
    assert champion is not None and champion.version == 2
    page.context.close()

    admin = signed_in(browser, site, "admin", DESKTOP)
    page = admin.page
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-version='1'] button.promote")
    page.wait_for_selector("#done")
    assert "v1 is the champion" in page.inner_text("#done")
    assert page.inner_text("#serving") == "popularity v1"
    page.click("#rollback")
    page.wait_for_selector("#done")
    assert "rolled back: v2 is the champion" in page.inner_text("#done")
    assert page.inner_text("#serving") == "als v2"
    champion = site.registry.champion()
    assert champion is not None and champion.version == 2
    admin.clean()
    page.context.close()
