"""Fixtures shared by the serving integration tests: one small synthetic world and an ALS champion of it,
built once per test module."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import unavailable
from recstack.models.base import Recommender
from recstack.storage import Store, open_store

from .serving_support import World, load, make_world, train


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def als(world: World) -> Recommender[Any]:
    return train(world)


@pytest.fixture
def loaded(store_url: str, world: World) -> Iterator[Store]:
    """A migrated store (SQLite and PostgreSQL, by `store_url`) holding the world's catalogue and events."""
    store = open_store(store_url)
    store.migrate()
    load(store, world)
    yield store
    store.close()


REDIS_URL = os.environ.get("RECSTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_cache_url() -> Iterator[str]:
    """A Redis cache URL with a key prefix of this test's own, whose keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        unavailable(f"Redis at {REDIS_URL}", str(exc))
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    yield f"{REDIS_URL}?prefix={prefix}"
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()
