"""`recstack serve`: the recommendation API on uvicorn."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
from typing import Annotated

import typer

from recstack.cli.common import console, settings
from recstack.config import Settings
from recstack.errors import ConfigurationError, MissingExtra


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _export(settings: Settings) -> None:
    """Worker processes build their own app from the environment: hand them the effective settings."""
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        os.environ[f"RECSTACK_{name.upper()}"] = text


# glibc gives each thread that allocates under contention an arena of its own (up to 8 per core), and a
# long-running server's threads (requests, reload, stream, impression writer) keep their arenas' free pages:
# two bound that, at no measurable cost on the request path.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8


def _bound_malloc_arenas() -> None:
    """At most MALLOC_ARENAS malloc arenas in this process (glibc's `mallopt`) and in the worker processes it
    starts (`MALLOC_ARENA_MAX`, read by glibc at their start); a user's own setting wins."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    os.environ["MALLOC_ARENA_MAX"] = str(MALLOC_ARENAS)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc: its allocator has no such knob
        return


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (use a redis:// cache with more than one).")]
    = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the champion model over HTTP (OpenAPI docs at /docs); reloads a newly promoted champion live."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtra("uvicorn", "serve") from exc
    from recstack.serving.app import create_app

    current = settings(ctx)
    _bound_malloc_arenas()
    access_log = log_level in {"trace", "debug", "info"}
    if workers > 1 and current.cache_url.startswith("memory"):
        console.print("[yellow]note:[/] each worker has its own memory cache; use RECSTACK_CACHE_URL=redis://…")
    console.print(f"serving on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    if workers == 1:
        uvicorn.run(create_app(current), host=host, port=port, log_level=log_level, access_log=access_log)
        return
    if not 1 <= workers <= 64:
        raise ConfigurationError(f"--workers must be between 1 and 64, got {workers}")
    if not current.session_secret:  # every worker must read the others' dashboard sessions
        current = current.model_copy(update={"session_secret": secrets.token_urlsafe(32)})
    _export(current)
    uvicorn.run(
        "recstack.serving.app:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
        access_log=access_log,
    )
