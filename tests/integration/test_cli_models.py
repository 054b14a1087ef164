"""`recstack evaluate` and `recstack batch-recommend` as a user runs them (a real process, real models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recstack.ingestion import IngestOptions, ingest
from recstack.ingestion.files import read_file
from recstack.ingestion.synthetic import SyntheticConfig, generate
from recstack.models import catalog
from recstack.storage import open_store
from recstack.storage.lake import Lake


def recstack(home: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")}
    env |= {"RECSTACK_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "recstack", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=home
    )


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 users × 30 items in two taste groups, ratings 1–5, no timestamp column; lines 3 and 5 are bad."""
    rng = np.random.default_rng(5)
    rows = []
    for u in range(40):
        group = u % 2
        liked = rng.choice(np.arange(group * 15, group * 15 + 15), size=8, replace=False)
        other = rng.choice(np.arange((1 - group) * 15, (1 - group) * 15 + 15), size=2, replace=False)
        rows += [(f"user{u}", f"item{i}", int(rng.integers(4, 6))) for i in liked]
        rows += [(f"user{u}", f"item{i}", int(rng.integers(1, 3))) for i in other]
    lines = ["user_id,item_id,value", *(f"{u},{i},{v}" for u, i, v in rows)]
    lines.insert(2, "user0,item99,lots")
    lines.insert(4, ",item3,4")
    path = tmp_path_factory.mktemp("ratings") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small synthetic video platform: watch seconds, likes, shares and skips with timestamps."""
    config = SyntheticConfig(users=150, items=80, interactions=6_000, seed=4)
    return generate(config, tmp_path_factory.mktemp("platform"))


def check_lists(recs: pd.DataFrame, train: pd.DataFrame, k: int) -> None:
    """Every user of `train` has exactly k distinct ranked items, none of them one of their own."""
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert set(recs["user_id"]) == set(train["user_id"])
    sizes = recs.groupby("user_id").size()
    assert (sizes == k).all(), sizes[sizes != k]
    assert (recs.groupby("user_id")["rank"].apply(list) == pd.Series([list(range(1, k + 1))] * len(sizes),
                                                                      index=sizes.index)).all()
    assert not recs.duplicated(["user_id", "item_id"]).any()
    seen = train[["user_id", "item_id"]].drop_duplicates()
    assert recs.merge(seen, on=["user_id", "item_id"]).empty


def test_batch_recommend_ratings_reports_bad_rows_and_covers_every_user(ratings_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    run = recstack(tmp_path, "batch-recommend", "--train", str(ratings_file), "--k", "5", "--out", str(out),
                   "--model", "ease", "--param", "ease.l2=10")
    assert run.returncode == 0, run.stderr
    assert "2 of 402 record(s) in ratings.csv rejected" in run.stderr
    assert "line 3: value 'lots' is not a number" in run.stderr
    assert "line 5: user_id is missing" in run.stderr
    recs = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    train = pd.read_csv(ratings_file, dtype=str).dropna()
    train = train.loc[train["value"] != "lots"]
    check_lists(recs, train, 5)
    # The taste groups are plain in the data: most of each user's list comes from their own group.
    group = recs["user_id"].str[4:].astype(int) % 2
    own = (recs["item_id"].str[4:].astype(int) // 15) == group
    assert own.mean() >= 0.7  # popularity, blind to the groups, would give about 0.5


def test_batch_recommend_watch_events_with_an_item_catalogue(platform: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    run = recstack(tmp_path, "batch-recommend", "--train", str(platform["interactions"]), "--items",
                   str(platform["items"]), "--model", "tfidf", "--k", "10", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "rejected" not in run.stderr
    recs = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    check_lists(recs, pd.read_csv(platform["interactions"], dtype=str), 10)
    assert pd.to_numeric(recs["score"]).notna().all()


def test_batch_recommend_auto(ratings_file: Path, tmp_path: Path) -> None:
    """The default model is 'auto'; it trains within a small budget and meets the same output contract."""
    assert "auto" in catalog.names()
    out = tmp_path / "recs.csv"
    run = recstack(tmp_path, "batch-recommend", "--train", str(ratings_file), "--k", "3", "--out", str(out),
                   "--time-budget", "5")
    assert run.returncode == 0, run.stderr
    train = pd.read_csv(ratings_file, dtype=str).dropna()
    check_lists(pd.read_csv(out, dtype={"user_id": str, "item_id": str}), train.loc[train["value"] != "lots"], 3)


def test_batch_recommend_refuses_what_cannot_work(ratings_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    unknown = recstack(tmp_path, "batch-recommend", "--train", str(ratings_file), "--out", str(out),
                       "--model", "magic")
    assert unknown.returncode == 2
    assert "unknown model 'magic'" in unknown.stderr
    headless = tmp_path / "plays.csv"
    headless.write_text("account,video,plays\na,x,3\n")
    wrong = recstack(tmp_path, "batch-recommend", "--train", str(headless), "--out", str(out), "--model", "ease")
    assert wrong.returncode == 2
    assert "lacks column(s) ['user_id', 'item_id']" in wrong.stderr
    assert not out.exists()


def test_evaluate_on_each_users_newest_interactions(platform: dict[str, Path], tmp_path: Path) -> None:
    for asked in ("user-temporal", "auto"):
        out = tmp_path / asked
        run = recstack(tmp_path, "evaluate", "--data", str(platform["interactions"]), "--model", "popularity",
                       "--model", "ease", "--split", asked, "--out", str(out))
        assert run.returncode == 0, run.stderr
        assert "user-temporal split" in run.stdout
        split = json.loads((out / "report.json").read_text())["meta"]["split"]
        assert split["kind"] == "user-temporal" and split["asked"] == asked


def test_evaluate_a_file_writes_table_json_and_plot(platform: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    run = recstack(tmp_path, "evaluate", "--data", str(platform["interactions"]), "--items", str(platform["items"]),
                   "--model", "popularity", "--model", "item_knn", "--model", "ease", "--k", "5",
                   "--out", str(out), "--all")
    assert run.returncode == 0, run.stderr
    for column in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "novelty", "diversity",
                   "ndcg(cold)", "ndcg(long_tail)", "fit_s"):
        assert column in run.stdout
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"popularity", "item_knn", "ease"}
    assert report["meta"]["k"] == 5 and report["meta"]["split"]["kind"] == "user"
    ease = report["models"]["ease"]
    for key in ("precision@5", "recall@5", "ndcg@5", "map@5", "hit_rate@5", "mrr@5", "coverage@5", "novelty@5",
                "diversity@5", "ndcg@5[cold]", "ndcg@5[long_tail]", "fit_s"):
        assert key in ease
    assert ease["ndcg@5"] > report["models"]["popularity"]["ndcg@5"]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_tunes_on_training_data_only(ratings_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    run = recstack(tmp_path, "evaluate", "--data", str(ratings_file), "--model", "ease", "--tune", "--trials", "3",
                   "--tune-folds", "2", "--split", "user", "--ratio", "0.7", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "tune ease" in run.stderr
    meta = json.loads((out / "report.json").read_text())["meta"]
    tuning = meta["models"]["ease"]["tuning"]
    assert tuning["n_trials"] == 3 and tuning["folds"] == 2
    assert meta["models"]["ease"]["params"]["l2"] == pytest.approx(tuning["best_params"]["l2"])


def test_evaluate_reads_the_latest_snapshot(platform: dict[str, Path], tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'recstack.db'}")
    store.migrate()
    for kind in ("items", "interactions"):
        ingest(store, read_file(platform[kind]), str(platform[kind]), IngestOptions(kind=kind))  # type: ignore[arg-type]
    snap = Lake(str(tmp_path / "lake")).write_snapshot(store)
    store.close()
    run = recstack(tmp_path, "evaluate", "--split", "leave-last", "--model", "popularity", "--model", "als")
    assert run.returncode == 0, run.stderr
    assert f"snapshot {snap.snapshot_id}" in run.stdout
    reports = list((tmp_path / "reports").glob("evaluate-*/report.json"))
    assert len(reports) == 1
    assert json.loads(reports[0].read_text())["meta"]["split"]["kind"] == "leave-last"
    missing = recstack(tmp_path, "evaluate", "--snapshot", "nope")
    assert missing.returncode == 1 and "no snapshot 'nope'" in missing.stderr
