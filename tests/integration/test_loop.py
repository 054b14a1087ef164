"""The feedback loop on a small synthetic platform: a champion trained on the older events, newer events
arriving after it, and impressions with the feedback they got."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recstack.cli.main import app
from recstack.config import Settings
from recstack.ingestion.pipeline import IngestOptions, RawBatch, ingest
from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
from recstack.jobs import impression_features
from recstack.jobs.loop import LOOP_DECISION_TAG, LoopConfig, run_once
from recstack.jobs.training import TrainingResult, read_snapshot, train_and_register
from recstack.models.base import Recommender
from recstack.models.popularity import Popularity
from recstack.registry import CHAMPION_SINCE_TAG, Registry
from recstack.storage import Store, open_store
from recstack.storage.impressions import IMPRESSION_COLUMNS
from recstack.storage.lake import Lake

HOUR = 3_600_000


class DisguisedPopularity(Popularity):
    """A champion made worse on purpose: global popularity registered under EASE's name."""

    name: ClassVar[str] = "ease"


@dataclass(frozen=True)
class World:
    items: pd.DataFrame
    users: pd.DataFrame
    old: pd.DataFrame
    new: pd.DataFrame


@dataclass
class Platform:
    home: Path
    store: Store
    lake: Lake
    registry: Registry
    champion: TrainingResult


@pytest.fixture(scope="module")
def world() -> World:
    config = SyntheticConfig(users=150, items=100, interactions=6_000, categories=5, seed=11, time_span_days=30)
    users, items = make_catalog(config)
    events = pd.concat(list(iter_interactions(config)), ignore_index=True)
    cut = events["timestamp"].quantile(0.7)
    return World(items, users, events.loc[events["timestamp"] < cut], events.loc[events["timestamp"] >= cut])


def add(store: Store, kind: str, frame: pd.DataFrame) -> None:
    located = frame.assign(_location=[f"row {i}" for i in range(len(frame))])
    ingest(store, [RawBatch(located)], "synthetic", IngestOptions(kind=kind))  # type: ignore[arg-type]


@pytest.fixture
def make_platform(tmp_path: Path, world: World) -> Iterator[Any]:
    opened: list[Store] = []

    def build(champion: str) -> Platform:
        settings = Settings(home=tmp_path / "home")
        store = open_store(settings.store_url)
        opened.append(store)
        store.migrate()
        for kind, frame in (("items", world.items), ("users", world.users), ("interactions", world.old)):
            add(store, kind, frame)
        lake = Lake(settings.lake_root)
        registry = Registry.from_settings(settings)
        result = train_and_register(registry, read_snapshot(lake, lake.write_snapshot(store)), champion)
        return Platform(settings.home, store, lake, registry, result)

    yield build
    for store in opened:
        store.close()


def test_no_retrain_with_too_few_new_events(make_platform: Any, world: World) -> None:
    platform = make_platform("popularity")
    add(platform.store, "interactions", world.new.head(20))
    decisions = run_once(platform.store, platform.lake, platform.registry, LoopConfig(min_events=100))
    assert [(d.rule, d.kind) for d in decisions] == [("retrain", "not_triggered")]
    assert decisions[0].numbers["new_events"] == 20 and decisions[0].run_id
    assert len(platform.lake.list_snapshots()) == 1 and len(platform.registry.versions()) == 1


def test_a_challenger_that_wins_on_the_newest_events_is_promoted(make_platform: Any, world: World) -> None:
    platform = make_platform("popularity")
    add(platform.store, "interactions", world.new)
    [decision] = run_once(platform.store, platform.lake, platform.registry, LoopConfig(min_events=100, model="ease"))
    assert decision.kind == "promoted", decision.reason
    assert decision.numbers["challenger"] > decision.numbers["champion"]
    champion = platform.registry.champion()
    assert champion is not None and champion.version == 2 and champion.model_kind == "ease"
    assert champion.params["split"] == "temporal_by_user(ratio=0.9)" and champion.params["source"] == "loop"
    assert json.loads(champion.tags[LOOP_DECISION_TAG])["decision"] == "promoted"
    assert json.loads(platform.registry.get(1).tags[LOOP_DECISION_TAG])["decision"] == "replaced"
    assert len(platform.lake.list_snapshots()) == 2


def test_a_challenger_that_loses_is_neither_registered_nor_promoted(make_platform: Any, world: World) -> None:
    platform = make_platform("ease")
    add(platform.store, "interactions", world.new)
    config = LoopConfig(min_events=100, model="popularity")
    [decision] = run_once(platform.store, platform.lake, platform.registry, config)
    assert decision.kind == "kept", decision.reason
    assert decision.numbers["challenger"] < decision.numbers["champion"]
    # Both fitted before the hold-out; the champion's kind only on the events its snapshot had.
    assert 0 < decision.numbers["champion_train_rows"] <= len(world.old) < decision.numbers["train_rows"]
    assert [v.version for v in platform.registry.versions()] == [1]
    assert json.loads(platform.registry.get(1).tags[LOOP_DECISION_TAG])["decision"] == "kept"


def replay(model: Recommender[Any], version: int, at: int, liked: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`model`'s top 10 shown to every user at `at`, and a like a minute later on each item the user went on
    to like in the held-back events (what they would have done had they been shown it)."""
    users = pd.unique(liked["user_id"])
    shown = model.recommend(users, k=10)
    impressions = pd.DataFrame({
        "served_at": at, "user_id": shown["user_id"], "item_id": shown["item_id"], "position": shown["rank"],
        "model_version": version, "request_id": shown["user_id"] + f"-{version}",
    })[list(IMPRESSION_COLUMNS)]
    hits = shown.merge(liked, on=["user_id", "item_id"])
    feedback = pd.DataFrame({
        "event_id": [f"fb{version}-{n}" for n in range(len(hits))], "user_id": hits["user_id"],
        "item_id": hits["item_id"], "event_type": "like", "value": np.nan, "timestamp": at + 60_000,
    })
    return impressions, feedback


def test_a_champion_users_like_less_than_the_previous_one_is_rolled_back(make_platform: Any, world: World) -> None:
    platform = make_platform("ease")
    registry, store = platform.registry, platform.store
    worse = DisguisedPopularity().fit(world.old[["user_id", "item_id", "event_type", "value"]], world.items)
    bad = registry.log(worse, metrics={"ndcg@10": 1.0})
    assert registry.promote(bad.version, force=True)
    now = int(time.time() * 1000)
    registry.set_tag(1, CHAMPION_SINCE_TAG, str(now - 4 * HOUR))
    registry.set_tag(bad.version, CHAMPION_SINCE_TAG, str(now - 2 * HOUR))
    new = world.new
    liked = new.loc[new["event_type"].isin(["like", "share"]), ["user_id", "item_id"]].drop_duplicates()
    for model, version, at in ((platform.champion.model, 1, now - 3 * HOUR), (worse, bad.version, now - 90 * 60_000)):
        impressions, feedback = replay(model, version, at, liked)
        store.write_impressions(impressions)
        store.write_interactions(feedback)

    config = LoopConfig(min_events=10**6, feedback_window_s=1_800, rollback_min_impressions=200, rollback_margin=0.1)
    [decision] = run_once(store, platform.lake, registry, config, now_ms=now)
    assert (decision.rule, decision.kind) == ("online", "rolled_back"), decision.reason
    assert decision.numbers["rate"] < 0.9 * decision.numbers["previous_rate"]
    assert decision.numbers["impressions"] >= 200 and decision.numbers["previous_impressions"] >= 200
    champion = registry.champion()
    assert champion is not None and champion.version == 1
    # Neither version has a ranker: the pass moved the features watermark and wrote no features.
    assert impression_features.watermark(platform.lake) == now - impression_features.LAG_MS
    assert platform.lake.read_impression_features().empty

    again = run_once(store, platform.lake, registry, config, now_ms=now)
    assert [(d.rule, d.kind) for d in again] == [("retrain", "not_triggered")]  # a restored champion is not re-judged

    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("RECSTACK_")}
    listed = CliRunner().invoke(app, ["--home", str(platform.home), "models", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    notes = {v["version"]: v["last_decision"] for v in json.loads(listed.stdout)}
    assert notes[bad.version]["decision"] == "rolled back" and notes[1]["decision"] == "restored"
    table = CliRunner().invoke(app, ["--home", str(platform.home), "models", "list"], env={**env, "COLUMNS": "250"})
    assert "rolled back" in table.stdout
