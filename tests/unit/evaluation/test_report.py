"""Leaderboard: evaluates each model on the same split; table, JSON and PNG come out right."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from recstack.evaluation.report import (
    EvaluationOptions,
    evaluate_recommendations,
    leaderboard,
    plot_comparison,
    render_table,
    write_json,
)


def frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


@pytest.fixture
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = frame([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "a")])
    test = frame([("u1", "c"), ("u2", "b"), ("u3", "d")])
    return train, test


def recs(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, i, r + 1, 1.0) for u, items in lists.items() for r, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])


def test_evaluate_recommendations_keys_and_values(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split
    row = evaluate_recommendations(recs({"u1": ["c", "d"], "u2": ["d", "b"]}), test, train, EvaluationOptions(k=2))
    # u1 hits at rank 1, u2 at rank 2, u3 has no list: precision (1/2 + 1/2 + 0)/3 = 1/3
    assert row["precision@2"] == pytest.approx(1 / 3)
    assert row["hit_rate@2"] == pytest.approx(2 / 3)
    # catalogue = train items {a, b, c}; recommended within it: b, c -> 2/3
    assert row["coverage@2"] == pytest.approx(2 / 3)
    # u3 has one training row: cold (<= 1); u3 got no list -> ndcg 0 on the cold slice
    row_cold = evaluate_recommendations(
        recs({"u1": ["c"]}), test, train, EvaluationOptions(k=1, cold_max_interactions=1)
    )
    assert row_cold["ndcg@1[cold]"] == pytest.approx(0.0)
    assert "diversity@2" not in row


def test_empty_slice_is_nan_not_zero(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split
    row = evaluate_recommendations(recs({"u1": ["c"]}), test, train, EvaluationOptions(k=1, cold_max_interactions=0))
    assert math.isnan(row["ndcg@1[cold]"])


def test_leaderboard_table_json_and_plot(split: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    train, test = split
    results = {
        "good": recs({"u1": ["c", "d"], "u2": ["b", "d"], "u3": ["d", "b"]}),
        "bad": recs({"u1": ["d", "a"], "u2": ["d", "c"], "u3": ["b", "c"]}),
    }
    options = EvaluationOptions(k=2, item_categories={"a": ["x"], "b": ["y"], "c": ["x", "y"], "d": ["y"]})
    board = leaderboard(results, test, train, options, extra={"good": {"train_s": 0.5}, "bad": {"train_s": 2.0}})
    assert board.index.tolist() == ["good", "bad"]  # sorted by ndcg@2, best first
    assert board.loc["good", "ndcg@2"] == pytest.approx(1.0)
    assert "diversity@2" in board.columns

    table = render_table(board, title="ML", columns=["ndcg@2", "precision@2", "train_s"])
    assert table.row_count == 2 and len(table.columns) == 4
    console = Console(record=True, width=120)
    console.print(table)
    assert "good" in console.export_text()

    path = write_json(board, tmp_path / "out" / "board.json", meta={"k": 2})
    document = json.loads(path.read_text())
    assert document["meta"] == {"k": 2}
    assert document["models"]["good"]["ndcg@2"] == pytest.approx(1.0)
    assert document["models"]["bad"]["train_s"] == 2.0

    png = plot_comparison(board, tmp_path / "board.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_turns_nan_into_null(tmp_path: Path) -> None:
    board = pd.DataFrame({"ndcg@10": [float("nan")]}, index=pd.Index(["m"], name="model"))
    document = json.loads(write_json(board, tmp_path / "b.json").read_text())
    assert document["models"]["m"]["ndcg@10"] is None
