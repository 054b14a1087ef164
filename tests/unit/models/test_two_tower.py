"""The two-tower model meets the Recommender contract, uses item content, and serves through its vectors."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from recstack.errors import MissingExtra
from recstack.models.two_tower import TwoTower
from recstack.testing.recommender import Platform, RecommenderContract

from .deep import require_torch

FAST: dict[str, Any] = {"dim": 32, "epochs": 20, "time_budget_s": 30}


@pytest.fixture(autouse=True)
def _torch_present() -> None:
    require_torch()


class TestTwoTower(RecommenderContract):
    model_class = TwoTower
    params = FAST
    ndcg_floor = 0.3


def test_scores_are_inner_products_of_the_tower_vectors(platform: Platform) -> None:
    model = TwoTower(**FAST).fit(platform.train, items=platform.items)
    users, items = model.user_embeddings(), model.item_embeddings()
    assert users is not None and items is not None
    np.testing.assert_allclose(model.score(np.arange(4)), users[:4] @ items.T, rtol=1e-5)


def test_content_shapes_the_item_vectors(platform: Platform) -> None:
    with_text = TwoTower(**{**FAST, "epochs": 2}).fit(platform.train, items=platform.items)
    without = TwoTower(**{**FAST, "epochs": 2, "content": False}).fit(platform.train, items=platform.items)
    assert with_text.content_.nnz > 0
    assert not np.allclose(with_text.item_embeddings(), without.item_embeddings())  # type: ignore[arg-type]


def test_same_seed_same_model(platform: Platform) -> None:
    params = {**FAST, "epochs": 2}
    first = TwoTower(**params).fit(platform.train, items=platform.items)
    second = TwoTower(**params).fit(platform.train, items=platform.items)
    np.testing.assert_array_equal(first.score(np.arange(5)), second.score(np.arange(5)))


def test_without_torch_fit_names_the_extra(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtra, match=r"recstack\[deep\]"):
        TwoTower(**FAST).fit(platform.train)
