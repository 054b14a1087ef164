"""Leaderboards: several models' recommendations evaluated on one split, rendered as a table, JSON and PNG.

The leaderboard is a plain `pandas.DataFrame`, one row per model (index `model`) and one column per metric
(`"ndcg@10"`, `"ndcg@10[cold]"`, …), plus any extra columns the caller supplies (training seconds, say).
Nothing here prints: `render_table` returns a Rich `Table` for the CLI to print.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from recstack.errors import MissingExtra

from . import metrics as m

__all__ = [
    "EvaluationOptions",
    "evaluate_recommendations",
    "leaderboard",
    "lower_is_better",
    "plot_comparison",
    "render_table",
    "write_json",
]

logger = logging.getLogger(__name__)


def lower_is_better(column: str) -> bool:
    """Durations (columns named `…_s`, seconds) are better small; every metric here is better large."""
    return column.endswith("_s")


@dataclass(frozen=True)
class EvaluationOptions:
    """What a leaderboard measures.

    `k`: list length. `catalogue`: item ids for coverage (default: the items of `train`).
    `item_vectors` / `item_categories`: descriptions for intra-list diversity (skipped when both are None).
    `cold_max_interactions`: users with at most this many training rows form the cold slice.
    `head_share`: the head is the most popular items making up this share of training interactions; the rest
    is the long tail.
    """

    k: int = 10
    catalogue: Sequence[str] | None = None
    item_vectors: pd.DataFrame | None = None
    item_categories: Mapping[str, Iterable[str]] | None = None
    cold_max_interactions: int = 5
    head_share: float = 0.2


def evaluate_recommendations(
    recommendations: pd.DataFrame,
    test: pd.DataFrame,
    train: pd.DataFrame,
    options: EvaluationOptions | None = None,
) -> dict[str, float]:
    """All metrics for one model, keyed `"<metric>@<k>"`, slices suffixed `[cold]` and `[long_tail]`.

    Accuracy metrics treat every row of `test` as relevant and average over `test`'s users. A slice with no
    users yields NaN, not zero, so an empty slice is never read as a bad score.
    """
    opts = options or EvaluationOptions()
    k = opts.k
    row = {f"{name}@{k}": value for name, value in m.ranking_metrics(recommendations, test, k).items()}
    catalogue = opts.catalogue if opts.catalogue is not None else pd.unique(train["item_id"])
    row[f"coverage@{k}"] = m.catalogue_coverage(recommendations, list(catalogue), k)
    row[f"novelty@{k}"] = m.novelty(recommendations, train, k)
    row[f"long_tail_share@{k}"] = m.long_tail_share(recommendations, train, k, opts.head_share)
    if opts.item_vectors is not None or opts.item_categories is not None:
        row[f"diversity@{k}"] = m.intra_list_diversity(
            recommendations, k, item_vectors=opts.item_vectors, item_categories=opts.item_categories
        )
    slices = {
        "cold": m.cold_user_slice(recommendations, test, train, opts.cold_max_interactions),
        "long_tail": m.long_tail_slice(recommendations, test, train, opts.head_share),
    }
    for label, (recs, relevant) in slices.items():
        if relevant.empty:
            row[f"ndcg@{k}[{label}]"] = row[f"recall@{k}[{label}]"] = math.nan
            continue
        sliced = m.ranking_metrics(recs, relevant, k)
        row[f"ndcg@{k}[{label}]"] = sliced["ndcg"]
        row[f"recall@{k}[{label}]"] = sliced["recall"]
    return row


def leaderboard(
    recommendations: Mapping[str, pd.DataFrame],
    test: pd.DataFrame,
    train: pd.DataFrame,
    options: EvaluationOptions | None = None,
    extra: Mapping[str, Mapping[str, float]] | None = None,
    sort_by: str | None = None,
) -> pd.DataFrame:
    """Evaluate each named model's recommendations on the same split; one row per model.

    `extra[model]` adds columns (e.g. `{"train_s": 1.2}`). Rows are sorted by `sort_by` (default
    `"ndcg@<k>"`), best first.
    """
    opts = options or EvaluationOptions()
    rows = {}
    for name, recs in recommendations.items():
        rows[name] = evaluate_recommendations(recs, test, train, opts)
        if extra and name in extra:
            rows[name].update(extra[name])
        logger.info("evaluated %s: ndcg@%d=%.4f", name, opts.k, rows[name][f"ndcg@{opts.k}"])
    board = pd.DataFrame.from_dict(rows, orient="index")
    board.index.name = "model"
    key = sort_by or f"ndcg@{opts.k}"
    if key in board.columns:
        board = board.sort_values(key, ascending=lower_is_better(key))
    return board


def render_table(
    board: pd.DataFrame, title: str | None = None, columns: Sequence[str] | None = None
) -> Table:
    """A Rich table of the leaderboard, the best value of each column in bold; the caller prints it."""
    shown = list(columns) if columns is not None else list(board.columns)
    table = Table(title=title)
    table.add_column(board.index.name or "model", style="cyan", no_wrap=True)
    for column in shown:
        table.add_column(escape(column), justify="right")
    best = {}
    for column in shown:
        values = pd.to_numeric(board[column], errors="coerce")
        if values.notna().any():
            best[column] = values.min() if lower_is_better(column) else values.max()
    for name, row in board.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            text = _format(value)
            if column in best and _is_number(value) and value == best[column] and len(board) > 1:
                text = f"[bold]{text}[/bold]"
            cells.append(text)
        table.add_row(str(name), *cells)
    return table


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not (isinstance(value, float) and math.isnan(value))


def _format(value: Any) -> str:
    if not _is_number(value):
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return f"{value:.4f}" if abs(float(value)) < 100 else f"{value:,.0f}"


def write_json(board: pd.DataFrame, path: Path | str, meta: Mapping[str, Any] | None = None) -> Path:
    """Write `{"meta": {...}, "models": {name: {metric: value}}}`; NaN becomes null. Returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    models = {
        str(name): {str(column): _json_value(value) for column, value in row.items()}
        for name, row in board.iterrows()
    }
    document = {"meta": dict(meta or {}), "models": models}
    target.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return target


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plot_comparison(
    board: pd.DataFrame,
    path: Path | str,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Grouped bar chart, one group per metric and one bar per model, saved as PNG with the Agg backend.

    `metrics` defaults to the columns whose values all lie in [0, 1] (the ratio metrics), so that one axis
    fits them; novelty (bits) or timings need their own plot. Returns the path.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingExtra("matplotlib", "models") from exc
    chosen = list(metrics) if metrics is not None else _unit_interval_columns(board)
    values = board[chosen].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    # A Figure with its own Agg canvas never touches pyplot's global state or the user's backend.
    figure = Figure(figsize=(max(6.0, 1.1 * len(chosen) * max(1, len(board)) ** 0.5 + 2), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(board))
    positions = np.arange(len(chosen))
    for offset, (name, row) in enumerate(values.iterrows()):
        axes.bar(positions + (offset - (len(board) - 1) / 2) * width, row.to_numpy(), width, label=str(name))
    axes.set_xticks(positions, chosen, rotation=30, ha="right")
    axes.set_ylabel("value")
    axes.set_title(title or "model comparison")
    axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=120)
    return target


def _unit_interval_columns(board: pd.DataFrame) -> list[str]:
    chosen = []
    for column in board.columns:
        values = pd.to_numeric(board[column], errors="coerce")
        if values.notna().any() and values.dropna().between(0.0, 1.0).all():
            chosen.append(column)
    return chosen
