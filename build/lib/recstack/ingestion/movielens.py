"""MovieLens file formats → `RawBatch` streams in recstack's field names (the parsers behind `datasets`).

Each data set is a closed world (every rated movie is in its movie file), so a rating that names a user
or movie the data set itself does not have is reported as a broken record, with its file and line, rather
than creating an empty item. Every location names its file: "u.data line 17".
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from recstack.errors import ConfigurationError
from recstack.ingestion.pipeline import RawBatch
from recstack.schema import LOCATION, RecordKind

log = logging.getLogger(__name__)

Loaded = dict[RecordKind, Iterator[RawBatch]]
_BROKEN_COLUMNS: Final = ["location", "reason", "record"]
# Genre values that mean "no genre"; as tags or a category they would only add noise.
_NO_GENRE: Final = frozenset({"unknown", "(no genres listed)"})
_YEAR: Final = re.compile(r"\((\d{4})[^)]*\)\s*$")


def _chunks(
    path: Path,
    columns: list[str],
    chunk_size: int,
    delimiter: str,
    encoding: str = "utf-8",
    header: list[str] | None = None,
) -> Iterator[tuple[pd.DataFrame, list[dict[str, str]]]]:
    """Raw string fields in frames of up to `chunk_size` rows, located "<file> line N", plus broken lines.

    `header`, when given, is what the first line must say (MovieLens CSVs); files without one are read
    without quoting, as GroupLens writes them.
    """
    quoting: Literal[0, 3] = csv.QUOTE_MINIMAL if header is not None else csv.QUOTE_NONE
    rows: list[list[str]] = []
    locations: list[str] = []
    broken: list[dict[str, str]] = []
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        if header is not None:
            found = next(reader, [])
            if [c.strip() for c in found] != header:
                raise ConfigurationError(f"{path} does not start with the header {','.join(header)}")
        for fields in reader:
            location = f"{path.name} line {reader.line_num}"
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) != len(columns):
                broken.append({"location": location, "reason": f"expected {len(columns)} fields, found "
                               f"{len(fields)}", "record": delimiter.join(fields)})
                continue
            rows.append(fields)
            locations.append(location)
            if len(rows) >= chunk_size:
                yield _frame(rows, columns, locations), broken
                rows, locations, broken = [], [], []
    if rows or broken:
        yield _frame(rows, columns, locations), broken


def _frame(rows: list[list[str]], columns: list[str], locations: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame[LOCATION] = locations
    return frame


def _split_unknown(
    frame: pd.DataFrame,
    broken: list[dict[str, str]],
    column: str,
    known: set[str],
    where: str,
    delimiter: str,
) -> pd.DataFrame:
    """Move rows whose `column` is not in the data set's own `known` ids to `broken`; returns the rest."""
    unknown = ~frame[column].isin(known)
    for row in frame.loc[unknown].to_dict("records"):
        location = row.pop(LOCATION)
        broken.append({"location": location, "reason": f"{column} '{row[column]}' is not in {where}",
                       "record": delimiter.join(str(v) for v in row.values())})
    return frame.loc[~unknown].reset_index(drop=True)


def _batch(frame: pd.DataFrame, broken: list[dict[str, str]]) -> RawBatch:
    return RawBatch(frame, pd.DataFrame(broken, columns=_BROKEN_COLUMNS))


def _ids(path: Path, delimiter: str, encoding: str = "utf-8", skip_header: bool = False) -> set[str]:
    with open(path, encoding=encoding) as handle:
        lines = handle.read().splitlines()[1 if skip_header else 0 :]
    return {line.split(delimiter, 1)[0].strip() for line in lines if line.strip()}


def _objects(values: list[Any], index: pd.Index) -> pd.Series:
    """An object column, so ints stay ints and None stays None in the item's JSON attributes."""
    return pd.Series(values, index=index, dtype=object)


def _year(title: str) -> int | None:
    match = _YEAR.search(title)
    return int(match.group(1)) if match else None


def _created_at(dates: pd.Series, fmt: str) -> pd.Series:
    """ISO-8601 dates (unambiguous, unlike epoch numbers near 1970); None where the file has no usable date."""
    parsed = pd.to_datetime(dates, format=fmt, errors="coerce", utc=True)
    return parsed.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).where(parsed.notna(), None)


def _genre_tags(flags: np.ndarray, genres: list[str]) -> list[list[str]]:
    return [[g for g, on in zip(genres, row, strict=True) if on and g not in _NO_GENRE] for row in flags]


def _ratings(frame: pd.DataFrame) -> pd.DataFrame:
    frame["event_type"] = "rating"
    return frame


# MovieLens-100K ---------------------------------------------------------------------------------------
_ML100K_ENCODING: Final = "latin-1"


def read_100k(folder: Path, chunk_size: int) -> Loaded:
    return {
        "users": _users_100k(folder, chunk_size),
        "items": _items_100k(folder, chunk_size),
        "interactions": _interactions_100k(folder, chunk_size),
    }


def _users_100k(folder: Path, chunk_size: int) -> Iterator[RawBatch]:
    columns = ["user_id", "age", "gender", "occupation", "zip"]
    for frame, broken in _chunks(folder / "u.user", columns, chunk_size, "|", _ML100K_ENCODING):
        ages = frame["age"].tolist()
        frame["age"] = _objects([int(a) if a.strip().isdigit() else None for a in ages], frame.index)
        yield _batch(frame, broken)


def _genres_100k(folder: Path) -> list[str]:
    pairs = [line.rsplit("|", 1) for line in (folder / "u.genre").read_text(_ML100K_ENCODING).splitlines()]
    return [name for name, _ in sorted((p for p in pairs if len(p) == 2), key=lambda p: int(p[1]))]


def _items_100k(folder: Path, chunk_size: int) -> Iterator[RawBatch]:
    genres = _genres_100k(folder)
    flags = [f"genre_{i}" for i in range(len(genres))]
    columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flags]
    for frame, broken in _chunks(folder / "u.item", columns, chunk_size, "|", _ML100K_ENCODING):
        tags = _genre_tags((frame[flags] == "1").to_numpy(), genres)
        released = pd.to_datetime(frame["release_date"], format="%d-%b-%Y", errors="coerce")
        out = pd.DataFrame({"item_id": frame["item_id"], "title": frame["title"]}, index=frame.index)
        out["category"] = _objects([t[0] if t else None for t in tags], frame.index)
        out["tags"] = _objects(tags, frame.index)
        out["created_at"] = _created_at(frame["release_date"], "%d-%b-%Y")
        out["genres"] = _objects(tags, frame.index)
        out["release_date"] = _objects([d.date().isoformat() if pd.notna(d) else None for d in released],
                                       frame.index)
        out["year"] = _objects([int(d.year) if pd.notna(d) else _year(t) for d, t in
                                zip(released, frame["title"], strict=True)], frame.index)
        for column in ("video_release_date", "imdb_url"):
            out[column] = _objects([v.strip() or None for v in frame[column]], frame.index)
        out[LOCATION] = frame[LOCATION]
        yield _batch(out, broken)


def _interactions_100k(folder: Path, chunk_size: int) -> Iterator[RawBatch]:
    users = _ids(folder / "u.user", "|", _ML100K_ENCODING)
    items = _ids(folder / "u.item", "|", _ML100K_ENCODING)
    columns = ["user_id", "item_id", "value", "timestamp"]
    for frame, broken in _chunks(folder / "u.data", columns, chunk_size, "\t"):
        frame = _split_unknown(frame, broken, "user_id", users, "u.user", "\t")
        frame = _split_unknown(frame, broken, "item_id", items, "u.item", "\t")
        yield _batch(_ratings(frame), broken)


# MovieLens-latest-small -------------------------------------------------------------------------------
_RATINGS_HEADER: Final = ["userId", "movieId", "rating", "timestamp"]
_MOVIES_HEADER: Final = ["movieId", "title", "genres"]
_TAGS_HEADER: Final = ["userId", "movieId", "tag", "timestamp"]
_LINKS_HEADER: Final = ["movieId", "imdbId", "tmdbId"]


def read_latest_small(folder: Path, chunk_size: int) -> Loaded:
    return {
        "users": _users_latest(folder, chunk_size),
        "items": _items_latest(folder, chunk_size),
        "interactions": _interactions_latest(folder, chunk_size),
    }


def _users_latest(folder: Path, chunk_size: int) -> Iterator[RawBatch]:
    """latest-small has no user file: its users are those who rated or tagged a movie it has."""
    movies = _ids(folder / "movies.csv", ",", skip_header=True)
    seen: dict[str, str] = {}
    for name, header in (("ratings.csv", _RATINGS_HEADER), ("tags.csv", _TAGS_HEADER)):
        columns = ["user_id", "item_id", *header[2:]]
        for frame, _ in _chunks(folder / name, columns, chunk_size, ",", header=header):
            known = frame.loc[frame["item_id"].isin(movies)]
            for user, location in zip(known["user_id"], known[LOCATION], strict=True):
                seen.setdefault(user, location)
    users = list(seen)
    for start in range(0, len(users), chunk_size):
        part = users[start : start + chunk_size]
        yield _batch(pd.DataFrame({"user_id": part, LOCATION: [seen[u] for u in part]}), [])


def _user_tags(folder: Path, movies: set[str]) -> dict[str, list[str]]:
    """Each movie's distinct free-text tags in first-use order (case-insensitively distinct)."""
    tags: dict[str, dict[str, str]] = {}
    orphans = 0
    for frame, _ in _chunks(folder / "tags.csv", ["user_id", "item_id", "tag", "timestamp"], 1 << 20, ",",
                            header=_TAGS_HEADER):
        for item, tag in zip(frame["item_id"], frame["tag"], strict=True):
            if item not in movies:
                orphans += 1
            elif tag.strip():
                tags.setdefault(item, {}).setdefault(tag.strip().casefold(), tag.strip())
    if orphans:
        log.warning("%d tags name movies not in movies.csv; they are left out", orphans)
    return {item: list(by_key.values()) for item, by_key in tags.items()}


def _links(folder: Path) -> dict[str, tuple[str, str]]:
    path = folder / "links.csv"
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, str]] = {}
    for frame, _ in _chunks(path, ["item_id", "imdb", "tmdb"], 1 << 20, ",", header=_LINKS_HEADER):
        out.update(zip(frame["item_id"], zip(frame["imdb"], frame["tmdb"], strict=True), strict=True))
    return out


def _items_latest(folder: Path, chunk_size: int) -> Iterator[RawBatch]:
    user_tags = _user_tags(folder, _ids(folder / "movies.csv", ",", skip_header=True))
    links = _links(folder)
    columns = ["item_id", "title", "genres"]
    for frame, broken in _chunks(folder / "movies.csv", columns, chunk_size, ",", header=_MOVIES_HEADER):
        index = frame.index
        genres = [[g for g in text.split("|") if g and g not in _NO_GENRE] for text in frame["genres"]]
        titles = [t.strip() for t in frame["title"]]
        out = pd.DataFrame({"item_id": frame["item_id"], "title": titles}, index=index)
        out["category"] = _objects([g[0] if g else None for g in genres], index)
        ids = frame["item_id"].tolist()
        tags = [_distinct(g + user_tags.get(i, [])) for g, i in zip(genres, ids, strict=True)]
        out["tags"] = _objects(tags, index)
        out["genres"] = _objects(genres, index)
        out["year"] = _objects([_year(t) for t in titles], index)
        imdb, tmdb = zip(*[links.get(i, ("", "")) for i in ids], strict=True) if ids else ((), ())
        out["imdb_url"] = _objects([f"https://www.imdb.com/title/tt{v.strip()}/" if v.strip() else None
                                    for v in imdb], index)
        out["tmdb_id"] = _objects([v.strip() or None for v in tmdb], index)
        out[LOCATION] = frame[LOCATION]
        yield _batch(out, broken)


def _distinct(tags: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for tag in tags:
        seen.setdefault(tag.casefold(), tag)
    return list(seen.values())


def _interactions_latest(folder: Path, chunk_size: int) -> Iterator[RawBatch]:
    movies = _ids(folder / "movies.csv", ",", skip_header=True)
    columns = ["user_id", "item_id", "value", "timestamp"]
    for frame, broken in _chunks(folder / "ratings.csv", columns, chunk_size, ",", header=_RATINGS_HEADER):
        frame = _split_unknown(frame, broken, "item_id", movies, "movies.csv", ",")
        yield _batch(_ratings(frame), broken)
