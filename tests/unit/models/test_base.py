"""The shared machinery of `Recommender`: top-k selection, batching, weighting, persistence, catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.models import catalog
from recstack.models.base import Recommender, RecommenderConfig, TrainingData, top_k
from recstack.models.ease import EASE
from recstack.processing.weighting import ratings


class Echo(Recommender[RecommenderConfig]):
    """Scores each item by its training-matrix column sum, to test the base class in isolation."""

    name: ClassVar[str] = "echo"

    def _fit(self, data: TrainingData) -> None:
        self.totals_ = np.asarray(data.matrix.sum(axis=0)).ravel().astype(np.float32)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.tile(self.totals_, (len(user_idx), 1))

    def _state(self) -> dict[str, Any]:
        return {"totals": self.totals_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.totals_ = state["totals"]


def test_top_k_orders_breaks_ties_by_index_and_marks_missing() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [-np.inf, 2.0, np.nan, -np.inf]], dtype=np.float32)
    index, values = top_k(scores, 3)
    assert index.tolist() == [[1, 3, 2], [1, -1, -1]]
    assert values[0].tolist() == pytest.approx([0.9, 0.9, 0.5])
    assert index.shape == (2, 3)
    assert top_k(scores, 10)[0].shape == (2, 4)


def test_pre_weighted_interactions_are_used_as_given() -> None:
    frame = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "b"], "weight": [5.0, -1.0, 1.0]})
    model = Echo().fit(frame)
    # Non-positive totals are dropped for models that need non-negative input: "b" keeps only v's 1.0.
    assert model.totals_.tolist() == [5.0, 1.0]
    assert model.weighting_ is None
    # ...but "b" still counts as seen for u.
    assert model.recommend("u", k=5).empty


def test_weighting_is_inferred_and_saved(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "b"], "value": [4.0, 2.0]})
    model = Echo().fit(frame)
    assert model.weighting_ == ratings()
    model.save(tmp_path / "echo")
    meta = json.loads((tmp_path / "echo" / "model.json").read_text())
    assert meta["class"].endswith(":Echo") and meta["weighting"]["rating_mode"] == "binary"


def test_scores_are_computed_in_blocks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame(
        {"user_id": [f"u{i % 7}" for i in range(40)], "item_id": [f"i{(i * 3) % 11}" for i in range(40)]}
    )
    model = EASE(l2=1.0).fit(frame)
    users = [f"u{i}" for i in range(7)]
    whole = model.recommend(users, k=4)
    monkeypatch.setattr(EASE, "block_cells", 2 * len(model.items))
    pd.testing.assert_frame_equal(model.recommend(users, k=4), whole)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="lack"):
        Echo().fit(pd.DataFrame({"user_id": ["u"]}))
    with pytest.raises(ConfigurationError, match="empty"):
        Echo().fit(pd.DataFrame({"user_id": [], "item_id": []}))
    with pytest.raises(ConfigurationError, match="invalid parameters"):
        EASE(l2=-1.0)
    with pytest.raises(ConfigurationError, match="not fitted"):
        EASE().recommend("u")


def test_filter_function_must_return_one_flag_per_item() -> None:
    model = Echo().fit(pd.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "b"]}))
    with pytest.raises(ConfigurationError, match="shape"):
        model.recommend("u", filter=lambda ids: np.ones(1, dtype=bool))


def test_load_checks_what_it_reads(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no saved model"):
        Recommender.load(tmp_path / "missing")
    model = Echo().fit(pd.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "b"]}))
    model.save(tmp_path / "echo")
    with pytest.raises(ConfigurationError, match="not a EASE"):
        EASE.load(tmp_path / "echo")
    meta_path = tmp_path / "echo" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "class": "os:system"}))
    with pytest.raises(ConfigurationError, match="not a Recommender"):
        Recommender.load(tmp_path / "echo")


def test_catalog_resolves_every_name() -> None:
    for name in catalog.names():
        cls = catalog.resolve(name)
        assert issubclass(cls, Recommender) and cls.name == name
    assert isinstance(catalog.create("ease", l2=10.0), EASE)
    assert catalog.resolve("recstack.models.ease:EASE") is EASE
    with pytest.raises(ConfigurationError, match="unknown model"):
        catalog.resolve("nope")
