"""`recstack datasets`: public data sets, loaded from a local copy or downloaded from their home."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recstack.cli.common import console, progress_bar, settings, store_from, table
from recstack.cli.ingest import options_from, run_and_report
from recstack.errors import NotFound

app = typer.Typer(help="Public data sets (MovieLens).", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="movielens-100k or movielens-latest-small")]


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Known data sets and where they come from."""
    from recstack.ingestion.datasets import DATASETS, find_local

    rows = [[d.name, d.url, str(find_local(d.name, settings(ctx).home) or "-")] for d in DATASETS.values()]
    console.print(table("data sets", ["name", "source", "local copy"], rows))


@app.command("download")
def download(
    ctx: typer.Context,
    name: Name,
    dest: Annotated[Path | None, typer.Option(help="Where to unpack (default RECSTACK_HOME/datasets).")] = None,
) -> None:
    """Download a data set from its public home and unpack it."""
    from recstack.ingestion.datasets import download as fetch

    target = dest or settings(ctx).home / "datasets"
    from recstack.ingestion.datasets import dataset

    with progress_bar(f"download {name}", total=dataset(name).size, unit="bytes") as progress:
        path = fetch(name, target, progress=progress)
    console.print(f"{name} is in {path}")


@app.command("load")
def load(
    ctx: typer.Context,
    name: Name,
    path: Annotated[Path | None, typer.Option(help="Folder with the data set's files.")] = None,
    download_missing: Annotated[bool, typer.Option("--download", help="Download when no local copy is found.")] = False,
) -> None:
    """Ingest a data set's users, items and interactions into the store."""
    from recstack.ingestion.datasets import download as fetch
    from recstack.ingestion.datasets import find_local
    from recstack.ingestion.datasets import load as read

    cfg = settings(ctx)
    folder = path or find_local(name, cfg.home)
    if folder is None:
        if not download_missing:
            raise NotFound(f"no local copy of {name}; pass --path DIR, or --download to fetch it")
        folder = fetch(name, cfg.home / "datasets")
    with store_from(ctx) as store:
        for kind, batches in read(name, folder).items():
            run_and_report(store, batches, f"{name}/{kind}", options_from(cfg, kind, None, None), cfg.tolerate_rejects)
