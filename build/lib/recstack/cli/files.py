"""Interaction and item files for the training commands, read through the schema's validation.

Bad rows are reported with their location and reason and left out; the rest is used. Nothing is stored:
these commands take a file in and give a file or a report out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from recstack.cli.common import err_console
from recstack.errors import ConfigurationError
from recstack.schema import LOCATION, ValidationRules, validate_interactions, validate_items

INTERACTIONS_HEADER = "user_id,item_id,value[,timestamp][,event_type]"


@dataclass(frozen=True)
class LoadedFile:
    """Validated records of one file: `frame` holds the accepted ones, `rejected` (location, reason, record)
    the rest; `read` counts every record the file held."""

    path: Path
    frame: pd.DataFrame
    rejected: pd.DataFrame
    read: int


def read_records(path: Path, kind: Literal["interactions", "items"], rules: ValidationRules) -> LoadedFile:
    """Read a CSV/TSV/Parquet/JSON-lines file and validate it with the same rules ingestion uses.

    Interactions may lack `timestamp`, `event_type` and `value`: a missing timestamp is not a reason to
    reject a row here (training does not need one), and columns absent from the file are absent from the
    frame, so weighting infers what the values are from the values alone rather than from a default event
    type. Raises `ConfigurationError` when the file lacks an id column or holds no valid record.
    """
    from recstack.ingestion.files import read_file

    key = "item_id" if kind == "items" else "user_id"
    needed = ("item_id",) if kind == "items" else ("user_id", "item_id")
    frames: list[pd.DataFrame] = []
    rejected: list[pd.DataFrame] = []
    read = 0
    columns: set[str] = set()
    now_ms = int(time.time() * 1000)
    for batch in read_file(path):
        read += len(batch.frame) + len(batch.broken)
        if len(batch.broken):
            rejected.append(batch.broken)
        raw = batch.frame
        columns |= set(raw.columns)
        missing = [c for c in needed if c not in raw.columns]
        if missing:
            expected = INTERACTIONS_HEADER if kind == "interactions" else "item_id,title,category,tags,…"
            raise ConfigurationError(f"{path} lacks column(s) {missing}; expected a header like {expected}")
        if kind == "interactions" and "timestamp" not in raw.columns:
            raw = raw.assign(timestamp=str(now_ms))
        validated = (validate_interactions if kind == "interactions" else validate_items)(raw, rules)
        frames.append(validated.accepted.drop(columns=[LOCATION], errors="ignore"))
        if validated.n_rejected:
            rejected.append(validated.rejected)
    if not frames or sum(len(f) for f in frames) == 0:
        raise ConfigurationError(f"{path} holds no valid {kind} ({read:,} record(s) read)")
    frame = pd.concat(frames, ignore_index=True)
    if kind == "interactions":
        absent = [c for c in ("timestamp", "event_type", "value") if c not in columns]
        frame = frame.drop(columns=["event_id", *absent])
    else:
        frame = frame.drop_duplicates(key, keep="last").reset_index(drop=True)
    bad = pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame(columns=["location", "reason"])
    return LoadedFile(path, frame, bad, read)


def report_rejects(loaded: LoadedFile, shown: int = 5) -> None:
    """Name the first few rejected records on stderr; the command goes on with the valid ones."""
    if loaded.rejected.empty:
        return
    n = len(loaded.rejected)
    err_console.print(
        f"[yellow]warning:[/] {n:,} of {loaded.read:,} record(s) in {loaded.path.name} rejected and left out:"
    )
    for row in loaded.rejected.head(shown).itertuples():
        err_console.print(f"  {row.location}: {row.reason}")
    if n > shown:
        err_console.print(f"  … and {n - shown:,} more")


def read_training_files(
    interactions: Path, items: Path | None, rules: ValidationRules
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The valid interactions of a file and, when given, the valid item metadata; rejects are reported."""
    loaded = read_records(interactions, "interactions", rules)
    report_rejects(loaded)
    if items is None:
        return loaded.frame, None
    item_file = read_records(items, "items", rules)
    report_rejects(item_file)
    return loaded.frame, item_file.frame

