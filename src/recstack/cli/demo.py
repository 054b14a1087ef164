"""`recstack demo`: the main job end to end on the embedded default, on synthetic or MovieLens data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from recstack.cli.common import console, progress_bar, settings, store_from, table
from recstack.cli.ingest import options_from, run_and_report
from recstack.storage.lake import Lake, Snapshot

DemoData = Literal["synthetic", "movielens-100k", "movielens-latest-small"]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("generate")(generate)


def generate(
    users: Annotated[int, typer.Option(min=1, help="Number of users.")] = 10_000,
    items: Annotated[int, typer.Option(min=1, help="Number of videos.")] = 5_000,
    interactions: Annotated[int, typer.Option(min=1, help="Number of interactions.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 42,
    out: Annotated[Path, typer.Option(help="Directory for users, items and interactions files.")] = Path("data"),
    fmt: Annotated[Literal["csv", "parquet"], typer.Option("--format")] = "csv",
) -> None:
    """Generate a synthetic short-video platform: catalogue, users and their behaviour."""
    from recstack.ingestion.synthetic import SyntheticConfig
    from recstack.ingestion.synthetic import generate as make

    config = SyntheticConfig(users=users, items=items, interactions=interactions, seed=seed)
    with progress_bar("generate", total=interactions, unit="interactions") as progress:
        files = make(config, out, fmt=fmt, progress=progress)
    for kind, path in files.items():
        console.print(f"{kind:>12}: {path}")


DEMO_MODELS: tuple[str, ...] = ("popularity", "item_knn", "ease", "als")


def demo(
    ctx: typer.Context,
    data: Annotated[DemoData, typer.Option(help="Synthetic video platform or a MovieLens data set.")] = "synthetic",
    users: Annotated[int, typer.Option(help="Synthetic users.")] = 2_000,
    items: Annotated[int, typer.Option(help="Synthetic videos.")] = 1_000,
    interactions: Annotated[int, typer.Option(help="Synthetic interactions.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    train: Annotated[bool, typer.Option("--train/--no-train", help="Train and compare models on the snapshot.")] = True,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help=f"Model to train (repeatable); default {', '.join(DEMO_MODELS)}."),
    ] = None,
    serve_api: Annotated[
        bool, typer.Option("--serve/--no-serve", help="End by serving the champion over HTTP (until Ctrl-C).")
    ] = True,
    host: Annotated[str, typer.Option(help="Interface the API binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port of the API.")] = 8000,
    every: Annotated[bool, typer.Option("--all", help="Show every metric in the leaderboard.")] = False,
) -> None:
    """The main job end to end: generate or load data, ingest it, snapshot it, train and compare models
    on a holdout, register the best one as champion, show a few users' recommendations, then serve them."""
    cfg = settings(ctx)
    console.rule(f"[bold]recstack demo[/] · store {cfg.store_url}")
    snap = _ingest_and_snapshot(ctx, data, users, items, interactions, seed)
    if train:
        _train_and_compare(
            ctx, Lake(cfg.lake_root), snap.snapshot_id, list(dict.fromkeys(model or DEMO_MODELS)), seed, every=every
        )
    if serve_api:
        first = Lake(cfg.lake_root).read_interactions(snap.snapshot_id).iloc[:1]
        who, what = (str(first["user_id"].iloc[0]), str(first["item_id"].iloc[0])) if len(first) else ("u1", "i1")
        _serve(ctx, host, port, who, what)


def _serve(ctx: typer.Context, host: str, port: int, who: str, what: str) -> None:
    """Print a few requests to try, then serve until Ctrl-C."""
    from recstack.cli.serve import serve
    from recstack.serving.auth import Scope, issue_key

    base = f"http://{host}:{port}"
    console.rule("[bold]serve[/]")
    with store_from(ctx) as store:
        key = issue_key(store, Scope.WRITE, "demo").token
    console.print(f"API key for this demo (scope write; `recstack keys list` shows it): {key}", highlight=False)
    auth = f"-H 'Authorization: Bearer {key}'"
    for line in (
        f"curl {auth} '{base}/v1/users/{who}/recommendations?k=5'",
        f"curl -X POST {base}/v1/events {auth} -H 'Content-Type: application/json' "
        f"-d '{{\"user_id\": \"{who}\", \"item_id\": \"{what}\", \"event_type\": \"like\"}}'",
        f"curl {auth} '{base}/v1/items/{what}/similar?k=5'",
        f"curl {base}/metrics",
    ):
        console.print(f"  {line}", soft_wrap=True, highlight=False)
    console.print(f"API docs at {base}/docs · Ctrl-C stops the server")
    sign_in = "" if settings(ctx).auth == "none" else (
        " (sign in with the key above; `recstack keys create --scope admin` makes one that can promote)")
    console.print(f"Dashboard at {base}/dashboard{sign_in}", soft_wrap=True, highlight=False)
    serve(ctx, host=host, port=port)


def _ingest_and_snapshot(
    ctx: typer.Context, data: DemoData, users: int, items: int, interactions: int, seed: int
) -> Snapshot:
    cfg = settings(ctx)
    with store_from(ctx) as store:
        if data == "synthetic":
            from recstack.ingestion.files import read_file
            from recstack.ingestion.synthetic import SyntheticConfig
            from recstack.ingestion.synthetic import generate as make

            config = SyntheticConfig(users=users, items=items, interactions=interactions, seed=seed)
            out = cfg.home / "demo-data"
            with progress_bar("generate", total=interactions, unit="interactions") as progress:
                files = make(config, out, fmt="csv", progress=progress)
            for kind in ("users", "items", "interactions"):
                path = files[kind]
                run_and_report(store, read_file(path, chunk_size=cfg.chunk_size), str(path),
                               options_from(cfg, kind, None, None), tolerate=False)  # type: ignore[arg-type]
        else:
            from recstack.ingestion.datasets import find_local
            from recstack.ingestion.datasets import load as read

            folder = find_local(data, cfg.home)
            if folder is None:
                from recstack.ingestion.datasets import download as fetch

                folder = fetch(data, cfg.home / "datasets")
            for kind, batches in read(data, folder).items():
                # Public data sets carry a few records that fail validation; the demo shows them and goes on.
                run_and_report(store, batches, f"{data}/{kind}", options_from(cfg, kind, None, None), tolerate=True)
        with progress_bar("snapshot", total=store.counts()["interactions"]) as progress:
            snap = Lake(cfg.lake_root).write_snapshot(store, progress)
        counts = store.counts()
    console.print(table("store", ["what", "count"], [[k, v] for k, v in counts.items()]))
    summary = Lake(cfg.lake_root).query(
        "SELECT event_type, count(*) AS events, count(DISTINCT user_id) AS users, round(avg(value), 1) AS mean_value "
        "FROM interactions GROUP BY event_type ORDER BY events DESC",
        snap.snapshot_id,
    )
    console.print(table(f"snapshot {snap.snapshot_id}", list(summary.columns), summary.values.tolist()))
    console.print(f"snapshot written to {snap.path}")
    return snap


def _train_and_compare(
    ctx: typer.Context, lake: Lake, snapshot_id: str, names: list[str], seed: int, k: int = 10, every: bool = False
) -> None:
    """Fit the models on 80 % of each user's interactions, rank them on the rest, register the best one
    refitted on everything (the champion unless the current one is better), and show three users' top five
    from it with titles."""
    from recstack.cli.evaluate import (
        check_models,
        print_leaderboard,
        relevant_pairs,
        score_models,
        split_interactions,
        train_models,
    )
    from recstack.errors import RecstackError

    check_models(names)
    interactions = lake.read_interactions(snapshot_id).drop(columns=["event_id"])
    catalogue = lake.read_items(snapshot_id)
    items = catalogue if len(catalogue) else None
    train, test = split_interactions(interactions, "user", 0.8, seed)
    relevant = relevant_pairs(train, test, items)
    console.rule("[bold]train and evaluate[/]")
    trained, failed = train_models(names, train, items, question="random")
    if not trained or relevant.empty:
        raise RecstackError("the demo could not train or evaluate any model: " + "; ".join(failed.values()))
    board, lists = score_models(trained, train, relevant, items, k)
    print_leaderboard(
        board, k, f"holdout of snapshot {snapshot_id} ({relevant['user_id'].nunique():,} users)", every
    )
    best = str(board.index[0])
    chosen = pd.Series(pd.unique(relevant["user_id"])).sample(n=min(3, relevant["user_id"].nunique()),
                                                               random_state=seed).tolist()
    shown = lists[best].loc[lambda f: f["user_id"].isin(chosen) & (f["rank"] <= 5)]
    shown = shown.assign(_order=shown["user_id"].map({u: i for i, u in enumerate(chosen)}))
    shown = shown.sort_values(["_order", "rank"])
    titles = catalogue.set_index("item_id")["title"] if "title" in catalogue else pd.Series(dtype=object)
    categories = catalogue.set_index("item_id")["category"] if "category" in catalogue else pd.Series(dtype=object)
    rows = [
        [row.user_id, row.rank, row.item_id, titles.get(row.item_id) or "", categories.get(row.item_id) or ""]
        for row in shown.itertuples()
    ]
    console.print(table(f"top 5 from {best}", ["user", "rank", "item", "title", "category"], rows))
    _register(ctx, best, board.loc[best], interactions, items, snapshot_id)


def _register(
    ctx: typer.Context, name: str, scores: pd.Series, interactions: pd.DataFrame, items: pd.DataFrame | None,
    snapshot_id: str,
) -> None:
    """Refit `name` on the whole snapshot and log it to the registry, as `recstack train` does."""
    from recstack.models import catalog
    from recstack.registry import Registry

    metrics = {str(m): float(v) for m, v in scores.items() if isinstance(v, int | float) and pd.notna(v)}
    with console.status(f"refitting {name} on all interactions and registering it…"):
        fitted = catalog.create(name).fit(interactions, items)
        registry = Registry.from_settings(settings(ctx))
        version = registry.log(fitted, metrics=metrics, params={"snapshot_id": snapshot_id, "source": "demo"},
                               tags={"recstack.snapshot": snapshot_id})
        promoted = registry.promote(version.version)
    champion = registry.champion()
    console.print(
        f"registered {name} as version {version.version}; champion: version "
        f"{champion.version if champion else '–'}" + ("" if promoted else " (kept: not beaten)")
    )
