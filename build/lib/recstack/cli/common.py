"""What every command shares: settings from the global options, the store, progress bars, output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from recstack.config import Settings
from recstack.storage import Store, open_store

console = Console()
err_console = Console(stderr=True)


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    return Settings()


@contextmanager
def store_from(ctx: typer.Context, migrate: bool = True) -> Iterator[Store]:
    """Open the configured store, bringing its schema up to date first so no command meets an old one."""
    store = open_store(settings(ctx).store_url)
    try:
        if migrate:
            store.migrate()
        yield store
    finally:
        store.close()


@contextmanager
def progress_bar(description: str, total: int | None = None, unit: str = "records") -> Iterator[Callable[[int], None]]:
    """A Rich progress bar exposed as the `progress(n)` callback library code accepts."""
    columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn(), TextColumn(unit)] if total else [TextColumn("{task.completed:,} " + unit)]
    columns += [TimeElapsedColumn()] + ([TimeRemainingColumn()] if total else [])
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def key_values(pairs: list[str] | None, option: str) -> dict[str, str]:
    """Parse repeated `a=b` options into a dict, with an error naming the bad pair."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"{pair!r} is not of the form name=value", param_hint=option)
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    out = Table(title=title, title_justify="left")
    for column in columns:
        numeric = column in {"read", "accepted", "duplicates", "rejected", "count"}
        out.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        out.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in row])
    return out
