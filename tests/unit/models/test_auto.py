"""`auto` meets the Recommender contract on a small budget, beats popularity, keeps to its time budget,
works on watch-time data, round-trips with its members, validates temporally when it has timestamps,
screens candidates by their declarations, and trains and uses its ranker when it keeps one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from recstack.evaluation.splits import stratified_by_user
from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions
from recstack.models import catalog
from recstack.models._rerank import build_pool
from recstack.models.auto import AutoConfig, AutoRecommender
from recstack.models.auto.run import AutoRun
from recstack.models.auto.search import screen
from recstack.models.base import Recommender
from recstack.models.item_knn import ItemKNN
from recstack.models.popularity import Popularity
from recstack.testing.recommender import Platform, RecommenderContract, ndcg_at_k

SMALL: dict[str, Any] = {
    "time_budget_s": 20.0,
    "max_trials": 2,
    "candidates": ["ease", "rp3beta", "item_knn"],
    "folds": 2,
}


class TestAuto(RecommenderContract):
    model_class = AutoRecommender
    params: ClassVar[dict[str, Any]] = SMALL
    ndcg_floor = 0.3


def test_catalog_builds_auto_from_the_cli_keyword() -> None:
    model = catalog.create("auto", time_budget_s=12.5)
    assert isinstance(model, AutoRecommender) and model.config.time_budget_s == 12.5


def test_respects_the_budget_and_reports_progress(platform: Platform) -> None:
    stages: list[tuple[str, float]] = []
    model = AutoRecommender(time_budget_s=8.0, max_trials=50, candidates=["ease", "item_knn"])
    model.progress = lambda stage, used: stages.append((stage, used))
    model.fit(platform.train)
    # no wall-clock bound here (a loaded machine makes it a race); the budget rule is tested on a manual clock
    # in tests/unit/evaluation/test_tuning.py
    assert model.fit_seconds_ is not None and model.fit_seconds_ > 0
    assert [used for _, used in stages] == sorted(used for _, used in stages)
    assert stages and stages[-1][0].startswith("done")
    assert set(model.report_["tuning"]) == {"ease", "item_knn"}


def _watch_time_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.concat(iter_interactions(SyntheticConfig(users=150, items=120, interactions=6_000, seed=3)))
    epoch = pd.Timestamp(0, tz="UTC")
    frame["timestamp"] = (frame["timestamp"] - epoch) // pd.Timedelta(milliseconds=1)
    train, test = stratified_by_user(frame, ratio=0.75, seed=42)
    watched = test.loc[test["event_type"] != "skip"]
    return train, watched


def test_beats_popularity_on_watch_time_events() -> None:
    train, test = _watch_time_data()
    users = test["user_id"].unique()
    params = {**SMALL, "candidates": ["sequence_ease", "rp3beta", "sequence_knn"]}
    model = AutoRecommender(**params).fit(train)
    popularity = Popularity().fit(train)
    assert model.report_["validation_protocol"] == "temporal"
    auto_ndcg = ndcg_at_k(model.recommend(users, k=10), test, 10)
    assert auto_ndcg > ndcg_at_k(popularity.recommend(users, k=10), test, 10)


RANKED: dict[str, Any] = {**SMALL, "time_budget_s": 120.0, "keep_within": 0.05, "rerank": True, "blend_min_gain": 0.0}


def test_a_kept_ranker_was_trained_and_orders_every_pool(platform: Platform) -> None:
    model = AutoRecommender(**RANKED, rerank_margin=-1.0).fit(platform.train)
    validation = model.report_["validation"]
    assert model.report_["mode"] == "rerank" and validation["ranker_kept"] and model.ranker_
    assert validation["trees"] >= 1 and 0.0 < validation["held_rerank_ndcg"] <= 1.0
    rows = np.arange(30)
    scores = model.score(rows)
    seen = model.seen_[rows].toarray() > 0  # type: ignore[index]
    pool = build_pool(model.views_, model.weights_, rows, seen, model.stats_, model.config.pool_size)
    predicted = model._booster().predict(pool.features).reshape(pool.items.shape)
    np.testing.assert_allclose(scores[rows[:, None], pool.items], predicted, rtol=1e-5, atol=1e-6)
    outside = np.ones_like(scores, dtype=bool)
    outside[rows[:, None], pool.items] = False
    assert (scores[outside].max() < predicted.min()) if outside.any() else True
    ranked_top = np.argsort(-np.where(seen, -np.inf, scores), axis=1)[:, :10]
    blend = model.blend_scores(rows)
    blend_top = np.argsort(-np.where(seen, -np.inf, blend), axis=1)[:, :10]
    assert (ranked_top != blend_top).any()  # the lists are the ranker's, not the blend's


def test_a_ranker_that_loses_is_trained_and_dropped(platform: Platform) -> None:
    model = AutoRecommender(**RANKED, rerank_margin=1.0).fit(platform.train)
    validation = model.report_["validation"]
    assert validation["trees"] >= 1 and validation["ranker_kept"] is False
    assert model.report_["mode"] == "blend" and model.ranker_ == ""
    rows = np.arange(30)
    np.testing.assert_allclose(model.score(rows), model.blend_scores(rows).astype(np.float32))


def test_validates_on_each_users_newest_interactions_when_it_has_timestamps(platform: Platform) -> None:
    timed = AutoRecommender(**SMALL).fit(platform.train)
    untimed = AutoRecommender(**SMALL).fit(platform.train.drop(columns="timestamp"))
    forced = AutoRecommender(**SMALL, validation="random").fit(platform.train)
    assert timed.report_["validation_protocol"] == "temporal"
    assert untimed.report_["validation_protocol"] == "random"
    assert forced.report_["validation_protocol"] == "random"


class Hungry(ItemKNN):
    """Item-kNN under another name that declares it needs more memory than any machine has."""

    name: ClassVar[str] = "hungry"

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_interactions: int) -> int:
        return 1 << 60


class Timed(ItemKNN):
    """Item-kNN under another name that declares it needs timestamps."""

    name: ClassVar[str] = "timed"
    needs_timestamps: ClassVar[bool] = True


def test_candidates_are_screened_by_their_declarations_not_their_names(platform: Platform) -> None:
    hungry, timed = f"{__name__}:Hungry", f"{__name__}:Timed"
    names = [hungry, timed, "item_knn", "tfidf", "sequence_ease", "ease"]
    run = AutoRun(AutoConfig(), temporal=False)
    with_time = screen(run, names, platform.train, platform.items)
    assert with_time == [timed, "item_knn", "tfidf", "sequence_ease"]  # sequence_ease subsumes ease
    without = screen(run, names, platform.train.drop(columns="timestamp"), None)
    assert without == ["item_knn", "ease"]  # tfidf needs item features; the sequence models need time
    assert screen(run, ["hybrid", "item_knn"], platform.train, None) == ["item_knn"]  # forecasts, random run
    assert screen(AutoRun(AutoConfig(), temporal=True), ["hybrid"], platform.train, None) == ["hybrid"]
    tight = AutoRun(AutoConfig(memory_limit_mb=1e-3), temporal=False)
    assert screen(tight, ["ease", "item_knn"], platform.train, None) == []


def test_round_trip_keeps_members_and_ranker(platform: Platform, tmp_path: Path) -> None:
    model = AutoRecommender(**RANKED, rerank_margin=-1.0).fit(platform.train)
    assert model.ranker_
    model.save(tmp_path / "auto")
    loaded = Recommender.load(tmp_path / "auto")
    assert isinstance(loaded, AutoRecommender)
    assert loaded.report_ == model.report_ and loaded.ranker_ == model.ranker_
    np.testing.assert_allclose(loaded.score(np.arange(10)), model.score(np.arange(10)), rtol=1e-5)


def test_memory_rule_skips_ease(platform: Platform) -> None:
    from recstack.models.ease import EASE
    from recstack.models.rp3beta import RP3beta

    train = platform.train
    n_users, rows = train["user_id"].nunique(), len(train)
    n_items = int((train.groupby("item_id")["user_id"].nunique() >= 3).sum())
    ease, sparse = EASE.memory_estimate(n_users, n_items, rows), RP3beta.memory_estimate(n_users, n_items, rows)
    assert sparse < ease
    run = AutoRun(AutoConfig(memory_limit_mb=(ease + sparse) / 2 / 2**20), temporal=False)
    assert screen(run, ["ease", "rp3beta"], train, None) == ["rp3beta"]


@pytest.mark.parametrize("bad", [{"time_budget_s": 0}, {"candidates": []}])
def test_rejects_bad_configuration(bad: dict[str, object]) -> None:
    from recstack.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        AutoRecommender(**bad)


def test_ratings_get_a_weighting_chosen_on_validation_for_every_member(platform: Platform) -> None:
    rng = np.random.default_rng(0)
    rated = platform.train[["user_id", "item_id"]].assign(value=rng.integers(1, 6, len(platform.train)).astype(float))
    model = AutoRecommender(**SMALL).fit(rated)
    chosen = model.report_["weighting"]["weighting"]
    assert chosen["value_kinds"] == {"rating": "rating"}
    for member in model.members_:
        assert member.weighting_ is not None and member.weighting_.model_dump(mode="json") == chosen


def test_members_read_the_values_through_the_chosen_weighting_not_autos_own(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    rated = platform.train[["user_id", "item_id"]].assign(value=rng.integers(1, 6, len(platform.train)).astype(float))
    given: list[bool] = []
    original = Recommender.fit

    def spy(self: Recommender[Any], interactions: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, AutoRecommender):
            given.append("weight" in interactions)
        return original(self, interactions, *args, **kwargs)

    monkeypatch.setattr(Recommender, "fit", spy)
    AutoRecommender(**SMALL).fit(rated)
    assert given and not any(given)
    given.clear()
    AutoRecommender(**SMALL).fit(rated.assign(weight=1.0))  # a caller's own weights are kept
    assert given and all(given)


def test_watch_time_data_has_one_reading_and_no_weighting_step(platform: Platform) -> None:
    train, _ = _watch_time_data()
    model = AutoRecommender(**{**SMALL, "candidates": ["rp3beta"]}).fit(train)
    assert model.report_["weighting"] == {}


def test_partners_are_tuned_for_the_blend_with_the_lead(platform: Platform) -> None:
    model = AutoRecommender(**SMALL).fit(platform.train)
    tuning, partners = model.report_["tuning"], model.report_["partner_tuning"]
    lead = max(tuning, key=lambda name: tuning[name]["validation_ndcg"])
    assert partners and lead not in partners
    assert set(partners) <= set(tuning)
    for name, found in partners.items():
        catalog.create(name, **found["params"])  # complete constructor keywords, not raw trial values
        assert 0.0 < found["validation_blend_ndcg"] <= 1.0


def test_partner_tuning_is_skipped_above_the_cell_limit(platform: Platform) -> None:
    model = AutoRecommender(**{**SMALL, "partner_cells": 10}).fit(platform.train)
    assert model.report_["partner_tuning"] == {}


def test_forward_selection_adds_a_member_only_when_it_earns_its_place() -> None:
    from recstack.models.auto.blend import forward_selection as _forward_selection

    rng = np.random.default_rng(7)
    users, size = 400, 30
    labels = (rng.random((users, size)) < 0.15).astype(np.float32)
    signal = labels + rng.normal(0.0, 1.0, labels.shape)
    lead = signal + rng.normal(0.0, 1.0, labels.shape)
    partner = signal + rng.normal(0.0, 1.0, labels.shape)  # independent errors: blending helps
    noise = rng.normal(0.0, 1.0, labels.shape)
    n_relevant = labels.sum(axis=1).astype(np.int64)
    weights, value = _forward_selection([noise, lead, partner], labels, n_relevant, 10, min_gain=0.005)
    assert weights[0] == 0.0 and weights[1] > 0 and weights[2] > 0 and weights.max() == 1.0
    alone, _ = _forward_selection([noise, lead, partner], labels, n_relevant, 10, min_gain=10.0)
    assert np.count_nonzero(alone) == 1
    assert value > _forward_selection([lead], labels, n_relevant, 10, min_gain=0.0)[1]
