"""`recstack models list|promote|rollback`: the registered versions and the champion alias."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from recstack.cli.common import console, settings

if TYPE_CHECKING:
    from recstack.registry import ModelVersion, Registry

app = typer.Typer(help="Registered model versions and the champion.", no_args_is_help=True)

METRICS = ("ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10")


def _registry(ctx: typer.Context) -> Registry:
    from recstack.registry import Registry

    return Registry.from_settings(settings(ctx))


@app.command("list")
def list_versions(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Every version, newest first: kind, evaluation metrics, aliases and when it was registered."""
    registry = _registry(ctx)
    versions = registry.versions()
    if as_json:
        typer.echo(json.dumps([_as_dict(v) for v in versions], indent=2))
        return
    if not versions:
        console.print(f"no versions of [bold]{registry.model_name}[/] yet: run `recstack train`")
        return
    shown = list(dict.fromkeys((registry.champion_metric, *METRICS)))
    out = Table(title=f"{registry.model_name} · champion metric {registry.champion_metric}", title_justify="left")
    out.add_column("version", justify="right")
    out.add_column("kind")
    for metric in shown:
        out.add_column(metric, justify="right")
    out.add_column("aliases")
    out.add_column("created (UTC)")
    out.add_column("last loop decision", overflow="fold")
    for v in versions:
        style = "bold green" if v.is_champion else None
        cells = [_fmt(v.metrics.get(metric)) for metric in shown]
        created = v.created_at.strftime("%Y-%m-%d %H:%M:%S")
        note = last_decision(v)
        shown_note = f"{note['decision']} {note['at']}: {note['summary']}" if note else ""
        out.add_row(str(v.version), v.model_kind, *cells, ", ".join(v.aliases), created, shown_note, style=style)
    console.print(out)


@app.command("promote")
def promote(
    ctx: typer.Context,
    version: Annotated[int, typer.Argument(min=1, help="Version to make the champion.")],
    force: Annotated[bool, typer.Option("--force", help="Even if it does not beat the current champion.")] = False,
) -> None:
    """Make VERSION the champion if it beats the current one on the champion metric (or with --force)."""
    registry = _registry(ctx)
    incumbent = registry.champion()
    if registry.promote(version, force=force):
        was = f" (was version {incumbent.version})" if incumbent is not None else ""
        console.print(f"[green]version {version} is the champion[/]{was}")
        return
    metric = registry.champion_metric
    if incumbent is not None and incumbent.version == version:
        console.print(f"version {version} already is the champion")
        return
    candidate = registry.get(version)
    assert incumbent is not None
    console.print(
        f"[yellow]not promoted[/]: version {version} has {metric} {_fmt(candidate.metrics.get(metric))}, "
        f"champion version {incumbent.version} has {_fmt(incumbent.metrics.get(metric))}; use --force to override"
    )


@app.command("rollback")
def rollback(ctx: typer.Context) -> None:
    """Make the previous champion the champion again (a second rollback undoes the first)."""
    registry = _registry(ctx)
    current = registry.champion()
    restored = registry.rollback()
    was = f" (was version {current.version})" if current is not None else ""
    console.print(f"[green]version {restored.version} ({restored.model_kind}) is the champion again[/]{was}")


def _as_dict(v: ModelVersion) -> dict[str, object]:
    return {
        "version": v.version,
        "kind": v.model_kind,
        "run_id": v.run_id,
        "metrics": {k: (x if math.isfinite(x) else None) for k, x in v.metrics.items()},
        "aliases": list(v.aliases),
        "created_at": v.created_at.isoformat(),
        "last_decision": last_decision(v),
    }


def last_decision(v: ModelVersion) -> dict[str, str] | None:
    """The feedback loop's last decision about `v` (decision, at, summary, run_id), if it made one."""
    from recstack.jobs.loop import LOOP_DECISION_TAG

    raw = v.tags.get(LOOP_DECISION_TAG)
    if not raw:
        return None
    try:
        note = json.loads(raw)
    except json.JSONDecodeError:
        return {"decision": "?", "at": "", "summary": raw}
    return {str(k): str(x) for k, x in note.items()} if isinstance(note, dict) else None


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4f}"
