"""PureSVD and the explicit-ratings SVD meet the contract; SVD also predicts held-out ratings well."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.models.svd import SVD, PureSVD
from recstack.testing.recommender import RecommenderContract


class TestPureSVD(RecommenderContract):
    model_class = PureSVD
    ndcg_floor = 0.29


class TestSVD(RecommenderContract):
    model_class = SVD
    ndcg_floor = 0.15

    def test_predicts_held_out_ratings_better_than_the_mean(self, model: SVD, platform: Any) -> None:
        test = platform.test
        predicted = model.predict(test["user_id"], test["item_id"])
        rmse = float(np.sqrt(np.mean((predicted - test["value"].to_numpy()) ** 2)))
        baseline = float(np.sqrt(np.mean((platform.train["value"].mean() - test["value"].to_numpy()) ** 2)))
        assert rmse < 0.9 * baseline
        assert predicted.min() >= 1.0 and predicted.max() <= 5.0

    def test_unknown_pairs_fall_back_to_the_global_mean(self, model: SVD) -> None:
        assert model.predict(["nobody"], ["nothing"])[0] == pytest.approx(model.global_mean_)


def test_svd_recovers_a_rank_one_rating_matrix() -> None:
    users, items = np.meshgrid(np.arange(12), np.arange(10), indexing="ij")
    ratings = 1.0 + 4.0 * (users / 11.0) * (items / 9.0)
    frame = pd.DataFrame(
        {"user_id": users.ravel().astype(str), "item_id": items.ravel().astype(str), "value": ratings.ravel()}
    )
    model = SVD(factors=2, regularization=1e-4, bias_regularization=0.0, iterations=50).fit(frame)
    predicted = model.predict(frame["user_id"], frame["item_id"])
    np.testing.assert_allclose(predicted, ratings.ravel(), atol=0.05)


def test_svd_needs_values() -> None:
    with pytest.raises(ConfigurationError, match="value"):
        SVD().fit(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}))
