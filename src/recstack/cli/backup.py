"""`recstack backup DEST` and `recstack restore SRC`: the store, the lakehouse and the MLflow store with its
artefacts, in one checksummed archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recstack.cli.common import console, err_console, settings


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(help="Archive to write (.tar.gz).", dir_okay=False)],
) -> None:
    """Back up the store (pg_dump or SQLite's online backup), the lakehouse and the MLflow store with its
    artefacts into one archive with a manifest of checksums; safe while the roles run."""
    from recstack.backup import BackupTargets
    from recstack.backup import backup as run_backup

    cfg = settings(ctx)
    with err_console.status("backup…") as status:
        manifest = run_backup(BackupTargets.from_settings(cfg), dest, progress=status.update)
    size = sum(int(f["bytes"]) for f in manifest.files.values())
    parts = ", ".join(f"{name} ({part['kind']})" for name, part in manifest.components.items())
    console.print(f"[green]backed up[/] {parts}: {len(manifest.files):,} files, {size:,} bytes → {dest}")
    mlflow = manifest.components["mlflow"]
    if mlflow["kind"] == "server":
        err_console.print(f"[yellow]MLflow at {mlflow['uri']} is not in the archive: {mlflow['note']}[/]")


def restore(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(help="Archive written by `recstack backup`.", exists=True, dir_okay=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Replace the current contents without asking.")] = False,
) -> None:
    """Verify an archive's checksums, then replace the store, the lakehouse and the MLflow store with it.
    Stop the api, stream and loop first."""
    from recstack.backup import BackupTargets, read_manifest
    from recstack.backup import restore as run_restore

    cfg = settings(ctx)
    manifest = read_manifest(src)
    if not yes:
        typer.confirm(f"replace the store at {cfg.store_url.split('@')[-1]}, the lake and the MLflow store with the "
                      f"backup of {manifest.created_at}?", abort=True)
    with err_console.status("restore…") as status:
        run_restore(src, BackupTargets.from_settings(cfg), progress=status.update)
    console.print(f"[green]restored[/] the backup of {manifest.created_at} (recstack {manifest.recstack_version})")
