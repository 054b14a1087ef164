"""CSV, Parquet and JSON-lines files as streams of `RawBatch`es, never loaded whole.

CSV goes through pyarrow's streaming reader with every column read as text (validation does the typing,
so one bad cell cannot make a whole column fail); a line with the wrong number of fields becomes a broken
record with its line number instead of stopping the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recstack.errors import ConfigurationError
from recstack.ingestion.pipeline import RawBatch
from recstack.schema import LOCATION

FileFormat = Literal["csv", "tsv", "parquet", "jsonl"]
_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
_BROKEN_COLUMNS = ["location", "reason", "record"]


def detect_format(path: Path) -> FileFormat:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1].lower() in _SUFFIXES:
        return _SUFFIXES[suffixes[-1].lower()]
    raise ConfigurationError(f"cannot tell the format of {path.name}; pass --format csv|tsv|parquet|jsonl")


def read_file(
    path: str | Path,
    fmt: FileFormat | None = None,
    chunk_size: int = 50_000,
    delimiter: str | None = None,
) -> Iterator[RawBatch]:
    """Stream a file as raw batches of about `chunk_size` records."""
    path = Path(path)
    if not path.exists():
        raise ConfigurationError(f"no such file: {path}")
    fmt = fmt or detect_format(path)
    if fmt in ("csv", "tsv"):
        yield from read_csv(path, chunk_size, delimiter or ("\t" if fmt == "tsv" else ","))
    elif fmt == "parquet":
        yield from read_parquet(path, chunk_size)
    elif fmt == "jsonl":
        yield from read_jsonl(path, chunk_size)
    else:
        raise ConfigurationError(f"unsupported format {fmt!r}")


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _header(path: Path, delimiter: str) -> list[str]:
    with _open_text(path) as handle:
        first = handle.readline()
    if not first.strip():
        return []
    return [c.strip() for c in next(csv.reader([first], delimiter=delimiter))]


def read_csv(path: Path, chunk_size: int, delimiter: str = ",") -> Iterator[RawBatch]:
    """Stream a delimited file with a header line; locations are physical line numbers."""
    columns = _header(path, delimiter)
    if not columns:
        return
    broken: list[dict[str, str]] = []
    blank: list[int] = []

    def on_invalid(row: Any) -> str:
        if not (row.text or "").strip():
            blank.append(row.number or 0)
        else:
            broken.append(
                {"location": f"line {row.number}",
                 "reason": f"expected {row.expected_columns} fields, found {row.actual_columns}",
                 "record": row.text}
            )
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False, block_size=max(1 << 20, chunk_size * 64)),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False,
            newlines_in_values=False,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    next_line = 2
    pending = pd.DataFrame()
    for record_batch in reader:
        frame = record_batch.to_pandas()
        skipped = sorted([b["location"] for b in broken], key=lambda s: int(s.split()[1]))
        skipped_lines = {int(s.split()[1]) for s in skipped} | set(blank)
        total = len(frame) + len(skipped_lines)
        lines = [n for n in range(next_line, next_line + total) if n not in skipped_lines]
        next_line += total
        frame[LOCATION] = [f"line {n}" for n in lines[: len(frame)]]
        blank.clear()
        frame = frame.loc[~(frame[columns] == "").all(axis=1)]
        pending = pd.concat([pending, frame], ignore_index=True) if len(pending) else frame
        while len(pending) >= chunk_size:
            yield RawBatch(pending.iloc[:chunk_size].reset_index(drop=True), _take(broken))
            pending = pending.iloc[chunk_size:].reset_index(drop=True)
    if len(pending) or broken:
        yield RawBatch(pending, _take(broken))


def _take(broken: list[dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(broken, columns=_BROKEN_COLUMNS)
    broken.clear()
    return frame


def read_parquet(path: Path, chunk_size: int) -> Iterator[RawBatch]:
    """Stream a Parquet file by record batches; locations are 1-based row numbers."""
    start = 1
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
        frame = record_batch.to_pandas()
        frame[LOCATION] = [f"row {n}" for n in range(start, start + len(frame))]
        start += len(frame)
        yield RawBatch(frame)


def read_jsonl(path: Path, chunk_size: int) -> Iterator[RawBatch]:
    """Stream JSON lines (one object per line); a line that is not a JSON object is a broken record."""
    records: list[dict[str, Any]] = []
    broken: list[dict[str, str]] = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                broken.append({"location": f"line {number}", "reason": f"not valid JSON: {exc.msg}",
                               "record": line.rstrip("\n")[:10_000]})
                continue
            if not isinstance(value, dict):
                broken.append({"location": f"line {number}", "reason": "not a JSON object",
                               "record": line.rstrip("\n")[:10_000]})
                continue
            value[LOCATION] = f"line {number}"
            records.append(value)
            if len(records) >= chunk_size:
                yield RawBatch(pd.DataFrame.from_records(records), _take(broken))
                records = []
    if records or broken:
        yield RawBatch(pd.DataFrame.from_records(records), _take(broken))
