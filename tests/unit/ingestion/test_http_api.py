"""The HTTP JSON API source against a real local server: paging, retries, Retry-After, rate limit, errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.ingestion import IngestOptions, RawBatch, ingest
from recstack.ingestion.http_api import ApiError, ApiOptions, TokenBucket, read_api, retry_after_s
from recstack.schema import LOCATION
from recstack.storage import open_store

CATALOGUE = [
    {"id": f"v{n}", "name": f"Video {n}", "genre": "drama" if n % 2 else "comedy",
     "published": f"2024-03-0{n}T12:00:00Z", "stats": {"views": n * 10}}
    for n in range(1, 8)
]
FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01}


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


Reply = tuple[int, dict[str, str], Any]  # status, headers, body (bytes as is; anything else as JSON)


@dataclass
class FakeApi:
    """A scripted API on 127.0.0.1: `respond` answers every GET; every request is recorded."""

    url: str
    respond: Callable[[Request], Reply] = lambda request: (200, {}, [])
    requests: list[Request] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        api = self.server.api
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        request = Request(parts.path, query, dict(self.headers.items()), time.monotonic())
        api.requests.append(request)
        status, headers, body = api.respond(request)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    api: FakeApi


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api = FakeApi(url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server.api
    server.shutdown()
    server.server_close()


def numbered_pages(request: Request) -> Reply:
    """?page=N&per_page=M over CATALOGUE, records under data.items."""
    page, per_page = int(request.query["page"]), int(request.query["per_page"])
    return 200, {}, {"data": {"items": CATALOGUE[(page - 1) * per_page : page * per_page]}, "total": 7}


def collect(url: str, options: ApiOptions) -> tuple[pd.DataFrame, pd.DataFrame, list[RawBatch]]:
    batches = list(read_api(url, options))
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    broken = pd.concat([b.broken for b in batches], ignore_index=True)
    return frame, broken, batches


def ids(batches: list[RawBatch]) -> list[str]:
    return [i for b in batches for i in b.frame["id"]]


def test_page_number_paging_reads_every_page_and_stops_on_an_empty_one(api: FakeApi) -> None:
    api.respond = numbered_pages
    options = ApiOptions(records_path="data.items", per_page=3, params={"lang": "en"}, auth="Bearer s3cret")
    frame, broken, batches = collect(f"{api.url}/videos", options)
    assert frame["id"].tolist() == [v["id"] for v in CATALOGUE]
    assert [len(b.frame) for b in batches] == [3, 3, 1]
    assert frame[LOCATION].tolist()[2:5] == ["page 1, record 3", "page 2, record 1", "page 2, record 2"]
    assert broken.empty
    assert [(r.query["page"], r.query["per_page"], r.query["lang"]) for r in api.requests] == [
        ("1", "3", "en"), ("2", "3", "en"), ("3", "3", "en"), ("4", "3", "en"),
    ]
    assert {r.headers["Authorization"] for r in api.requests} == {"Bearer s3cret"}
    assert frame["stats"].iloc[0] == {"views": 10}


def test_cursor_paging_follows_the_cursor_until_there_is_none(api: FakeApi) -> None:
    def respond(request: Request) -> Reply:
        offset = int(request.query.get("after", "0"))
        nxt = str(offset + 3) if offset + 3 < len(CATALOGUE) else None
        return 200, {}, {"results": CATALOGUE[offset : offset + 3], "meta": {"next_cursor": nxt}}

    api.respond = respond
    options = ApiOptions(records_path="results", paging="cursor", cursor_path="meta.next_cursor",
                         cursor_param="after", per_page=None)
    _, _, batches = collect(f"{api.url}/videos?sort=new", options)
    assert ids(batches) == [v["id"] for v in CATALOGUE]
    assert [r.query for r in api.requests] == [
        {"sort": "new"}, {"sort": "new", "after": "3"}, {"sort": "new", "after": "6"},
    ]


@pytest.mark.parametrize("where", ["body", "link header"])
def test_next_url_paging_follows_relative_links_in_the_body_or_link_header(api: FakeApi, where: str) -> None:
    def respond(request: Request) -> Reply:
        offset = int(request.query.get("offset", "0"))
        body: dict[str, Any] = {"items": CATALOGUE[offset : offset + 4]}
        headers: dict[str, str] = {}
        if offset + 4 < len(CATALOGUE):
            link = f"/v2/videos?offset={offset + 4}&limit=4"
            if where == "body":
                body["links"] = {"next": link}
            else:
                headers["Link"] = f'<{link}>; rel="next"'
        return 200, headers, body

    api.respond = respond
    options = ApiOptions(records_path="items", paging="next", next_path="links.next", per_page=4,
                         per_page_param="limit")
    _, _, batches = collect(f"{api.url}/v2/videos", options)
    assert ids(batches) == [v["id"] for v in CATALOGUE]
    assert [r.query for r in api.requests] == [{"limit": "4"}, {"offset": "4", "limit": "4"}]


def test_a_503_is_retried_and_then_succeeds(api: FakeApi) -> None:
    def respond(request: Request) -> Reply:
        if len(api.requests) == 1:
            return 503, {}, {"error": "busy"}
        return 200, {}, CATALOGUE[:2]

    api.respond = respond
    _, _, batches = collect(api.url, ApiOptions(paging="none", **FAST))
    assert ids(batches) == ["v1", "v2"]
    assert len(api.requests) == 2


def test_a_429_waits_as_long_as_retry_after_says(api: FakeApi) -> None:
    def respond(request: Request) -> Reply:
        if len(api.requests) == 1:
            return 429, {"Retry-After": "1"}, {"error": "slow down"}
        return 200, {}, CATALOGUE[:1]

    api.respond = respond
    _, _, batches = collect(api.url, ApiOptions(paging="none", **FAST))
    assert ids(batches) == ["v1"]
    assert api.requests[1].at - api.requests[0].at >= 1.0


def test_a_retry_after_longer_than_allowed_fails_at_once(api: FakeApi) -> None:
    api.respond = lambda request: (429, {"Retry-After": "3600"}, {})
    with pytest.raises(ApiError, match="asks to wait 3600s") as info:
        list(read_api(api.url, ApiOptions(paging="none", max_retry_after_s=60)))
    assert info.value.status == 429
    assert len(api.requests) == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_s("7") == 7.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


def test_the_rate_limit_spaces_requests(api: FakeApi) -> None:
    api.respond = numbered_pages
    options = ApiOptions(records_path="data.items", per_page=2, rate_limit=20.0, burst=1)
    start = time.monotonic()
    _, _, batches = collect(api.url, options)
    elapsed = time.monotonic() - start
    assert len(api.requests) == 5  # four pages and the empty one
    assert elapsed >= 4 / 20.0
    assert ids(batches) == [v["id"] for v in CATALOGUE]


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=4.0, burst=2, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == [0.0, 0.0, 0.25, 0.25, 0.25]
    now[0] += 10.0  # a long pause refills only up to the burst
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.25]


def test_a_page_that_is_not_json_is_reported_with_its_url_after_earlier_pages(api: FakeApi) -> None:
    def respond(request: Request) -> Reply:
        if request.query["page"] == "2":
            return 200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"
        return numbered_pages(request)

    api.respond = respond
    seen: list[str] = []
    with pytest.raises(ApiError) as info:
        for batch in read_api(f"{api.url}/videos", ApiOptions(records_path="data.items", per_page=3)):
            seen += batch.frame["id"].tolist()
    assert seen == ["v1", "v2", "v3"]
    message = str(info.value)
    assert f"{api.url}/videos?page=2&per_page=3" in message
    assert "200" in message and "not JSON" in message and "maintenance" in message
    assert info.value.status == 200 and "page=2" in info.value.url


def test_a_page_failing_after_all_retries_names_the_url_and_status(api: FakeApi) -> None:
    def respond(request: Request) -> Reply:
        if request.query["page"] == "2":
            return 500, {}, {"error": "boom"}
        return numbered_pages(request)

    api.respond = respond
    seen: list[str] = []
    with pytest.raises(ApiError, match=r"page=2.*failed after 3 attempts; last: HTTP 500") as info:
        options = ApiOptions(records_path="data.items", per_page=3, max_retries=2, **FAST)
        for batch in read_api(api.url, options):
            seen += batch.frame["id"].tolist()
    assert seen == ["v1", "v2", "v3"]
    assert info.value.status == 500
    assert [r.query["page"] for r in api.requests] == ["1", "2", "2", "2"]


def test_client_errors_are_not_retried(api: FakeApi) -> None:
    api.respond = lambda request: (401, {}, {"error": "bad token"})
    with pytest.raises(ApiError, match=r"401.*bad token") as info:
        list(read_api(api.url, ApiOptions(**FAST)))
    assert info.value.status == 401
    assert len(api.requests) == 1


def test_an_unreachable_server_fails_after_retries_without_a_status() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ApiError, match="failed after 2 attempts; last: ConnectError") as info:
        list(read_api(f"http://127.0.0.1:{port}/items", ApiOptions(max_retries=1, **FAST)))
    assert info.value.status is None


def test_misconfigured_paths_and_urls_are_reported(api: FakeApi) -> None:
    api.respond = lambda request: (200, {}, {"data": {"things": []}})
    with pytest.raises(ApiError, match=r"no data\.items in the body"):
        list(read_api(api.url, ApiOptions(records_path="data.items")))
    with pytest.raises(ConfigurationError, match="not an http"):
        list(read_api("ftp://example.org/items"))
    with pytest.raises(ConfigurationError, match="paging"):
        ApiOptions(paging="offset")  # type: ignore[arg-type]


def test_an_api_that_ignores_the_page_parameter_is_not_read_forever(api: FakeApi) -> None:
    api.respond = lambda request: (200, {}, CATALOGUE[:2])
    with pytest.raises(ApiError, match="same records as the page before"):
        list(read_api(api.url, ApiOptions()))
    assert len(api.requests) == 2


def test_nested_fields_can_be_flattened_for_mapping(api: FakeApi) -> None:
    api.respond = lambda request: (200, {}, CATALOGUE[:1])
    frame, _, _ = collect(api.url, ApiOptions(paging="none", flatten=True))
    assert frame["stats.views"].tolist() == [10]


def items_with_defects(request: Request) -> Reply:
    """Seven good items over three pages, one with a bad date and one that is not an object."""
    page = int(request.query["page"])
    records: list[Any] = [dict(v) for v in CATALOGUE[(page - 1) * 3 : page * 3]]
    if page == 2:
        records[1]["published"] = "last tuesday"
    if page == 3:
        records.append("not-an-object")
    return 200, {}, {"data": {"items": records}}


MAPPING = {"id": "item_id", "name": "title", "genre": "category", "published": "created_at"}


def test_api_items_are_ingested_with_bad_records_quarantined(api: FakeApi, sqlite_url: str) -> None:
    api.respond = items_with_defects
    store = open_store(sqlite_url)
    store.migrate()
    source = f"{api.url}/videos"
    run = ingest(store, read_api(source, ApiOptions(records_path="data.items", per_page=3)), source,
                 IngestOptions(kind="items", mapping=MAPPING))
    assert (run.read, run.accepted, run.rejected) == (8, 6, 2)
    items = store.read_items().set_index("item_id")
    assert sorted(items.index) == ["v1", "v2", "v3", "v4", "v6", "v7"]
    assert items.loc["v1", "title"] == "Video 1" and items.loc["v1", "category"] == "drama"
    assert items.loc["v1", "attributes"] == {"stats": {"views": 10}}
    quarantined = store.list_quarantine(run_id=run.run_id).sort_values("location")
    assert quarantined["location"].tolist() == ["page 2, record 2", "page 3, record 2"]
    assert quarantined["reason"].tolist() == [
        "created_at 'last tuesday' is not a valid time", "not a JSON object",
    ]
    assert quarantined["source"].unique().tolist() == [source]
    store.close()


def test_records_before_a_failing_page_stay_in_the_store(api: FakeApi, sqlite_url: str) -> None:
    def respond(request: Request) -> Reply:
        if request.query["page"] == "3":
            return 200, {}, b"not json"
        return numbered_pages(request)

    api.respond = respond
    store = open_store(sqlite_url)
    store.migrate()
    with pytest.raises(ApiError, match="page=3"):
        ingest(store, read_api(api.url, ApiOptions(records_path="data.items", per_page=3)), api.url,
               IngestOptions(kind="items", mapping=MAPPING))
    assert sorted(store.read_items()["item_id"]) == ["v1", "v2", "v3", "v4", "v5", "v6"]
    store.close()
