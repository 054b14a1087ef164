"""MovieLens data sets: loading the real folders, field mapping, broken lines, and the downloader."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import unavailable
from recstack.errors import BackendUnavailable, ConfigurationError
from recstack.ingestion import IngestOptions, ingest
from recstack.ingestion import datasets as ds
from recstack.schema import VALIDATORS
from recstack.storage import open_store


@dataclasses.dataclass
class Loaded:
    """Every batch of a data set, validated: what would be stored, and what would be quarantined."""

    accepted: dict[str, pd.DataFrame]
    broken: dict[str, pd.DataFrame]
    rejected: dict[str, pd.DataFrame]


def load_all(name: str, path: Path, chunk_size: int = 50_000) -> Loaded:
    out = Loaded({}, {}, {})
    for kind, batches in ds.load(name, path, chunk_size).items():
        accepted, broken, rejected = [], [], []
        for batch in batches:
            checked = VALIDATORS[kind](batch.frame)
            accepted.append(checked.accepted)
            rejected.append(checked.rejected)
            broken.append(batch.broken)
        out.accepted[kind] = pd.concat(accepted, ignore_index=True)
        out.broken[kind] = pd.concat(broken, ignore_index=True)
        out.rejected[kind] = pd.concat(rejected, ignore_index=True)
    return out


def local(name: str) -> Path:
    path = ds.find_local(name)
    if path is None:
        unavailable(name, "not found: set RECSTACK_DATA_DIR or put it in ../shared/data/" + name)
    return path


@pytest.fixture(scope="module")
def ml100k() -> Loaded:
    return load_all("movielens-100k", local("movielens-100k"))


@pytest.fixture(scope="module")
def latest_small() -> Loaded:
    return load_all("movielens-latest-small", local("movielens-latest-small"))


def test_movielens_100k_counts(ml100k: Loaded) -> None:
    counts = {k: len(v) for k, v in ml100k.accepted.items()}
    assert counts == {"users": 943, "items": 1682, "interactions": 100_000}
    assert all(frame.empty for frame in [*ml100k.broken.values(), *ml100k.rejected.values()])
    assert list(ml100k.accepted) == ["users", "items", "interactions"]


def test_movielens_100k_fields(ml100k: Loaded) -> None:
    first = ml100k.accepted["interactions"].iloc[0]
    assert first[["user_id", "item_id", "event_type", "value", "timestamp"]].tolist() == [
        "196", "242", "rating", 3.0, 881_250_949_000,
    ]
    assert first["_location"] == "u.data line 1"
    items = ml100k.accepted["items"].set_index("item_id")
    toy_story = items.loc["1"]
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["category"] == "Animation"
    assert toy_story["tags"] == ["Animation", "Children's", "Comedy"]
    assert toy_story["created_at"] == 788_918_400_000  # 01-Jan-1995
    assert toy_story["attributes"] == {
        "genres": ["Animation", "Children's", "Comedy"], "release_date": "1995-01-01", "year": 1995,
        "imdb_url": "http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)",
    }
    # Released before 1995 (the floor for interaction times, not for catalogue dates): kept as it is.
    good_morning = items.loc["1373"]
    assert good_morning["created_at"] == 34_473_600_000
    assert good_morning["attributes"]["release_date"] == "1971-02-04"
    unknown = items.loc["267"]  # the one film with no date and only the "unknown" genre
    assert (unknown["category"], unknown["tags"], unknown["created_at"]) == (None, [], None)
    user = ml100k.accepted["users"].set_index("user_id").loc["1"]
    assert user["attributes"] == {"age": 24, "gender": "M", "occupation": "technician", "zip": "85711"}


def test_movielens_latest_small_counts(latest_small: Loaded) -> None:
    counts = {k: len(v) for k, v in latest_small.accepted.items()}
    assert counts == {"users": 610, "items": 9742, "interactions": 100_836}
    assert all(frame.empty for frame in latest_small.rejected.values())
    # The GroupLens release has no broken line. A copy with ratings for movies outside movies.csv (the
    # shared copy has one appended line) gets them reported, never silently stored or dropped.
    broken = latest_small.broken["interactions"]
    assert broken["reason"].str.endswith("is not in movies.csv").all()
    assert latest_small.broken["users"].empty and latest_small.broken["items"].empty


def test_movielens_latest_small_genres_and_tags(latest_small: Loaded) -> None:
    items = latest_small.accepted["items"].set_index("item_id")
    toy_story = items.loc["1"]
    assert toy_story["category"] == "Adventure"
    genres = ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert toy_story["tags"][:5] == genres
    assert {"pixar", "fun"} <= set(toy_story["tags"][5:])
    assert toy_story["attributes"]["genres"] == genres
    assert toy_story["attributes"]["year"] == 1995
    assert toy_story["attributes"]["imdb_url"] == "https://www.imdb.com/title/tt0114709/"
    no_genre = items.loc[items["title"] == "Black Mirror"].iloc[0]
    assert no_genre["category"] is None and "(no genres listed)" not in no_genre["tags"]
    rating = latest_small.accepted["interactions"].iloc[0]
    assert rating[["user_id", "item_id", "value", "timestamp"]].tolist() == ["1", "1", 4.0, 964_982_703_000]


@pytest.mark.slow
def test_movielens_100k_ingests_into_the_store(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    for kind, batches in ds.load("movielens-100k", local("movielens-100k")).items():
        run = ingest(store, batches, "movielens-100k", IngestOptions(kind=kind))
        assert run.rejected == 0
    counts = store.counts()
    assert [counts[k] for k in ("users", "items", "interactions", "quarantined")] == [943, 1682, 100_000, 0]
    store.close()


# small folders and archives ----------------------------------------------------------------------------
GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


def flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


MINI_100K = {
    "u.data": "1\t10\t5\t881250949\n2\t20\t3\t881250950\n2\t20\n1\t99\t4\t881250951\n\n",
    "u.item": f"10|Café (1994)|01-Jan-1996||http://imdb/10|{flags('Comedy', 'Drama')}\n"
              f"20|Noir (1950)|15-Mar-1950||http://imdb/20|{flags('Film-Noir')}\n",
    "u.user": "1|24|M|technician|85711\n2|53|F|other|T8H1N\n",
    "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n",
}


def write_folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_bytes(text.encode("latin-1"))
    return root


def test_broken_lines_and_foreign_ids_are_reported_with_their_line(tmp_path: Path) -> None:
    loaded = load_all("movielens-100k", write_folder(tmp_path / "movielens-100k", MINI_100K), chunk_size=1)
    assert loaded.accepted["interactions"]["item_id"].tolist() == ["10", "20"]
    assert loaded.broken["interactions"].to_dict("records") == [
        {"location": "u.data line 3", "reason": "expected 4 fields, found 2", "record": "2\t20"},
        {"location": "u.data line 4", "reason": "item_id '99' is not in u.item",
         "record": "1\t99\t4\t881250951"},
    ]
    items = loaded.accepted["items"].set_index("item_id")
    assert items.loc["10", "title"] == "Café (1994)"  # Latin-1
    assert items.loc["20", "tags"] == ["Film-Noir"] and items.loc["20", "attributes"]["year"] == 1950


def test_load_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown data set 'netflix'"):
        ds.load("netflix", tmp_path)
    partial = write_folder(tmp_path / "partial", {"u.data": MINI_100K["u.data"]})
    with pytest.raises(ConfigurationError, match=r"lacks u\.item, u\.user, u\.genre"):
        ds.load("movielens-100k", partial)


def test_find_local_prefers_data_dir_then_shared_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work" / "checkout"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("RECSTACK_DATA_DIR", raising=False)
    monkeypatch.setenv("RECSTACK_HOME", str(tmp_path / "home"))
    assert ds.find_local("movielens-100k") is None
    home = write_folder(tmp_path / "home" / "datasets" / "movielens-100k", MINI_100K)
    assert ds.find_local("movielens-100k") == home
    shared = write_folder(tmp_path / "work" / "shared" / "data" / "movielens-100k", MINI_100K)
    assert ds.find_local("movielens-100k") == shared
    explicit = write_folder(tmp_path / "elsewhere" / "movielens-100k", MINI_100K)
    monkeypatch.setenv("RECSTACK_DATA_DIR", str(tmp_path / "elsewhere"))
    assert ds.find_local("movielens-100k") == explicit


def mini_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/", "")
        for name, text in MINI_100K.items():
            archive.writestr(f"ml-100k/{name}", text.encode("latin-1"))
        archive.writestr("ml-100k/README", "tiny")
        archive.writestr("__MACOSX/ml-100k/._u.data", "junk")
    return buffer.getvalue()


class _Files(BaseHTTPRequestHandler):
    server: _FileServer

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        body = self.server.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FileServer(ThreadingHTTPServer):
    files: dict[str, bytes]
    hits: list[str]


@pytest.fixture
def grouplens(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FileServer]:
    """A local stand-in for files.grouplens.org, with the registry pointing at it."""
    server = _FileServer(("127.0.0.1", 0), _Files)
    server.files, server.hits = {"/ml-100k.zip": mini_archive()}, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    entry = dataclasses.replace(
        ds.DATASETS["movielens-100k"],
        url=f"http://127.0.0.1:{server.server_port}/ml-100k.zip",
        sha256=hashlib.sha256(server.files["/ml-100k.zip"]).hexdigest(),
    )
    monkeypatch.setitem(ds.DATASETS, "movielens-100k", entry)
    yield server
    server.shutdown()
    server.server_close()


def test_download_fetches_verifies_and_unpacks(grouplens: _FileServer, tmp_path: Path) -> None:
    received: list[int] = []
    folder = ds.download("movielens-100k", tmp_path / "datasets", progress=received.append)
    assert folder == tmp_path / "datasets" / "movielens-100k"
    assert sum(received) == len(grouplens.files["/ml-100k.zip"])
    assert sorted(p.name for p in folder.iterdir()) == ["README", "u.data", "u.genre", "u.item", "u.user"]
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["ml-100k.zip", "movielens-100k"]
    loaded = load_all("movielens-100k", folder)
    assert {k: len(v) for k, v in loaded.accepted.items()} == {"users": 2, "items": 2, "interactions": 2}

    assert ds.download("movielens-100k", tmp_path / "datasets") == folder
    assert len(grouplens.hits) == 1  # already there: nothing fetched
    ds.download("movielens-100k", tmp_path / "datasets", force=True)
    assert len(grouplens.hits) == 2


def test_a_checksum_mismatch_leaves_nothing_behind(
    grouplens: _FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dataclasses.replace(ds.DATASETS["movielens-100k"], sha256="0" * 64)
    monkeypatch.setitem(ds.DATASETS, "movielens-100k", entry)
    with pytest.raises(ds.ChecksumMismatch, match="expected 0000"):
        ds.download("movielens-100k", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_archive_without_the_needed_files_is_refused(
    grouplens: _FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dataclasses.replace(ds.DATASETS["movielens-100k"], files=("u.data", "u.occupation"), sha256=None)
    monkeypatch.setitem(ds.DATASETS, "movielens-100k", entry)
    with pytest.raises(ConfigurationError, match=r"lacks ml-100k/u\.occupation"):
        ds.download("movielens-100k", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["ml-100k.zip"]


def test_a_missing_archive_is_backend_unavailable(grouplens: _FileServer, tmp_path: Path) -> None:
    grouplens.files.clear()
    with pytest.raises(BackendUnavailable, match="404"):
        ds.download("movielens-100k", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_registry_points_at_grouplens() -> None:
    assert ds.DATASETS["movielens-100k"].url == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert ds.DATASETS["movielens-latest-small"].url.endswith("/ml-latest-small.zip")
    assert ds.DATASETS["movielens-latest-small"].sha256 is None
