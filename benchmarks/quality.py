"""Offline quality of every model and of `auto` on MovieLens, under three protocols.

Run: `.venv/bin/python benchmarks/quality.py [--data /work/shared/data] [--budget 300] [--only auto,ease]
[--runs "ml-100k T,ml-latest-small T"]`.

- Protocol A (the main one): per-user stratified random split 75/25 with seed 42, every test item relevant,
  training items excluded, K = 10. Run on MovieLens-100K and MovieLens-latest-small.
- Protocol B (Microsoft Recommenders' own): `python_stratified_split(ratio=0.75, min_rating=1,
  filter_by="item", seed=42)` (`recstack.evaluation.splits.stratified_by_item`, identical row for row on
  the file's row order), K = 10, seen items removed, every held-out rating relevant; their `map` divides
  by the number of relevant items (`map_all` here). Run on MovieLens-100K, beside their published rows.
- Protocol T (what production asks: what will this user pick next?): per-user temporal 75/25 (each user's
  newest 25 % of interactions by time is the test, `temporal_by_user`), K = 10, training items excluded,
  every test interaction relevant. Run on both MovieLens sets, against the peers measured in the same run:
  EASE at λ ∈ {100, 300, 500} on binary and log(1 + rating) values, implicit ALS, item-kNN, popularity.
- Protocol A−t (issue 9): protocol A given only `user_id, item_id, value` (no timestamps), on 100K.

Each model is trained on the training part only (`auto` carves its own validation split from it and is told
the question the protocol asks, as `recstack evaluate --split` tells it (`told_question`): at random on A
and B, each user's newest interactions of the training part on T; on A and B it also runs validated on
"what next?", `validation="temporal"`, which is what `recstack train` picks for timestamped data), with its
default parameters, plus
EASE at λ = 500 (the peers' reference). Results go to
benchmarks/results/quality.json and quality.png; the table is printed. The files are read directly (tab-
and comma-separated) so the row order, which protocol B's seeded draw depends on, is the file's.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from recstack.evaluation import metrics as m
from recstack.evaluation.holdout import told_question
from recstack.evaluation.report import plot_comparison
from recstack.evaluation.splits import stratified_by_item, stratified_by_user, temporal_by_user
from recstack.models import catalog

RESULTS = Path(__file__).parent / "results"
K = 10
# nDCG@10, P@10 of Microsoft Recommenders' ML-100K notebook table (their protocol B).
MS_RECOMMENDERS = {
    "BiVAE": (0.475, 0.412),
    "BPR (cornac)": (0.442, 0.388),
    "LightGCN": (0.420, 0.380),
    "NCF": (0.396, 0.347),
    "SAR": (0.382, 0.331),
    "SVD (surprise)": (0.096, None),
    "ALS (spark)": (0.044, None),
}
SINGLE_MODELS = [
    "popularity",
    "item_knn",
    "ease",
    "sequence_ease",
    "rp3beta",
    "sequence_knn",
    "als",
    "bpr",
    "pure_svd",
    "svd",
    "tfidf",
    "item2vec",
    "text2vec",
    "hybrid",
]
# Protocol T: the peers (EASE at a few λ on binary and log-scaled values, implicit ALS, item-kNN, popularity)
# and recstack's own models that use time.
PEERS_T: list[tuple[str, str, dict[str, Any], str]] = [
    *[
        (f"peer ease λ={l2:g} {values}", "ease", {"l2": l2}, values)
        for values in ("binary", "log")
        for l2 in (100.0, 300.0, 500.0)
    ],
    ("peer als", "als", {}, "raw"),
    ("peer item_knn", "item_knn", {}, "raw"),
    ("peer popularity", "popularity", {}, "raw"),
]
OWN_T = ["ease", "sequence_ease", "sequence_knn", "rp3beta", "pure_svd", "hybrid"]
RUNS = ["ml-100k A", "ml-100k B", "ml-latest-small A", "ml-100k T", "ml-latest-small T", "ml-100k A-t"]


def load_100k(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=["user_id", "item_id", "value", "timestamp"], dtype=str)
    genres = [line.split("|")[0] for line in (folder / "u.genre").read_text(encoding="latin-1").splitlines() if line]
    raw = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1", dtype=str)
    flags = raw.iloc[:, 5 : 5 + len(genres)].astype(int).to_numpy()
    tags = ["|".join(g for g, f in zip(genres, row, strict=True) if f) for row in flags]
    items = pd.DataFrame({"item_id": raw[0], "title": raw[1], "tags": tags})
    items["category"] = items["tags"].str.split("|").str[0]
    return _typed(ratings), items


def load_latest_small(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(folder / "ratings.csv", dtype=str).rename(
        columns={"userId": "user_id", "movieId": "item_id", "rating": "value"}
    )
    movies = pd.read_csv(folder / "movies.csv", dtype=str).rename(columns={"movieId": "item_id", "genres": "tags"})
    movies["category"] = movies["tags"].str.split("|").str[0]
    return _typed(ratings), movies


def _typed(ratings: pd.DataFrame) -> pd.DataFrame:
    out = ratings[["user_id", "item_id"]].copy()
    out["value"] = ratings["value"].astype(float)
    out["timestamp"] = ratings["timestamp"].astype("int64") * 1000
    return out


def _valued(frame: pd.DataFrame, values: str) -> pd.DataFrame:
    """The peers' value readings: every rating 1 (`binary`), log(1 + rating) (`log`), or recstack's own."""
    if values == "binary":
        return frame.assign(weight=1.0)
    if values == "log":
        return frame.assign(weight=np.log1p(frame["value"].to_numpy(dtype=float)))
    return frame


def evaluate(
    name: str,
    params: dict[str, Any],
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame,
    values: str = "raw",
) -> dict[str, Any]:
    model = catalog.create(name, **params)
    started = time.perf_counter()
    model.fit(_valued(train, values), items=items)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    recs = model.recommend(pd.unique(test["user_id"]), k=K)
    recommend_s = time.perf_counter() - started
    row: dict[str, Any] = {f"{key}@{K}": value for key, value in m.ranking_metrics(recs, test, K).items()}
    row[f"coverage@{K}"] = m.catalogue_coverage(recs, list(pd.unique(train["item_id"])), K)
    row["fit_s"] = fit_s
    row["recommend_s"] = recommend_s
    if name == "auto":
        row["auto"] = getattr(model, "report_", {})
        row["auto_validation"] = row["auto"].get("validation_protocol")
    return row


def run(
    data: Path, budget: float, only: list[str] | None, console: Console, wanted: list[str] | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    sets = {
        "ml-100k": lambda: load_100k(data / "movielens-100k"),
        "ml-latest-small": lambda: load_latest_small(data / "movielens-latest-small"),
    }
    single: list[tuple[str, str, dict[str, Any], str]] = [(n, n, {}, "raw") for n in SINGLE_MODELS]
    single.insert(3, ("ease λ=500", "ease", {"l2": 500.0}, "raw"))
    auto = ("auto", "auto", {"time_budget_s": budget}, "raw")
    results: dict[str, Any] = {}
    for label in wanted or RUNS:
        name, protocol = label.rsplit(" ", 1)
        ratings, items = sets[name]()
        if protocol in ("A", "A-t"):
            train, test = stratified_by_user(ratings, ratio=0.75, seed=42)
        elif protocol == "B":
            train, test = stratified_by_item(ratings, ratio=0.75, seed=42, min_rating=1)
        else:
            train, test = temporal_by_user(ratings, ratio=0.75)
        if protocol == "A-t":
            train, test = train.drop(columns="timestamp"), test.drop(columns="timestamp")
            models = [entry for entry in single if entry[0] in ("ease", "ease λ=500", "als", "item_knn", "popularity")]
        elif protocol == "T":
            models = [*PEERS_T, *[(n, n, {}, "raw") for n in OWN_T]]
        else:
            models = single
        question = "random" if protocol in ("A", "A-t", "B") else "temporal"
        models = [*models, ("auto", "auto", told_question(catalog.resolve("auto"), auto[2], question), "raw")]
        if protocol in ("A", "B"):  # what `recstack train` would pick on these data: validated on "what next?"
            temporal = {"time_budget_s": budget, "validation": "temporal"}
            models.append(("auto validation=temporal", "auto", temporal, "raw"))
        if only:
            models = [entry for entry in models if entry[0] in only or entry[1] in only]
        board: dict[str, Any] = {}
        for shown, model_name, params, values in models:
            console.log(f"{label}: {shown}")
            board[shown] = evaluate(model_name, params, train, test, items, values)
            console.log(
                f"{label}: {shown} ndcg@{K} {board[shown][f'ndcg@{K}']:.4f} "
                f"precision@{K} {board[shown][f'precision@{K}']:.4f} fit {board[shown]['fit_s']:.1f}s"
            )
        results[label] = {
            "train_rows": len(train), "test_rows": len(test), "models": board,
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        peers = {k: v[f"ndcg@{K}"] for k, v in board.items() if k.startswith("peer ")}
        if peers and "auto" in board:  # protocol T
            best = max(peers, key=lambda k: peers[k])
            results[label]["best_peer"] = best
            results[label]["auto_ratio_to_best_peer"] = board["auto"][f"ndcg@{K}"] / peers[best]
            console.log(f"{label}: auto / {best} = {results[label]['auto_ratio_to_best_peer']:.3f}")
        if out is not None:  # after every run, so a long benchmark leaves what it finished
            out.mkdir(parents=True, exist_ok=True)
            (out / "quality-partial.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def table(label: str, board: dict[str, Any], protocol_b: bool) -> Table:
    out = Table(title=label)
    for column in ("model", "NDCG@10", "P@10", "recall@10", "MAP@10", "coverage@10", "fit s"):
        out.add_column(column, justify="left" if column == "model" else "right")
    ordered = sorted(board.items(), key=lambda kv: -kv[1][f"ndcg@{K}"])
    for name, row in ordered:
        map_key = f"map_all@{K}" if protocol_b else f"map@{K}"
        out.add_row(
            name,
            f"{row[f'ndcg@{K}']:.4f}",
            f"{row[f'precision@{K}']:.4f}",
            f"{row[f'recall@{K}']:.4f}",
            f"{row[map_key]:.4f}",
            f"{row[f'coverage@{K}']:.3f}",
            f"{row['fit_s']:.1f}",
        )
    if protocol_b:
        for name, (ndcg, precision) in MS_RECOMMENDERS.items():
            out.add_row(
                f"[dim]{name} (MS Recommenders, published)[/dim]",
                f"{ndcg:.3f}",
                "" if precision is None else f"{precision:.3f}",
                "",
                "",
                "",
                "",
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--budget", type=float, default=300.0, help="auto's time budget in seconds")
    parser.add_argument("--only", default="", help="comma-separated model names to run (default: all)")
    parser.add_argument("--runs", default="", help=f"comma-separated runs (default: all of {', '.join(RUNS)})")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console()
    only = [s for s in args.only.split(",") if s] or None
    wanted = [r.strip() for r in args.runs.split(",") if r.strip()] or None
    results = run(args.data, args.budget, only, console, wanted, args.out)
    for label, result in results.items():
        console.print(table(label, result["models"], label.endswith("B")))
    import implicit
    import lightgbm
    import sklearn

    meta = {
        "k": K,
        "auto_budget_s": args.budget,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "versions": {
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scipy": __import__("scipy").__version__,
            "implicit": implicit.__version__,
            "scikit-learn": sklearn.__version__,
            "optuna": optuna.__version__,
            "lightgbm": lightgbm.__version__,
        },
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "ms_recommenders_published_ml100k": {
            k: {"ndcg@10": v[0], "precision@10": v[1]} for k, v in MS_RECOMMENDERS.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "quality.json"
    if wanted and target.exists():  # a partial run replaces its runs and keeps the others
        kept = json.loads(target.read_text()).get("results", {})
        results = {**{k: v for k, v in kept.items() if k not in results}, **results}
    target.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    boards = {
        label: pd.DataFrame(
            {name: {"ndcg@10": r["ndcg@10"], "precision@10": r["precision@10"]} for name, r in result["models"].items()}
        ).T
        for label, result in results.items()
    }
    combined = pd.concat({label: b for label, b in boards.items()}, axis=1)
    combined.columns = [f"{metric} {label}" for label, metric in combined.columns]
    plot_comparison(combined, args.out / "quality.png", title="recstack on MovieLens (K=10)")
    console.print(f"wrote {args.out / 'quality.json'} and {args.out / 'quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
