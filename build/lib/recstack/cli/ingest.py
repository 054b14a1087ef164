"""Ingestion commands: files, SQL databases, HTTP APIs; every one ends with a summary and an exit code."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from recstack.cli.common import console, key_values, progress_bar, settings, store_from, table
from recstack.config import Settings, UnknownIdPolicy
from recstack.errors import RejectedRecords
from recstack.ingestion import IngestOptions, RawBatch, ingest
from recstack.ingestion.files import FileFormat, read_file
from recstack.schema import RecordKind, ValidationRules
from recstack.storage import IngestRun, Store

Kind = Annotated[RecordKind, typer.Option("--kind", "-k", help="What the records are.")]
Mapping = Annotated[list[str] | None, typer.Option("--map", "-m", help="source_column=field (repeatable).")]
Defaults = Annotated[list[str] | None, typer.Option("--set", help="field=value for fields the source lacks.")]
Tolerate = Annotated[bool, typer.Option("--tolerate-rejects", help="Exit 0 even if records were rejected.")]
Policy = Annotated[UnknownIdPolicy | None, typer.Option(help="create bare records, or reject the interaction.")]


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_file)
    app.command("ingest-sql")(ingest_sql)
    app.command("ingest-api")(ingest_api)


def options_from(
    cfg: Settings,
    kind: RecordKind,
    mapping: list[str] | None,
    defaults: list[str] | None,
    unknown_users: UnknownIdPolicy | None = None,
    unknown_items: UnknownIdPolicy | None = None,
) -> IngestOptions:
    return IngestOptions(
        kind=kind,
        mapping=key_values(mapping, "--map"),
        defaults=key_values(defaults, "--set"),
        unknown_users=unknown_users or cfg.unknown_users,
        unknown_items=unknown_items or cfg.unknown_items,
        rules=ValidationRules(max_value=cfg.max_value),
    )


def run_and_report(
    store: Store, batches: Iterable[RawBatch], source: str, options: IngestOptions, tolerate: bool,
    total: int | None = None,
) -> IngestRun:
    """Ingest with a progress bar, print the summary, and fail (exit 4) on rejects unless tolerated."""
    with progress_bar(f"{options.kind} ← {Path(source).name or source}", total=total) as progress:
        run = ingest(store, batches, source, options, progress)
    print_run(store, run)
    if run.rejected and not tolerate:
        raise RejectedRecords(
            f"{run.rejected:,} {options.kind} rejected (see `recstack quarantine list --run {run.run_id}`); "
            "pass --tolerate-rejects to accept a partial load"
        )
    return run


def print_run(store: Store, run: IngestRun) -> None:
    console.print(
        table(
            f"{run.kind} from {run.source} (run {run.run_id})",
            ["read", "accepted", "duplicates", "rejected"],
            [[run.read, run.accepted, run.duplicates, run.rejected]],
        )
    )
    if run.rejected:
        sample = store.list_quarantine(limit=5, run_id=run.run_id)
        for row in sample.itertuples():
            console.print(f"  [yellow]rejected[/] {row.location}: {row.reason}")
        if run.rejected > len(sample):
            console.print(f"  … and {run.rejected - len(sample):,} more")


def _count_lines(path: Path) -> int | None:
    if path.suffix not in {".csv", ".tsv", ".jsonl", ".ndjson", ".json"} or path.stat().st_size > 2 << 30:
        return None
    with open(path, "rb") as handle:
        return max(sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) - 1, 0)


def ingest_file(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A CSV, TSV, Parquet or JSON-lines file.", exists=True, dir_okay=False)],
    kind: Kind = "interactions",
    fmt: Annotated[FileFormat | None, typer.Option("--format", help="Override the format the suffix implies.")] = None,
    mapping: Mapping = None,
    defaults: Defaults = None,
    delimiter: Annotated[str | None, typer.Option(help="Field delimiter for delimited text.")] = None,
    unknown_users: Policy = None,
    unknown_items: Policy = None,
    tolerate_rejects: Tolerate = False,
) -> None:
    """Ingest a file of interactions, items or users; bad records go to the quarantine with their reason."""
    cfg = settings(ctx)
    options = options_from(cfg, kind, mapping, defaults, unknown_users, unknown_items)
    with store_from(ctx) as store:
        batches = read_file(path, fmt, cfg.chunk_size, delimiter)
        run_and_report(store, batches, str(path), options, tolerate_rejects or cfg.tolerate_rejects, _count_lines(path))


def ingest_sql(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="SQLAlchemy URL of the source database.")],
    query: Annotated[str, typer.Option("--query", "-q", help="SELECT returning the records.")],
    kind: Kind = "interactions",
    mapping: Mapping = None,
    defaults: Defaults = None,
    unknown_users: Policy = None,
    unknown_items: Policy = None,
    tolerate_rejects: Tolerate = False,
) -> None:
    """Pull records from an existing application database with a query."""
    from recstack.ingestion.sql import read_sql

    cfg = settings(ctx)
    options = options_from(cfg, kind, mapping, defaults, unknown_users, unknown_items)
    with store_from(ctx) as store:
        batches = read_sql(url, query, cfg.chunk_size)
        run_and_report(store, batches, url.split("@")[-1], options, tolerate_rejects or cfg.tolerate_rejects)


def ingest_api(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="First page of a JSON API returning records.")],
    kind: Kind = "items",
    records_path: Annotated[str, typer.Option(help="Dotted path to the records in a body, e.g. data.items.")] = "",
    paging: Annotated[str, typer.Option(help="page | cursor | next | none")] = "page",
    per_page: Annotated[int | None, typer.Option(help="Page size sent with page paging.")] = 100,
    cursor_path: Annotated[str, typer.Option(help="Where the next cursor is in the body.")] = "next_cursor",
    next_path: Annotated[str, typer.Option(help="Where the next page's URL is in the body.")] = "next",
    max_pages: Annotated[int | None, typer.Option(help="Stop after this many pages.")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Requests per second at most.")] = None,
    max_retries: Annotated[int, typer.Option(help="Retries per page on errors, 429 and 5xx.")] = 5,
    header: Annotated[list[str] | None, typer.Option("--header", help="name=value request header.")] = None,
    auth_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the Authorization header value.")
    ] = None,
    flatten: Annotated[bool, typer.Option(help="Flatten nested objects into dotted column names.")] = False,
    mapping: Mapping = None,
    defaults: Defaults = None,
    tolerate_rejects: Tolerate = False,
) -> None:
    """Pull records (usually item metadata) from a third-party HTTP JSON API, page by page."""
    import os

    from recstack.ingestion.http_api import ApiOptions, read_api

    cfg = settings(ctx)
    api = ApiOptions(
        records_path=records_path, paging=paging, per_page=per_page, cursor_path=cursor_path,  # type: ignore[arg-type]
        next_path=next_path, max_pages=max_pages, rate_limit=rate_limit, max_retries=max_retries,
        headers=key_values(header, "--header"), auth=os.environ.get(auth_env) if auth_env else None, flatten=flatten,
    )
    options = options_from(cfg, kind, mapping, defaults)
    with store_from(ctx) as store:
        run_and_report(store, read_api(url, api), url, options, tolerate_rejects or cfg.tolerate_rejects)
