"""Every model in the catalogue beats global popularity (NDCG@10) on the synthetic video platform.

The data come from `recstack.ingestion.synthetic`, the generator behind `recstack demo`: typed events (watch
seconds, likes, shares, skips) rather than ratings, so this checks the models on the other shape of data
than the rating platform of `conftest.py`. A model joins the check by joining the catalogue. Left out:
the self-tuning "auto" and "ensemble" (they pick among these, under a time budget), and "svd", which
predicts explicit ratings and has none to learn from here (its ranking is proven on ratings in
test_svd.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from recstack.cli.evaluate import relevant_pairs
from recstack.evaluation.metrics import ndcg
from recstack.evaluation.splits import stratified_by_user
from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
from recstack.models import catalog

NOT_COMPARED = {"auto", "ensemble", "svd", "popularity"}
MARGIN = 1.5
"""A model must reach this multiple of popularity's NDCG: personalisation has to pay, not tie."""


class Video:
    def __init__(self) -> None:
        config = SyntheticConfig(users=800, items=400, interactions=40_000, seed=11)
        _, self.items = make_catalog(config)
        frame = pd.concat(list(iter_interactions(config)), ignore_index=True)
        frame["timestamp"] = frame["timestamp"].dt.as_unit("ms").astype("int64")
        self.train, test = stratified_by_user(frame.drop(columns=["event_id"]), ratio=0.8, seed=42)
        self.relevant = relevant_pairs(self.train, test, self.items)

    def ndcg_of(self, name: str) -> float:
        model = catalog.create(name).fit(self.train, items=self.items)
        return ndcg(model.recommend(pd.unique(self.relevant["user_id"]), 10), self.relevant, 10)


@pytest.fixture(scope="module")
def video() -> Video:
    return Video()


@pytest.fixture(scope="module")
def popularity(video: Video) -> float:
    return video.ndcg_of("popularity")


def test_the_holdout_is_large_enough_to_mean_something(video: Video, popularity: float) -> None:
    assert video.relevant["user_id"].nunique() >= 400
    assert 0.0 < popularity < 0.2


@pytest.mark.parametrize("name", [n for n in catalog.names() if n not in NOT_COMPARED])
def test_model_beats_popularity(name: str, video: Video, popularity: float) -> None:
    score = video.ndcg_of(name)
    assert score > MARGIN * popularity, f"{name}: NDCG@10 {score:.4f} vs popularity {popularity:.4f}"
