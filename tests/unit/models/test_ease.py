"""EASE meets the Recommender contract, beats popularity on the synthetic platform, and solves the
closed form it claims, with one penalty for all items or one that grows with popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recstack.models.ease import EASE
from recstack.testing.recommender import RecommenderContract


class TestEASE(RecommenderContract):
    model_class = EASE
    ndcg_floor = 0.32


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_weights_are_the_closed_form(exponent: float) -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((30, 6)) < 0.4).astype(float)
    x[:, 0] = 1.0  # one very popular item, so the per-item penalties differ
    rows, cols = np.nonzero(x)
    frame = pd.DataFrame({"user_id": [f"u{r}" for r in rows], "item_id": [f"i{c}" for c in cols]})
    model = EASE(l2=4.0, l2_popularity_exponent=exponent, min_item_users=1).fit(frame)
    weighted = model.user_items_.toarray().astype(float)  # x as weighted by the default event weight
    assert np.count_nonzero(weighted) == np.count_nonzero(x)
    gram = weighted.T @ weighted
    penalty = 4.0 * (np.diag(gram) / np.diag(gram).mean()) ** exponent
    precision = np.linalg.inv(gram + np.diag(penalty))
    expected = precision / -np.diag(precision)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-4, atol=1e-6)


def test_inverse_falls_back_to_lu_when_not_positive_definite() -> None:
    from recstack.models.ease import _inverse

    rng = np.random.default_rng(5)
    spd = rng.random((8, 8))
    spd = spd @ spd.T + np.eye(8)
    indefinite = spd - 3.0 * np.eye(8) * np.linalg.eigvalsh(spd).max() / 2
    for matrix in (spd, indefinite):
        np.testing.assert_allclose(_inverse(matrix.copy()) @ matrix, np.eye(8), atol=1e-8)


def test_relative_l2_is_a_multiple_of_the_mean_diagonal() -> None:
    rng = np.random.default_rng(6)
    x = (rng.random((40, 7)) < 0.5).astype(float)
    rows, cols = np.nonzero(x)
    frame = pd.DataFrame({"user_id": [f"u{r}" for r in rows], "item_id": [f"i{c}" for c in cols]})
    relative = EASE(l2=3.0, l2_relative=True, min_item_users=1).fit(frame)
    weighted = relative.user_items_.toarray().astype(float)
    mean_diagonal = float((weighted**2).sum(axis=0).mean())
    absolute = EASE(l2=3.0 * mean_diagonal, min_item_users=1).fit(frame)
    np.testing.assert_allclose(relative.weights_, absolute.weights_, rtol=1e-5, atol=1e-7)
