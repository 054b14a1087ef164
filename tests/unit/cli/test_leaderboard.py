"""The leaderboard table fits an 80-column terminal by default (headline metrics and fit seconds) and
shows every metric with `--all`."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from recstack.cli.evaluate import HEADLINE_METRICS, SHOWN_METRICS, metric_column, shown_columns
from recstack.evaluation.report import render_table


def board() -> pd.DataFrame:
    columns = [metric_column(m, 10) for m in SHOWN_METRICS] + ["fit_s", "recommend_s"]
    rows = {name: [0.123456 + n / 100 for n in range(len(columns))] for name in ("sequence_ease", "popularity")}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    frame.index.name = "model"
    return frame


def rendered(frame: pd.DataFrame, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(render_table(frame, title="holdout · k=10"))
    return console.export_text()


def test_the_default_table_has_the_headline_metrics_and_fits_80_columns() -> None:
    shown = shown_columns(board(), 10)
    assert list(shown.columns) == [*HEADLINE_METRICS, "fit_s"]
    text = rendered(shown, 80)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "sequence_ease" in text and "0.1235" in text


def test_all_shows_every_metric() -> None:
    shown = shown_columns(board(), 10, every=True)
    assert len(shown.columns) == len(SHOWN_METRICS) + 1
    assert {"novelty", "ndcg(cold)", "mrr"} <= set(shown.columns)
