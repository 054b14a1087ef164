"""`recstack quarantine`: look at, export and clear rejected records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from recstack.cli.common import console, store_from, table

app = typer.Typer(help="Rejected records and why they were rejected.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option(help="Only this ingestion run.")] = None,
    limit: Annotated[int, typer.Option(help="How many to show.")] = 50,
) -> None:
    """Show quarantined records with source, location and reason."""
    with store_from(ctx) as store:
        rows = store.list_quarantine(limit=limit, run_id=run)
    console.print(
        table(
            f"quarantine ({len(rows)} shown)",
            ["run", "kind", "source", "location", "reason", "record"],
            [[r.run_id, r.kind, Path(r.source).name, r.location, r.reason, r.record[:60]] for r in rows.itertuples()],
        )
    )


@app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="File to write (.csv or .jsonl).")],
    run: Annotated[str | None, typer.Option(help="Only this ingestion run.")] = None,
    fmt: Annotated[Literal["csv", "jsonl"] | None, typer.Option("--format")] = None,
) -> None:
    """Write every quarantined record, for fixing and re-ingesting."""
    with store_from(ctx) as store:
        rows = store.list_quarantine(limit=None, run_id=run)
    fmt = fmt or ("jsonl" if out.suffix in {".jsonl", ".json"} else "csv")
    if fmt == "jsonl":
        rows.to_json(out, orient="records", lines=True)
    else:
        rows.to_csv(out, index=False)
    console.print(f"wrote {len(rows):,} quarantined records to {out}")


@app.command("clear")
def clear(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option(help="Only this ingestion run.")] = None,
) -> None:
    """Delete quarantined records (all, or one run's)."""
    with store_from(ctx) as store:
        n = store.clear_quarantine(run)
    console.print(f"cleared {n:,} quarantined records")
