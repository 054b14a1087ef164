"""Commands about the store itself: init, stats, snapshot."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from recstack.cli.common import console, progress_bar, settings, store_from, table
from recstack.storage.lake import Lake


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("stats")(stats)
    app.command("snapshot")(snapshot)


def init(ctx: typer.Context) -> None:
    """Create the store (or migrate it to the newest schema)."""
    with store_from(ctx) as store:
        console.print(f"store ready at [bold]{store.url}[/]")


def stats(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts of users, items, interactions, preference documents and quarantined records."""
    with store_from(ctx) as store:
        counts = store.counts()
    if as_json:
        typer.echo(json.dumps(counts))
        return
    console.print(table("recstack store", ["what", "count"], [[k, v] for k, v in counts.items()]))


def snapshot(ctx: typer.Context) -> None:
    """Export the store to a new date-partitioned Parquet snapshot (what training reads)."""
    cfg = settings(ctx)
    with store_from(ctx) as store:
        total = store.counts()["interactions"]
        with progress_bar("snapshot", total=total) as progress:
            snap = Lake(cfg.lake_root).write_snapshot(store, progress)
    console.print(
        f"snapshot [bold]{snap.snapshot_id}[/]: {snap.interactions:,} interactions, {snap.items:,} items, "
        f"{snap.users:,} users → {snap.path}"
    )
