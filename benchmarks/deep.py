"""The deep models against the classical peers on protocol T (MovieLens-latest-small), peers in the same run.

Protocol T: each user's latest 25 % of interactions by time is the test; K = 10; training items excluded;
every test interaction is relevant. The peers are EASE at λ ∈ {100, 250, 500} on binary and log(1+rating)
values, sequence-aware EASE, implicit ALS, item-kNN and popularity; the best of them (chosen on the test,
which flatters the peers) is the bar. SASRec's hyper-parameters are chosen on a validation split of the
training part only (each user's latest 25 % of their training interactions), then refitted on the whole
training part; its fit time is that last fit's. Results go to benchmarks/results/deep.json and deep.png.

    .venv/bin/python benchmarks/deep.py [--data /work/shared/data] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))

from quality import load_latest_small
from recstack.evaluation import metrics as m
from recstack.models import catalog

RESULTS = Path(__file__).parent / "results"
K = 10
PEERS: list[tuple[str, str, dict[str, Any], str]] = [
    *[
        (f"ease λ={l2:g} {values}", "ease", {"l2": l2}, values)
        for values in ("binary", "log")
        for l2 in (100.0, 250.0, 500.0)
    ],
    ("sequence_ease", "sequence_ease", {}, "raw"),
    ("als", "als", {}, "raw"),
    ("item_knn", "item_knn", {}, "raw"),
    ("popularity", "popularity", {}, "raw"),
]
SASREC_GRID: list[dict[str, Any]] = [
    {"learning_rate": 1e-2},
    {"learning_rate": 5e-3},
]


def user_temporal(ratings: pd.DataFrame, test_fraction: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's latest `test_fraction` of interactions (by timestamp, row order breaking ties) is the
    test; a user with fewer than 2 interactions stays wholly in training. Private to this benchmark until
    `recstack.evaluation.splits` has its own."""
    ordered = ratings.reset_index(drop=True)
    ordered = ordered.iloc[
        np.lexsort((np.arange(len(ordered)), ordered["timestamp"].to_numpy(), ordered["user_id"].to_numpy()))
    ]
    position = ordered.groupby("user_id").cumcount().to_numpy()
    size = ordered.groupby("user_id")["item_id"].transform("size").to_numpy()
    n_test = np.floor(size * test_fraction + 0.5).astype(int)
    in_test = position >= size - n_test
    return ordered.loc[~in_test].reset_index(drop=True), ordered.loc[in_test].reset_index(drop=True)


def _valued(frame: pd.DataFrame, values: str) -> pd.DataFrame:
    if values == "binary":
        return frame.assign(weight=1.0)
    if values == "log":
        return frame.assign(weight=np.log1p(frame["value"].to_numpy(dtype=float)))
    return frame


def evaluate(
    name: str, params: dict[str, Any], values: str, train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame
) -> dict[str, Any]:
    model = catalog.create(name, **params)
    started = time.perf_counter()
    model.fit(_valued(train, values), items=items)
    fit_s = time.perf_counter() - started
    recs = model.recommend(pd.unique(test["user_id"]), k=K)
    scores = m.ranking_metrics(recs, test, K)
    row: dict[str, Any] = {"ndcg@10": scores["ndcg"], "recall@10": scores["recall"], "fit_s": fit_s, "params": params}
    for attribute in ("epochs_", "validation_ndcg_"):
        if hasattr(model, attribute):
            row[attribute.rstrip("_")] = float(getattr(model, attribute))
    return row


def run(data: Path, quick: bool, console: Console) -> dict[str, Any]:
    load_before = os.getloadavg()
    ratings, items = load_latest_small(data / "movielens-latest-small")
    train, test = user_temporal(ratings)
    inner_train, validation = user_temporal(train)
    board: dict[str, Any] = {}
    for label, name, params, values in PEERS[:3] if quick else PEERS:
        board[label] = evaluate(name, params, values, train, test, items)
        console.log(f"{label}: ndcg@10 {board[label]['ndcg@10']:.4f} fit {board[label]['fit_s']:.1f}s")
    grid = SASREC_GRID[:1] if quick else SASREC_GRID
    tuning = []
    for params in grid:
        row = evaluate("sasrec", params, "raw", inner_train, validation, items)
        tuning.append(row)
        console.log(f"sasrec {params} on validation: ndcg@10 {row['ndcg@10']:.4f} fit {row['fit_s']:.1f}s")
    chosen = max(tuning, key=lambda row: row["ndcg@10"])["params"]
    board["sasrec"] = evaluate("sasrec", chosen, "raw", train, test, items)
    board["two_tower"] = evaluate("two_tower", {}, "raw", train, test, items)
    for label in ("sasrec", "two_tower"):
        console.log(f"{label}: ndcg@10 {board[label]['ndcg@10']:.4f} fit {board[label]['fit_s']:.1f}s")
    peers = {k: v for k, v in board.items() if k not in ("sasrec", "two_tower")}
    best = max(peers, key=lambda k: peers[k]["ndcg@10"])
    import torch

    return {
        "protocol": "T: per-user temporal 75/25, K=10, training items excluded, every test interaction relevant",
        "data": "movielens-latest-small",
        "train_rows": len(train),
        "test_rows": len(test),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "sasrec_tuning": tuning,
        "best_peer": best,
        "sasrec_vs_best_peer": board["sasrec"]["ndcg@10"] / peers[best]["ndcg@10"],
        "models": board,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    board = result["models"]
    labels = list(board)
    figure = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(figure)
    quality, speed = figure.subplots(1, 2)
    x = np.arange(len(labels))
    colours = ["tab:red" if label in ("sasrec", "two_tower") else "tab:blue" for label in labels]
    quality.bar(x - 0.2, [board[k]["ndcg@10"] for k in labels], 0.4, color=colours, label="NDCG@10")
    quality.bar(x + 0.2, [board[k]["recall@10"] for k in labels], 0.4, color=colours, alpha=0.5, label="recall@10")
    quality.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    quality.set_title("protocol T, MovieLens-latest-small (solid NDCG@10, pale recall@10)")
    speed.bar(x, [board[k]["fit_s"] for k in labels], color=colours)
    speed.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    speed.set_ylabel("fit seconds")
    speed.set_title("training time")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--quick", action="store_true", help="three peers and one SASRec config (a smoke run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=True)
    result = run(args.data, args.quick, console)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deep.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    plot(result, RESULTS / "deep.png")
    console.print_json(json.dumps({k: v for k, v in result.items() if k != "sasrec_tuning"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
