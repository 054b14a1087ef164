"""`recstack batch-recommend`: train on an interactions file and write every user's top-k to a CSV file.

This is the interface an outside quality check drives, so it never needs the store: a file in, a file out.
Every user with a valid row gets exactly `k` items (fewer only when the catalogue has fewer unseen items),
none of them an item the user interacted with in the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from recstack.cli.common import console, settings
from recstack.cli.evaluate import build_model, check_models, fit_with_bar, live_progress, parse_params
from recstack.cli.files import INTERACTIONS_HEADER, read_training_files
from recstack.errors import ConfigurationError
from recstack.models.base import RECOMMEND_COLUMNS
from recstack.schema import ValidationRules

DEFAULT_TIME_BUDGET_S = 300.0


def register(app: typer.Typer) -> None:
    app.command("batch-recommend")(batch_recommend)


def complete_lists(
    recommendations: pd.DataFrame, users: np.ndarray, train: pd.DataFrame, k: int
) -> pd.DataFrame:
    """Top up every list shorter than `k` (an unknown user, items the model cannot score) with the most
    popular unseen items not already in it; ranks are renumbered 1..n per user and users keep `users`' order.

    Filled-in rows carry the popularity model's score, so scores compare only within one source; the rank
    is the order to trust.
    """
    counts = recommendations.groupby("user_id").size()
    short = [u for u in users if counts.get(u, 0) < k]
    frames = [recommendations]
    if short:
        from recstack.models.popularity import Popularity

        fallback = Popularity().fit(train).recommend(short, k + int(counts.reindex(short).fillna(0).max()))
        frames.append(fallback.assign(rank=fallback["rank"] + k))
    merged = pd.concat(frames, ignore_index=True).drop_duplicates(["user_id", "item_id"], keep="first")
    order = pd.Series(np.arange(len(users)), index=users)
    merged = merged.assign(_order=merged["user_id"].map(order)).dropna(subset=["_order"])
    merged = merged.sort_values(["_order", "rank"], kind="stable")
    merged["rank"] = merged.groupby("user_id", sort=False).cumcount() + 1
    merged = merged.loc[merged["rank"] <= k]
    return merged[list(RECOMMEND_COLUMNS)].reset_index(drop=True)


def _write_csv(frame: pd.DataFrame, out: Path) -> None:
    """Via a temporary name, so a crash never leaves a complete-looking file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    frame.to_csv(partial, index=False, float_format="%.6g")
    partial.replace(out)


def batch_recommend(
    ctx: typer.Context,
    train: Annotated[
        Path, typer.Option(help=f"Interactions file, header {INTERACTIONS_HEADER}.", exists=True, dir_okay=False)
    ],
    out: Annotated[Path, typer.Option(help="Output CSV: user_id,item_id,rank,score.", dir_okay=False)],
    k: Annotated[int, typer.Option(min=1, help="Items per user.")] = 10,
    model: Annotated[str, typer.Option(help="Catalogue model name, or 'auto' to tune and pick.")] = "auto",
    items: Annotated[
        Path | None,
        typer.Option(help="Item metadata file (title, category, tags, description…).", exists=True, dir_okay=False),
    ] = None,
    time_budget: Annotated[
        float, typer.Option(min=1, help="Seconds 'auto' may spend choosing and tuning.")
    ] = DEFAULT_TIME_BUDGET_S,
    param: Annotated[list[str] | None, typer.Option(help="model.parameter=value (repeatable).")] = None,
) -> None:
    """Train on an interactions file and write the top-k unseen items for every user in it."""
    cfg = settings(ctx)
    check_models([model])
    params = parse_params(param)
    rules = ValidationRules(max_value=cfg.max_value)
    interactions, item_frame = read_training_files(train, items, rules)
    users = pd.unique(interactions["user_id"])
    console.print(
        f"{train.name}: {len(interactions):,} interactions, {len(users):,} users, "
        f"{interactions['item_id'].nunique():,} items"
    )
    recommender = build_model(model, params.get(model, {}), time_budget)
    with live_progress() as bar:
        fit_s = fit_with_bar(bar, model, recommender, interactions, item_frame)
    started = time.perf_counter()
    recommendations = complete_lists(recommender.recommend(users, k), users, interactions, k)
    recommend_s = time.perf_counter() - started
    if recommendations.empty:
        raise ConfigurationError("no recommendations: every item is already seen by every user")
    _write_csv(recommendations, out)
    per_user = recommendations.groupby("user_id").size()
    short = int((per_user < k).sum()) + len(users) - len(per_user)
    console.print(
        f"{model}: trained in {fit_s:.1f} s, recommended in {recommend_s:.1f} s; "
        f"{len(recommendations):,} rows for {len(per_user):,} users → {out}"
    )
    if short:
        console.print(f"[yellow]{short:,} user(s) got fewer than {k} items: the catalogue has too few unseen ones")
