"""File sources: streaming in chunks, locations that point at the right line, broken lines kept aside."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.ingestion.files import detect_format, read_file
from recstack.schema import LOCATION

CSV = """event_id,user_id,item_id,event_type,value,timestamp
e1,u1,i1,watch,12,2025-01-01T00:00:00Z
e2,u2,i2

e3,u3,"i,3",like,1,2025-01-02T00:00:00Z
e4,u4,i4,like,1,2025-01-02T00:00:00Z,extra
e5,u5,i5,watch,7,2025-01-03T00:00:00Z
"""


def collect(path: Path, chunk_size: int = 2, **kwargs: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    batches = list(read_file(path, chunk_size=chunk_size, **kwargs))  # type: ignore[arg-type]
    good = pd.concat([b.frame for b in batches], ignore_index=True)
    broken = pd.concat([b.broken for b in batches], ignore_index=True)
    return good, broken


def test_csv_locations_are_line_numbers_and_broken_lines_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    good, broken = collect(path)
    assert good["event_id"].tolist() == ["e1", "e3", "e5"]
    assert good[LOCATION].tolist() == ["line 2", "line 5", "line 7"]
    assert good["item_id"].tolist() == ["i1", "i,3", "i5"]
    assert broken["location"].tolist() == ["line 3", "line 6"]
    assert broken["reason"].tolist() == ["expected 6 fields, found 3", "expected 6 fields, found 7"]
    assert broken["record"].iloc[0] == "e2,u2,i2"


def test_csv_is_streamed_in_chunks_of_the_requested_size(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    pd.DataFrame({"user_id": [f"u{i}" for i in range(2500)], "item_id": "i", "timestamp": "1700000000"}).to_csv(
        path, index=False
    )
    sizes = [len(b.frame) for b in read_file(path, chunk_size=1000)]
    assert sizes == [1000, 1000, 500]


def test_tsv_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("user_id\titem_id\ttimestamp\nu1\ti1\t1700000000\n")
    good, broken = collect(path)
    assert good[["user_id", "item_id"]].to_dict("records") == [{"user_id": "u1", "item_id": "i1"}]
    assert broken.empty


def test_jsonl_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"user_id": "u1", "item_id": "i1", "value": 3}), "{not json", "[1, 2]", "",
             json.dumps({"user_id": "u2", "item_id": "i2"})]
    path.write_text("\n".join(lines) + "\n")
    good, broken = collect(path)
    assert good["user_id"].tolist() == ["u1", "u2"]
    assert good[LOCATION].tolist() == ["line 1", "line 5"]
    assert broken["location"].tolist() == ["line 2", "line 3"]
    assert broken["reason"].iloc[0].startswith("not valid JSON")
    assert broken["reason"].iloc[1] == "not a JSON object"


def test_parquet_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [1, 2, 3]}).to_parquet(path)
    good, _ = collect(path, chunk_size=2)
    assert good[LOCATION].tolist() == ["row 1", "row 2", "row 3"]


def test_unknown_format_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot tell the format"):
        detect_format(tmp_path / "events.xlsx")
    with pytest.raises(ConfigurationError, match="no such file"):
        list(read_file(tmp_path / "absent.csv"))
