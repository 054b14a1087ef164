"""`recstack` entry point: global options, command registration, and the one place errors become exit codes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from recstack import __version__
from recstack.cli import (
    backup,
    datasets,
    demo,
    evaluate,
    ingest,
    keys,
    loop,
    models,
    quarantine,
    recommend,
    serve,
    spark,
    store,
    stream,
    train,
)
from recstack.cli.common import err_console
from recstack.config import Settings
from recstack.errors import ConfigurationError, RecstackError

app = typer.Typer(
    name="recstack",
    help="recstack: ingest behaviour, train recommenders, serve them. Embedded by default; servers by config.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(help="State directory (RECSTACK_HOME).")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Store URL: sqlite:///… or postgresql://… (RECSTACK_DATABASE_URL).")
    ] = None,
    lake_url: Annotated[str | None, typer.Option(help="Snapshot root, a directory or fsspec URL.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"home": home, "database_url": database_url, "lake_url": lake_url}
    try:
        ctx.obj = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from exc


@app.command()
def version() -> None:
    """Print the recstack version."""
    typer.echo(__version__)


store.register(app)
ingest.register(app)
app.add_typer(datasets.app, name="datasets")
app.add_typer(quarantine.app, name="quarantine")
demo.register(app)
train.register(app)
loop.register(app)
app.add_typer(models.app, name="models")
evaluate.register(app)
recommend.register(app)
serve.register(app)
stream.register(app)
backup.register(app)
app.add_typer(spark.app, name="spark")
app.add_typer(keys.app, name="keys")


def main() -> None:
    """Run the CLI; a RecstackError becomes a one-line message and its exit code, never a traceback."""
    try:
        app(standalone_mode=False)
    except RecstackError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except typer.TyperException as exc:
        # Usage errors (bad options or arguments) print their own message and carry their exit code.
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
