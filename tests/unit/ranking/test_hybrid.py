"""Candidate sources, the ranker and the hybrid on a small synthetic video platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
from recstack.models.base import Recommender
from recstack.models.hybrid import HybridRecommender, reason_of
from recstack.ranking.candidates import SOURCES, CandidateConfig, CandidateGenerator, UserHistory
from recstack.ranking.ranker import LambdaRanker, RankerConfig, graded_labels


@pytest.fixture(scope="module")
def video() -> tuple[pd.DataFrame, pd.DataFrame]:
    config = SyntheticConfig(users=300, items=200, interactions=15_000, categories=6, seed=5)
    _, items = make_catalog(config)
    events = pd.concat(list(iter_interactions(config)), ignore_index=True)
    return events, items


@pytest.fixture(scope="module")
def hybrid(video: tuple[pd.DataFrame, pd.DataFrame]) -> HybridRecommender:
    events, items = video
    return HybridRecommender(ranker={"n_estimators": 60, "num_threads": 1}).fit(events, items=items)


def test_each_candidate_carries_the_sources_that_found_it(hybrid: HybridRecommender) -> None:
    generator, history = hybrid.generator_, hybrid.history_
    candidates = generator.generate(np.array([0, 1]), history, hybrid.as_of_)
    assert set(np.unique(candidates.user)) == {0, 1}
    for user in (0, 1):
        rows = np.flatnonzero(candidates.user == user)
        assert not set(candidates.item[rows]) & set(history.items_of(user))
        assert len(set(candidates.item[rows])) == len(rows)
    found = {s for r in range(len(candidates)) for s in candidates.sources_of(r)}
    assert {"collaborative", "embedding", "covisit", "content", "sequential", "trending"} <= found
    # A source's ranks are exactly what it scored: rank 1 holds its best score.
    for column, source in enumerate(SOURCES):
        rows = np.flatnonzero((candidates.user == 0) & ~np.isnan(candidates.ranks[:, column]))
        if len(rows):
            best = rows[np.argmin(candidates.ranks[rows, column])]
            assert candidates.scores[best, column] == np.nanmax(candidates.scores[rows, column]), source
    covisit = SOURCES.index("covisit")
    anchored = np.flatnonzero((candidates.user == 0) & ~np.isnan(candidates.ranks[:, covisit]))
    assert len(anchored) and set(candidates.anchor[anchored]) <= set(history.items_of(0))


def test_trending_alone_is_the_decayed_popularity_order(hybrid: HybridRecommender) -> None:
    config = CandidateConfig(collaborative=None, embedding=None, sequential=None, content=False, per_source=5)
    events = pd.DataFrame(
        {"user_idx": [0, 1, 1, 2], "item_idx": [0, 1, 2, 1], "timestamp": [10, 20, 30, 40], "weight": 1.0,
         "user_id": ["a", "b", "b", "c"], "item_id": ["x", "y", "z", "y"]}
    )
    history = UserHistory.from_events(events, 3)
    ids = np.array(["a", "b", "c"], dtype=object)
    generator = CandidateGenerator(config).fit(events, history, ids, np.array(["x", "y", "z"], dtype=object), None)
    candidates = generator.generate(np.array([0]), history, 50)
    trending = SOURCES.index("trending")
    order = candidates.item[np.argsort(candidates.ranks[:, trending])]
    assert order.tolist() == [1, 2]  # item 0 was seen by user 0; item 1 has two users
    assert candidates.sources_of(0)[0] in ("trending", "covisit")


def test_graded_labels_follow_share_like_long_watch_watch_and_skip() -> None:
    events = pd.DataFrame(
        {"item_idx": [0, 0, 0, 0, 0, 0], "event_type": ["share", "like", "watch", "watch", "watch", "skip"],
         "value": [1.0, 1.0, 80.0, 20.0, 1.0, 2.0]}
    )
    assert graded_labels(events, np.array([100.0])).tolist() == [4, 3, 2, 1, 0, 0]
    ratings = pd.DataFrame({"item_idx": [0, 0], "value": [5.0, 2.0]})
    assert graded_labels(ratings, None).tolist() == [2, 1]


def test_the_ranker_is_trained_and_changes_the_order(hybrid: HybridRecommender) -> None:
    assert hybrid.ranker_.is_fitted and len(hybrid.ranker_.boosters) == 1
    assert hybrid.ranker_.num_trees > 1
    assert sum(hybrid.ranker_.importance().values()) > 0
    changed = 0
    for user in range(40):
        candidates, scores = hybrid._candidates(np.array([user]))
        rows = np.arange(len(candidates))
        served = scores[rows].astype(np.float32)
        ranked = candidates.item[rows][np.lexsort((candidates.item[rows], -served))][:10]
        best_source = np.nanmin(candidates.ranks[rows], axis=1)
        by_retrieval = candidates.item[rows[np.argsort(best_source, kind="stable")]][:10]
        changed += int(not np.array_equal(ranked, by_retrieval))
        recommended = hybrid.recommend(hybrid.users.ids[user], k=10)["item_id"].tolist()
        # What `recommend` returns is the ranker's top 10 (equal scores may swap places).
        score_of = dict(zip(hybrid.items.ids[candidates.item[rows]].tolist(), served.tolist(), strict=True))
        assert [score_of[i] for i in recommended] == sorted(served.tolist(), reverse=True)[:10]
    assert changed > 20


def test_a_second_cutoff_gives_the_ranker_more_queries(
    video: tuple[pd.DataFrame, pd.DataFrame], hybrid: HybridRecommender
) -> None:
    events, items = video
    two = HybridRecommender(cutoffs=2, ranker={"n_estimators": 20, "num_threads": 1, "folds": 1}).fit(
        events, items=items
    )
    # Users answer "what next?" at two moments; the earlier one's labels end where the later cut begins.
    assert two.ranker_.queries > 1.5 * hybrid.ranker_.queries
    assert len(two.ranker_.boosters) == 1 and two.ranker_.num_trees >= 1


def test_save_and_load_round_trip_without_pickle(hybrid: HybridRecommender, tmp_path: Path) -> None:
    path = hybrid.save(tmp_path / "hybrid")
    assert (path / "ranker.txt").read_text().startswith("tree")
    assert not list(path.rglob("*.pkl")) and not list(path.rglob("*.pickle"))
    loaded = Recommender.load(path)
    assert isinstance(loaded, HybridRecommender)
    users = hybrid.users.ids[:25]
    pd.testing.assert_frame_equal(loaded.recommend(users, k=10), hybrid.recommend(users, k=10))
    idx = hybrid.recommend(users[0], k=10)["item_id"].to_numpy(dtype=object)
    assert loaded.explain(0, loaded.items.index(idx)) == hybrid.explain(0, hybrid.items.index(idx))


def test_reasons_name_the_source() -> None:
    assert reason_of(["embedding", "trending"], None) == "collaborative"
    assert reason_of(["covisit"], "Space Rocket Live") == "because you watched Space Rocket Live"
    assert reason_of(["trending", "collaborative"], None) == "trending"
    assert reason_of(["new"], None) == "new"
    assert reason_of([], None) == "trending"


def test_explain_gives_one_reason_per_item(hybrid: HybridRecommender) -> None:
    top = hybrid.recommend(hybrid.users.ids[3], k=10)["item_id"].to_numpy(dtype=object)
    reasons = hybrid.explain(3, hybrid.items.index(top))
    assert reasons is not None and len(reasons) == 10
    allowed = ("collaborative", "trending", "new", "because you watched ")
    assert all(r.startswith(allowed) for r in reasons)


def test_without_timestamps_the_hybrid_says_so(video: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, items = video
    with pytest.raises(ConfigurationError, match="timestamp"):
        HybridRecommender().fit(events.drop(columns="timestamp"), items=items)


def test_capabilities_are_declared() -> None:
    hybrid: Any = HybridRecommender
    assert hybrid.needs_timestamps is True
    estimate = HybridRecommender.memory_estimate
    assert estimate(1000, 2000, 100_000) > estimate(1000, 200, 100_000)


def test_averaged_fold_boosters_share_one_tree_count_and_survive_text() -> None:
    rng = np.random.default_rng(0)
    queries, per = 60, 30
    features = rng.normal(size=(queries * per, 4))
    labels = (features[:, 0] + 0.3 * rng.normal(size=len(features)) > 1.0).astype(np.int64)
    groups = np.repeat(np.arange(queries), per)
    config = RankerConfig(n_estimators=30, min_child_samples=5, num_threads=1, average_folds=True)
    ranker = LambdaRanker(config).fit(features, labels, groups, ["a", "b", "c", "d"])
    assert len(ranker.boosters) == 3 and len({b.num_trees() for b in ranker.boosters}) == 1
    scores = ranker.predict(features[:per])
    np.testing.assert_allclose(scores, np.mean([b.predict(features[:per]) for b in ranker.boosters], axis=0))
    # The informative feature leads, and the text form gives the same scores.
    assert next(iter(ranker.importance())) == "a"
    np.testing.assert_allclose(LambdaRanker.from_text(ranker.to_text()).predict(features[:per]), scores)
