"""The hybrid (sources → features → LambdaRank) against every single model, protocol T, same run.

Run: `.venv/bin/python benchmarks/hybrid.py [--data /work/shared/data] [--sets synthetic,ml-100k,ml-latest-small]`.

Protocol T: per-user temporal 75/25 (each user's latest 25% of interactions by time is the test), K = 10,
training items excluded, a held-out interaction relevant when its strength is positive under the weighting
inferred from the training part (every rating; on the video platform a skip or a bounce is not a pick).
Data: the synthetic video platform (`recstack.ingestion.synthetic`: watch time, likes, skips, shares) and
both MovieLens sets. Also timed: the ranker stage alone (features + LightGBM) for 500 candidates of one
request, p50/p99 over many requests. Results: benchmarks/results/hybrid.json and hybrid.png.
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

from recstack.evaluation.holdout import relevant_pairs, score_recommendations
from recstack.evaluation.splits import temporal_by_user
from recstack.models import catalog

sys.path.insert(0, str(Path(__file__).parent))
from quality import load_100k, load_latest_small

RESULTS = Path(__file__).parent / "results"
K = 10
PEERS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "trending": {"mode": "trending"},
    "item_knn": {},
    "ease": {"l2": 8.0, "l2_relative": True},
    "ease_500": {"l2": 500.0},
    "sequence_ease": {},
    "sequence_knn": {},
    "rp3beta": {},
    "als": {},
    "tfidf": {},
}


def synthetic(users: int, items: int, interactions: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog

    config = SyntheticConfig(users=users, items=items, interactions=interactions, seed=11)
    _, item_frame = make_catalog(config)
    events = pd.concat(list(iter_interactions(config)), ignore_index=True)
    events["timestamp"] = (events["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return events[["user_id", "item_id", "event_type", "value", "timestamp"]], item_frame


def run_model(name: str, params: dict[str, Any], train: pd.DataFrame, relevant: pd.DataFrame,
              items: pd.DataFrame) -> dict[str, Any]:
    kind = "ease" if name.startswith("ease") else "popularity" if name == "trending" else name
    model = catalog.create(kind, **params)
    started = time.perf_counter()
    model.fit(train, items=items)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    scores = score_recommendations(model, train, relevant, items, K)
    return {"model": name, **{k: scores[k] for k in scores if "@" in k}, "fit_s": fit_s,
            "recommend_s": time.perf_counter() - started, "fitted": model}


def ranker_latency(model: Any, n_candidates: int = 500, requests: int = 300) -> dict[str, float]:
    """p50/p99 ms of the ranker stage (features + LightGBM) for `n_candidates` of one user, wall clock and
    process CPU time (the machine is shared: CPU time shows the stage's own cost), and of the whole
    per-request pipeline (sources + ranker) for the same users, the baseline it is a share of."""
    from recstack.processing.features import build_features
    from recstack.ranking.candidates import Candidates

    rng = np.random.default_rng(0)
    users = rng.choice(len(model.users), requests)
    stage, whole, cpu = [], [], []
    for user in users:
        started = time.perf_counter()
        candidates = model.generator_.generate(np.array([user]), model.history_, model.as_of_)
        whole_gen = time.perf_counter() - started
        pick = rng.choice(len(model.items), n_candidates, replace=False)
        take = np.arange(n_candidates) % max(len(candidates), 1)
        padded = Candidates(
            np.full(n_candidates, user), pick, candidates.scores[take], candidates.ranks[take],
            np.full(n_candidates, -1),
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        model.ranker_.predict(build_features(model.log_, padded, model.reference_times(padded.user)))
        elapsed = time.perf_counter() - started
        cpu.append((time.process_time() - cpu_started) * 1000)
        stage.append(elapsed * 1000)
        whole.append((whole_gen + elapsed) * 1000)
    return {
        "ranker_p50_ms": float(np.percentile(stage, 50)), "ranker_p99_ms": float(np.percentile(stage, 99)),
        "ranker_cpu_p50_ms": float(np.percentile(cpu, 50)), "ranker_cpu_p99_ms": float(np.percentile(cpu, 99)),
        "request_p50_ms": float(np.percentile(whole, 50)), "request_p99_ms": float(np.percentile(whole, 99)),
        "ranker_share_of_request_p50": float(np.percentile(stage, 50) / np.percentile(whole, 50)),
        "candidates": n_candidates,
    }


def run_set(name: str, events: pd.DataFrame, items: pd.DataFrame) -> dict[str, Any]:
    split = temporal_by_user(events, ratio=0.75)
    train, test = split.train, split.test
    relevant = relevant_pairs(train, test, items)
    rows = []
    fitted: dict[str, Any] = {}
    for model_name, params in {**PEERS, "hybrid": {}}.items():
        try:
            row = run_model(model_name, params, train, relevant, items)
        except Exception as exc:  # a peer that cannot run on this data is reported, not fatal
            logging.warning("%s on %s failed: %s", model_name, name, exc)
            continue
        fitted[model_name] = row.pop("fitted")
        rows.append(row)
        print(f"{name:16s} {model_name:14s} ndcg@10 {row['ndcg@10']:.4f}  fit {row['fit_s']:.1f}s", flush=True)
    board = pd.DataFrame(rows).sort_values("ndcg@10", ascending=False)
    best_peer = board.loc[board["model"] != "hybrid"].iloc[0]
    hybrid = board.loc[board["model"] == "hybrid"].iloc[0]
    hybrid_model = fitted["hybrid"]
    out = {
        "data": name,
        "train_rows": len(train),
        "test_rows": len(test),
        "relevant_pairs": len(relevant),
        "leaderboard": board.to_dict(orient="records"),
        "best_peer": str(best_peer["model"]),
        "ratio_to_best_peer": float(hybrid["ndcg@10"] / best_peer["ndcg@10"]),
        "candidate_recall_ranker_training": hybrid_model.candidate_recall_,
        "ranker_importance_top10": dict(list(hybrid_model.ranker_.importance().items())[:10]),
        "ranker_boosters": len(hybrid_model.ranker_.boosters),
        "ranker_trees": hybrid_model.ranker_.num_trees,
        "ranker_queries": hybrid_model.ranker_.queries,
        "latency": ranker_latency(hybrid_model),
    }
    print(f"{name}: hybrid {hybrid['ndcg@10']:.4f} vs {best_peer['model']} {best_peer['ndcg@10']:.4f} "
          f"= {out['ratio_to_best_peer']:.3f}×; ranker p99 {out['latency']['ranker_p99_ms']:.2f} ms", flush=True)
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        board = pd.DataFrame(result["leaderboard"]).sort_values("ndcg@10")
        colours = ["tab:red" if m == "hybrid" else "tab:blue" for m in board["model"]]
        ax.barh(board["model"], board["ndcg@10"], color=colours)
        ax.set_title(f"{result['data']} (protocol T)")
        ax.set_xlabel("NDCG@10")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _loadavg() -> list[str]:
    path = Path("/proc/loadavg")
    return path.read_text().split()[:3] if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--sets", default="synthetic,ml-100k,ml-latest-small")
    parser.add_argument("--synthetic", default="3000,1500,200000", help="users,items,interactions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    loaders = {
        "synthetic": lambda: synthetic(*(int(x) for x in args.synthetic.split(","))),
        "ml-100k": lambda: load_100k(args.data / "movielens-100k"),
        "ml-latest-small": lambda: load_latest_small(args.data / "movielens-latest-small"),
    }
    import lightgbm

    meta = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores shared",
        "python": platform.python_version(), "lightgbm": lightgbm.__version__, "numpy": np.__version__,
        "protocol": "T: per-user temporal 75/25, K=10, training items excluded",
    }
    RESULTS.mkdir(exist_ok=True)
    results = []
    for name in args.sets.split(","):
        load_start = _loadavg()
        events, items = loaders[name]()
        results.append(run_set(name, events, items))
        results[-1]["loadavg_start_end"] = [load_start, _loadavg()]
        # Written after every data set, so a long run leaves what it finished.
        (RESULTS / "hybrid.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=float))
        plot(results, RESULTS / "hybrid.png")


if __name__ == "__main__":
    main()
