"""ALS (implicit) meets the Recommender contract, beats popularity, and fits without implicit's BLAS
thread warning."""

from __future__ import annotations

import warnings

import pytest

from conftest import unavailable
from recstack.models.als import ALS
from recstack.models.bpr import BPR
from recstack.testing.recommender import Platform, RecommenderContract


class TestALS(RecommenderContract):
    model_class = ALS
    ndcg_floor = 0.24


@pytest.mark.parametrize("model_class", [ALS, BPR])
def test_fits_under_one_blas_thread_so_implicit_does_not_warn(
    platform: Platform, model_class: type[ALS] | type[BPR], monkeypatch: pytest.MonkeyPatch
) -> None:
    import implicit.utils
    from threadpoolctl import threadpool_info, threadpool_limits

    if not any(pool["user_api"] == "blas" for pool in threadpool_info()):
        unavailable("a BLAS thread pool", "threadpoolctl finds none loaded, so there is nothing to limit")
    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)  # implicit checks once per process
    with threadpool_limits(limits=2, user_api="blas"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model_class(iterations=2).fit(platform.train)
    assert not [w for w in caught if "threads" in str(w.message)], [str(w.message) for w in caught]
