"""Fixtures shared by the serving integration tests: one small synthetic world and an ALS champion of it,
built once per test module."""

from __future__ import annotations

from typing import Any

import pytest

from recstack.models.base import Recommender

from .serving_support import World, make_world, train


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def als(world: World) -> Recommender[Any]:
    return train(world)
