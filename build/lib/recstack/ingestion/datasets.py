"""Public data sets (MovieLens-100K, MovieLens-latest-small): a registry, a downloader and loaders.

`load` turns a data set folder into `RawBatch` streams already in recstack's field names, so the data sets
go through the same pipeline, validation and quarantine as any other source:

- interactions: user_id, item_id, event_type="rating", value=the rating, timestamp in Unix seconds
  (the pipeline derives deterministic event ids, so loading twice stores nothing twice);
- items: item_id, title, category (the first genre), tags (all genres, then latest-small's free-text
  tags), created_at (the release date, where the file has one) and attributes (genres, year, IMDb …);
- users: user_id, plus age/gender/occupation/zip as attributes where the data set has them.

Each data set is a closed world (every rated movie is in its movie file), so a rating that names a user
or movie the data set itself does not have is reported as a broken record, with its file and line, rather
than creating an empty item. Every location names its file: "u.data line 17".
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import urlparse

import httpx

from recstack.errors import BackendUnavailable, ChecksumMismatch, ConfigurationError
from recstack.ingestion.movielens import Loaded, read_100k, read_latest_small

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Dataset:
    """One public data set: where to get it and what its folder must hold.

    `name` is also the folder name, locally and under a download directory. `archive_root` is the folder
    inside the zip; `sha256` (of the zip) and `size` (bytes) are None where upstream changes the archive.
    """

    name: str
    url: str
    archive_root: str
    files: tuple[str, ...]
    description: str
    reader: Callable[[Path, int], Loaded] = field(repr=False, compare=False)
    sha256: str | None = None
    size: int | None = None


def dataset(name: str) -> Dataset:
    """The registry entry for `name`; ConfigurationError naming the known data sets otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigurationError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


def _complete(folder: Path, ds: Dataset) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in ds.files)


def find_local(name: str, home: str | Path | None = None) -> Path | None:
    """The first folder holding every file of data set `name`, or None.

    Looks in `$RECSTACK_DATA_DIR/<name>` (or `$RECSTACK_DATA_DIR` itself), then `shared/data/<name>` in
    the current directory and each of its parents (so `../shared/data` next to a checkout is found), then
    `<home>/datasets/<name>`, where `download` puts data sets; `home` defaults to `$RECSTACK_HOME` or
    `./var`, the same default as the settings.
    """
    ds = dataset(name)
    candidates: list[Path] = []
    env = os.environ.get("RECSTACK_DATA_DIR")
    if env:
        candidates += [Path(env) / ds.name, Path(env)]
    cwd = Path.cwd()
    candidates += [parent / "shared" / "data" / ds.name for parent in [cwd, *cwd.parents]]
    candidates.append(Path(home or os.environ.get("RECSTACK_HOME") or "var") / "datasets" / ds.name)
    for candidate in candidates:
        if _complete(candidate, ds):
            return candidate
    return None


def download(
    name: str,
    dest_dir: str | Path,
    progress: Callable[[int], None] | None = None,
    *,
    force: bool = False,
    client: httpx.Client | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Download and unpack data set `name` into `dest_dir/<name>` and return that folder.

    A folder that already holds every file is returned as is unless `force`. The archive streams to a
    `.part` file that is renamed into place only once complete and, when the registry knows its SHA-256,
    verified; the folder appears (by rename) only once fully unpacked, so an interrupted download never
    leaves something that looks complete. `progress` receives the bytes received, chunk by chunk.

    Raises BackendUnavailable (unreachable, or an HTTP error status), ChecksumMismatch, ConfigurationError
    (the archive lacks files the loader needs).
    """
    ds = dataset(name)
    dest = Path(dest_dir)
    target = dest / ds.name
    if _complete(target, ds) and not force:
        log.info("%s is already in %s", ds.name, target)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / (PurePosixPath(urlparse(ds.url).path).name or f"{ds.name}.zip")
    part = archive.with_name(archive.name + ".part")
    try:
        digest = _fetch(ds.url, part, progress, client, timeout_s)
        if ds.sha256 is not None and digest != ds.sha256.lower():
            raise ChecksumMismatch(
                f"{ds.url} has SHA-256 {digest}, expected {ds.sha256}; the download is corrupt or the file "
                "changed upstream"
            )
        os.replace(part, archive)
    finally:
        part.unlink(missing_ok=True)
    _unpack(archive, ds, target)
    log.info("downloaded %s to %s", ds.name, target)
    return target


def _fetch(
    url: str,
    part: Path,
    progress: Callable[[int], None] | None,
    client: httpx.Client | None,
    timeout_s: float,
) -> str:
    """Stream `url` into `part`; returns the SHA-256 of what was written."""
    own = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=timeout_s)
    digest = hashlib.sha256()
    try:
        with http.stream("GET", url) as response:
            if response.status_code >= 400:
                status = f"{response.status_code} {response.reason_phrase}".strip()
                raise BackendUnavailable(f"GET {url} answered {status}")
            with open(part, "wb") as out:
                for chunk in response.iter_bytes(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    if progress is not None:
                        progress(len(chunk))
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"cannot download {url}: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            http.close()
    return digest.hexdigest()


def _unpack(archive: Path, ds: Dataset, target: Path) -> None:
    """Extract the archive's `archive_root` folder to `target`, refusing paths that escape it."""
    staging = Path(tempfile.mkdtemp(prefix=f".{ds.name}-", dir=target.parent))
    prefix = ds.archive_root.rstrip("/") + "/"
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                if member.is_dir() or not member.filename.startswith(prefix):
                    continue
                relative = PurePosixPath(member.filename[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise ConfigurationError(f"{archive.name} holds an unsafe path: {member.filename}")
                out = staging / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        missing = [f for f in ds.files if not (staging / f).is_file()]
        if missing:
            raise ConfigurationError(f"{archive.name} lacks {', '.join(prefix + f for f in missing)}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except zipfile.BadZipFile as exc:
        raise ChecksumMismatch(f"{archive} is not a valid zip archive: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load(name: str, path: str | Path | None = None, chunk_size: int = 50_000) -> Loaded:
    """Users, items and interactions of data set `name` as lazy RawBatch streams, in that order.

    Ingest them in the order given (users, items, interactions) so the catalogue is complete before the
    ratings that refer to it. `path` is the data set's folder; without it `find_local` looks for one.
    Raises ConfigurationError when no folder is found or the folder lacks a file.
    """
    ds = dataset(name)
    folder = Path(path) if path is not None else find_local(name)
    if folder is None:
        raise ConfigurationError(
            f"{name} is not available locally; run `recstack datasets download {name}` or pass its folder"
        )
    missing = [f for f in ds.files if not (folder / f).is_file()]
    if missing:
        raise ConfigurationError(f"{folder} is not a {name} folder: it lacks {', '.join(missing)}")
    return ds.reader(folder, chunk_size)


DATASETS: Final[dict[str, Dataset]] = {
    "movielens-100k": Dataset(
        name="movielens-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        archive_root="ml-100k",
        files=("u.data", "u.item", "u.user", "u.genre"),
        description="MovieLens 100K: 100,000 ratings (1-5) by 943 users of 1,682 films, with demographics",
        # GroupLens publishes the MD5 (0e33842e24a9c977be4e0107933c0723); this is the same archive's SHA-256.
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        size=4_924_029,
        reader=read_100k,
    ),
    "movielens-latest-small": Dataset(
        name="movielens-latest-small",
        url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        archive_root="ml-latest-small",
        files=("ratings.csv", "movies.csv", "tags.csv"),
        description="MovieLens latest-small: about 100,000 ratings (0.5-5) and free-text tags by 610 users",
        # "latest" is regenerated from time to time, so no fixed checksum.
        sha256=None,
        reader=read_latest_small,
    ),
}

__all__ = ["DATASETS", "ChecksumMismatch", "Dataset", "Loaded", "dataset", "download", "find_local", "load"]
