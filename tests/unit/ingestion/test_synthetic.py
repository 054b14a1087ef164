"""The synthetic video platform: determinism, exact counts, the column contract, behavioural semantics,
streaming, and that personalisation beats popularity on it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from recstack.errors import ConfigurationError
from recstack.ingestion.files import read_file
from recstack.ingestion.synthetic import (
    SKIP_MAX_S,
    SyntheticConfig,
    generate,
    iso_timestamps,
    iter_interactions,
    make_catalog,
)
from recstack.schema import validate_interactions, validate_items, validate_users

SMALL = SyntheticConfig(users=300, items=200, interactions=6_000, seed=7)
KINDS = ("users", "items", "interactions")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(SMALL, tmp_path_factory.mktemp("csv"), fmt="csv", chunk_size=1_000)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The Parquet output read back: typed frames that the behavioural checks work on."""
    files = generate(SMALL, tmp_path_factory.mktemp("parquet"), fmt="parquet", chunk_size=1_000)
    return {kind: pq.read_table(path).to_pandas() for kind, path in files.items()}


def read_bytes(files: dict[str, Path]) -> dict[str, bytes]:
    return {kind: path.read_bytes() for kind, path in files.items()}


def test_same_seed_gives_identical_files_and_another_seed_does_not(
    tmp_path: Path, csv_files: dict[str, Path]
) -> None:
    again = generate(SMALL, tmp_path / "again", fmt="csv", chunk_size=1_000)
    assert read_bytes(again) == read_bytes(csv_files)
    first = generate(SMALL, tmp_path / "p1", fmt="parquet")
    second = generate(SMALL, tmp_path / "p2", fmt="parquet")
    assert read_bytes(first) == read_bytes(second)
    other = generate(dataclasses.replace(SMALL, seed=8), tmp_path / "other", fmt="csv", chunk_size=1_000)
    different = read_bytes(other)
    assert all(different[kind] != read_bytes(csv_files)[kind] for kind in KINDS)


def test_counts_are_exactly_as_configured(tables: dict[str, pd.DataFrame]) -> None:
    assert [len(tables[kind]) for kind in KINDS] == [SMALL.users, SMALL.items, SMALL.interactions]
    assert tables["users"]["user_id"].is_unique and tables["items"]["item_id"].is_unique
    assert tables["interactions"]["event_id"].is_unique
    assert tables["users"]["user_id"].iloc[0] == "u000000"
    assert tables["items"]["item_id"].iloc[42] == "v000042"


def test_csv_follows_the_column_contract(csv_files: dict[str, Path]) -> None:
    read = {kind: pd.read_csv(path, dtype=str, keep_default_na=False) for kind, path in csv_files.items()}
    assert list(read["users"].columns) == ["user_id", "country", "age_band", "device", "created_at"]
    assert list(read["items"].columns) == [
        "item_id", "title", "category", "tags", "description", "duration_s", "created_at",
    ]
    assert list(read["interactions"].columns) == [
        "event_id", "user_id", "item_id", "event_type", "value", "timestamp",
    ]
    for kind, column in (("users", "created_at"), ("items", "created_at"), ("interactions", "timestamp")):
        assert read[kind][column].astype(str).str.fullmatch(ISO_Z).all(), column
    assert read["items"]["tags"].str.count(r"\|").between(1, 4).all()
    assert set(read["interactions"]["event_type"]) == {"watch", "like", "skip", "share"}


def test_parquet_types(tmp_path: Path) -> None:
    files = generate(dataclasses.replace(SMALL, interactions=100), tmp_path, fmt="parquet")
    schemas = {kind: pq.read_schema(path) for kind, path in files.items()}
    utc_ms = pa.timestamp("ms", tz="UTC")
    assert schemas["users"].field("created_at").type == utc_ms
    assert schemas["items"].field("created_at").type == utc_ms
    assert schemas["interactions"].field("timestamp").type == utc_ms
    assert schemas["items"].field("tags").type == pa.list_(pa.string())
    assert schemas["items"].field("duration_s").type == pa.float64()
    assert schemas["interactions"].field("value").type == pa.float64()
    for column in ("event_id", "user_id", "item_id"):
        assert schemas["interactions"].field(column).type == pa.string()


def test_the_ingestion_layer_accepts_every_record(csv_files: dict[str, Path]) -> None:
    validators = {"users": validate_users, "items": validate_items, "interactions": validate_interactions}
    for kind, path in csv_files.items():
        for batch in read_file(path, chunk_size=2_500):
            assert batch.broken.empty
            result = validators[kind](batch.frame)
            assert result.n_rejected == 0, result.rejected.head().to_dict("records")


def test_interactions_refer_to_known_users_and_items_at_valid_times(tables: dict[str, pd.DataFrame]) -> None:
    users, items, events = tables["users"], tables["items"], tables["interactions"]
    assert events["user_id"].isin(users["user_id"]).all() and events["item_id"].isin(items["item_id"]).all()
    joined = events.merge(users, on="user_id").merge(items, on="item_id", suffixes=("_user", "_item"))
    assert (joined["timestamp"] > joined["created_at_user"]).all()
    assert (joined["timestamp"] > joined["created_at_item"]).all()
    assert (events["timestamp"] >= SMALL.start).all()
    # Rows come grouped by user, each user's rows strictly increasing in time.
    assert events["user_id"].is_monotonic_increasing
    step = events.groupby("user_id")["timestamp"].diff().dropna()
    assert (step > pd.Timedelta(0)).all()


def test_event_types_mean_what_they_say(tables: dict[str, pd.DataFrame]) -> None:
    events = tables["interactions"].merge(tables["items"][["item_id", "duration_s"]], on="item_id")
    kind, value = events["event_type"], events["value"]
    watch, skip = events[kind == "watch"], events[kind == "skip"]
    assert (watch["value"] > 0).all() and (watch["value"] <= watch["duration_s"]).all()
    assert (skip["value"] > 0).all() and (skip["value"] <= SKIP_MAX_S).all()
    assert (skip["value"] <= skip["duration_s"] / 2).all()
    assert (value[kind.isin(["like", "share"])] == 1.0).all()
    # A like or share follows a watch of the same video by the same user (possibly via a like).
    previous = events.groupby("user_id")[["item_id", "event_type"]].shift()
    reaction = kind.isin(["like", "share"])
    assert (previous.loc[reaction, "item_id"] == events.loc[reaction, "item_id"]).all()
    assert previous.loc[reaction, "event_type"].isin(["watch", "like"]).all()
    # Liked videos were watched longer than the average watch, and skips are a real share of impressions.
    fraction = watch["value"] / watch["duration_s"]
    liked = events.loc[reaction & (kind == "like")].index - 1
    assert fraction.loc[liked].mean() > fraction.mean() + 0.1
    assert 0.05 < (kind == "skip").mean() < 0.6


def test_titles_and_tags_carry_the_category(tables: dict[str, pd.DataFrame]) -> None:
    items = tables["items"]
    categories_of: dict[str, set[str]] = {}
    for category, tags in zip(items["category"], items["tags"], strict=True):
        for tag in tags:
            categories_of.setdefault(tag, set()).add(category)
    # Apart from a few global tags, a tag names exactly one category, so text predicts the category.
    crossing = {tag for tag, cats in categories_of.items() if len(cats) > 1}
    assert crossing <= {"fyp", "viral", "trending", "foryou", "shorts"}
    assert len(categories_of) > 5 * SMALL.categories
    in_title = [sum(t in title.lower().split() for t in tags) for title, tags in zip(
        items["title"], items["tags"], strict=True)]
    assert np.mean(in_title) >= 1.5


def test_personalisation_beats_popularity() -> None:
    """Item-cosine kNN vs global popularity, hit rate@10 on one random held-out watched video per user."""
    config = SyntheticConfig(users=2_000, items=1_000, interactions=60_000, seed=3)
    events = pd.concat(iter_interactions(config, chunk_size=60_000), ignore_index=True)
    watched = events.loc[events["event_type"] == "watch", ["user_id", "item_id"]].drop_duplicates()
    user, _ = pd.factorize(watched["user_id"])
    item = watched["item_id"].str.slice(1).astype(int).to_numpy()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(watched))
    first = pd.Series(order).groupby(user[order]).first()
    counts = np.bincount(user)
    held_out = first[counts[first.index] >= 3].to_numpy()
    train = np.ones(len(watched), dtype=bool)
    train[held_out] = False
    shape = (user.max() + 1, config.items)
    x = sp.csr_matrix((np.ones(train.sum()), (user[train], item[train])), shape=shape)
    norms = np.sqrt(np.asarray(x.sum(axis=0))).ravel() + 1e-9
    normalised = sp.csr_matrix(x.multiply(1.0 / norms))
    similarity = (normalised.T @ normalised).toarray()
    np.fill_diagonal(similarity, 0.0)
    evaluated = user[held_out]
    seen = x[evaluated].toarray() > 0

    def hit_rate(scores: np.ndarray) -> float:
        top = np.argsort(-np.where(seen, -np.inf, scores), axis=1)[:, :10]
        return float((top == item[held_out][:, None]).any(axis=1).mean())

    knn = hit_rate(np.asarray(x[evaluated] @ similarity))
    popularity = hit_rate(np.broadcast_to(np.asarray(x.sum(axis=0), dtype=float), seen.shape))
    assert len(evaluated) > 1_000
    assert popularity > 0.03, "popularity should be a real baseline, not a strawman"
    assert knn >= 1.3 * popularity, (knn, popularity)


def test_chunking_changes_nothing(tmp_path: Path, csv_files: dict[str, Path]) -> None:
    written: list[int] = []
    small = generate(SMALL, tmp_path / "small", fmt="csv", chunk_size=97, progress=written.append)
    assert read_bytes(small) == read_bytes(csv_files)
    assert sum(written) == SMALL.interactions and max(written) == 97
    one = pq.read_table(generate(SMALL, tmp_path / "one", fmt="parquet", chunk_size=10**9)["interactions"])
    many = pq.read_table(generate(SMALL, tmp_path / "many", fmt="parquet", chunk_size=333)["interactions"])
    assert one.equals(many)
    chunks = list(iter_interactions(SMALL, chunk_size=1_000))
    assert [len(c) for c in chunks] == [1_000] * 6
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), one.to_pandas())


def test_make_catalog_matches_the_files(tables: dict[str, pd.DataFrame]) -> None:
    users, items = make_catalog(SMALL)
    pd.testing.assert_frame_equal(users, tables["users"])
    assert items["tags"].map(type).eq(list).all()
    pd.testing.assert_frame_equal(items.drop(columns="tags"), tables["items"].drop(columns="tags"))


def test_iso_timestamps_by_hand() -> None:
    ms = np.array([0, 1_772_366_400_123, 1_709_251_199_999])
    assert iso_timestamps(ms).to_pylist() == [
        "1970-01-01T00:00:00.000Z", "2026-03-01T12:00:00.123Z", "2024-02-29T23:59:59.999Z",
    ]


@pytest.mark.parametrize(
    "change", [{"users": 0}, {"temperature": 0.0}, {"interactions": -1}, {"latent_dim": 1}]
)
def test_invalid_config_is_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        dataclasses.replace(SMALL, **change)


def test_unknown_format_and_chunk_size_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        generate(SMALL, tmp_path, fmt="xlsx")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        next(iter_interactions(SMALL, chunk_size=0))
