"""`recstack keys`: create, list and revoke the API's keys (the store keeps only their hashes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from recstack.cli.common import console, store_from
from recstack.errors import NotFound
from recstack.serving.auth import Scope, issue_key

app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("create")
def create(
    ctx: typer.Context,
    scope: Annotated[str, typer.Option(help="read, write (includes read) or admin (includes both).")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help='Print {"id": …, "key": …} for scripts.')] = False,
) -> None:
    """Create a key; the key is printed once and cannot be shown again."""
    with store_from(ctx) as store:
        issued = issue_key(store, Scope.parse(scope), name)
    if as_json:
        typer.echo(json.dumps({"id": issued.record.key_id, "key": issued.token, "scope": issued.record.scope}))
        return
    console.print(f"key [bold]{issued.record.key_id}[/] ({issued.record.scope}): {issued.token}", highlight=False)
    console.print("[dim]store it now: only its hash is kept[/]")


@app.command("list")
def list_keys(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every key (never the key itself), revoked ones included."""
    with store_from(ctx) as store:
        keys = store.api_keys()
    if as_json:
        typer.echo(json.dumps([
            {"id": k.key_id, "name": k.name, "scope": k.scope, "created_at": k.created_at, "revoked_at": k.revoked_at}
            for k in keys
        ]))
        return
    table = Table("id", "name", "scope", "created (UTC)", "revoked (UTC)", title="API keys", title_justify="left")
    for k in keys:
        table.add_row(k.key_id, k.name, k.scope, _when(k.created_at), _when(k.revoked_at))
    console.print(table)


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")]) -> None:
    """Revoke a key: servers refuse it within their key-cache TTL (seconds)."""
    with store_from(ctx) as store:
        if not store.revoke_api_key(key_id):
            raise NotFound(f"no active key {key_id!r}")
    console.print(f"key {key_id} revoked")
