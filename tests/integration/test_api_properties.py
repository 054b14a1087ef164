"""Property-based: any JSON value in any field of an API record (event, item, user) and any query string
gets an answer that is a success or a 4xx in the error schema naming the field, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recstack.config import Settings
from recstack.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, USER_COLUMNS
from recstack.serving.app import create_app

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])
FIELDS = {*INTERACTION_COLUMNS, *ITEM_COLUMNS, *USER_COLUMNS, "preferences", "events", "body", "query", "path",
          "created_at", "k", "category", "exclude"}

json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
              st.sampled_from(["2026-01-01T00:00:00Z", "1700000000000", "", "\x00", "like", "-2.5e-142"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def body(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={f: json_values for f in fields})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home: Path = tmp_path_factory.mktemp("api-properties")
    settings_ = Settings(home=home, auth="none", log_impressions=False)
    with TestClient(create_app(settings_, model_source=None), raise_server_exceptions=False) as test_client:
        yield test_client


def names_a_field(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail
        if response.status_code == 422:
            first = detail.replace("'", " ").split(":")[0].split(" ")[0].split(".")
            assert first[0] in FIELDS or (len(first) > 1 and first[1] in FIELDS), detail


@SETTINGS
@given(event=body(INTERACTION_COLUMNS))
def test_any_event_field(client: TestClient, event: dict[str, Any]) -> None:
    answer = client.post("/v1/events", json=event)
    assert answer.status_code in {202, 422}, answer.text
    names_a_field(answer)


@SETTINGS
@given(events=st.lists(body(INTERACTION_COLUMNS), min_size=1, max_size=4), wrapped=st.booleans())
def test_any_event_field_in_a_batch(client: TestClient, events: list[dict[str, Any]], wrapped: bool) -> None:
    answer = client.post("/v1/events", json={"events": events} if wrapped else events)
    assert answer.status_code in {202, 422}, answer.text
    names_a_field(answer)
    if answer.status_code == 202:
        report = answer.json()
        assert report["accepted"] + report["duplicates"] + report["rejected"] == len(events)
        for record in report["records"]:
            assert record["status"] != "rejected" or record["reason"].split(" ")[0] in FIELDS, record


@SETTINGS
@given(item=body(tuple(c for c in ITEM_COLUMNS if c != "item_id")), item_id=st.text(min_size=1, max_size=20))
def test_any_item_field(client: TestClient, item: dict[str, Any], item_id: str) -> None:
    answer = client.put(f"/v1/items/{quote(item_id, safe='')}", json=item)
    assert answer.status_code in {200, 404, 405, 422}, answer.text
    names_a_field(answer)


@SETTINGS
@given(user=body(("created_at", "attributes", "preferences")), user_id=st.text(min_size=1, max_size=20))
def test_any_user_field(client: TestClient, user: dict[str, Any], user_id: str) -> None:
    answer = client.put(f"/v1/users/{quote(user_id, safe='')}", json=user)
    assert answer.status_code in {200, 404, 405, 422}, answer.text
    names_a_field(answer)


@SETTINGS
@given(params=st.dictionaries(st.sampled_from(["k", "category", "exclude"]), st.text(max_size=12), max_size=3))
def test_any_query(client: TestClient, params: dict[str, str]) -> None:
    for url in ("/v1/users/u1/recommendations", "/v1/items/v000001/similar"):
        names_a_field(client.get(url, params=params))
