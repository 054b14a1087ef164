"""The ensemble meets the Recommender contract, learns its weights on validation data, and round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from recstack.errors import ConfigurationError
from recstack.models.base import Recommender
from recstack.models.ensemble import Ensemble, MemberSpec, normalised, rank_fusion, ranks
from recstack.testing.recommender import Platform, RecommenderContract, ndcg_at_k

MEMBERS = [MemberSpec(model="ease", params={"l2": 100.0}), MemberSpec(model="item_knn")]


class TestEnsembleLearnedWeights(RecommenderContract):
    model_class = Ensemble
    params: ClassVar[dict[str, Any]] = {"members": MEMBERS, "weight_trials": 8}
    ndcg_floor = 0.3


class TestEnsembleRankFusion(RecommenderContract):
    model_class = Ensemble
    params: ClassVar[dict[str, Any]] = {"members": MEMBERS, "method": "rrf", "weights": [1.0, 0.5]}
    ndcg_floor = 0.3


def test_normalised_standardises_each_row_over_unseen_items() -> None:
    scores = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, np.nan]], dtype=np.float32)
    exclude = np.array([[False, False, False, True], [False, False, False, False]])
    z = normalised(scores, exclude)
    np.testing.assert_allclose(z[0, :3], [-1.2247449, 0.0, 1.2247449], rtol=1e-5)
    assert np.isfinite(z).all()
    assert z[1, 3] == z[1, :3].min()


def test_rank_fusion_adds_reciprocal_ranks() -> None:
    first = ranks(np.array([[3.0, 2.0, 1.0]]))
    second = ranks(np.array([[1.0, 3.0, 2.0]]))
    np.testing.assert_array_equal(first, [[1, 2, 3]])
    fused = rank_fusion([first, second], np.array([1.0, 1.0]), 60.0)
    np.testing.assert_allclose(fused, [[1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62]])


def test_learned_blend_is_at_least_as_good_as_its_weakest_member(platform: Platform) -> None:
    users = platform.test["user_id"].unique()
    blend = Ensemble(members=MEMBERS, weight_trials=8).fit(platform.train)
    assert blend.weights_.shape == (2,) and (blend.weights_ >= 0).all()
    members = [spec.create().fit(platform.train) for spec in MEMBERS]
    member_ndcg = [ndcg_at_k(m.recommend(users, k=10), platform.test, 10) for m in members]
    assert ndcg_at_k(blend.recommend(users, k=10), platform.test, 10) >= min(member_ndcg)


def test_saved_members_live_in_subdirectories(platform: Platform, tmp_path: Path) -> None:
    model = Ensemble(members=MEMBERS, weights=[1.0, 1.0]).fit(platform.train)
    model.save(tmp_path / "e")
    assert (tmp_path / "e" / "member_0" / "model.json").exists()
    loaded = Recommender.load(tmp_path / "e")
    assert isinstance(loaded, Ensemble)
    np.testing.assert_allclose(loaded.score(np.arange(5)), model.score(np.arange(5)), rtol=1e-6)


def test_weights_must_match_members() -> None:
    with pytest.raises(ConfigurationError):
        Ensemble(members=MEMBERS, weights=[1.0])
