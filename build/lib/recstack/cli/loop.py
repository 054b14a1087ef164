"""`recstack loop`: the feedback loop, every `loop_interval_s` or once (`--once`, for cron or a CronJob)."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recstack.cli.common import console, err_console, settings, store_from

if TYPE_CHECKING:
    from recstack.config import Settings
    from recstack.jobs.loop import Decision, LoopConfig

_STYLE = {"promoted": "green", "rolled_back": "red", "kept": "yellow", "not_triggered": "dim"}


def register(app: typer.Typer) -> None:
    app.command("loop")(loop)


def loop_config(cfg: Settings) -> LoopConfig:
    from recstack.jobs.loop import LoopConfig

    return LoopConfig(
        min_events=cfg.loop_min_events, max_age_s=cfg.loop_max_age_s, model=cfg.loop_model, holdout=cfg.loop_holdout,
        margin=cfg.loop_margin, feedback_window_s=cfg.feedback_window_s, rollback_margin=cfg.rollback_margin,
        rollback_min_impressions=cfg.rollback_min_impressions, rollback_window_s=cfg.rollback_window_s,
    )


def show(decision: Decision) -> None:
    style = _STYLE.get(decision.kind, "")
    champion = f"champion {decision.champion}" if decision.champion is not None else "no champion"
    console.print(f"[{style}]{decision.rule}: {decision.kind.replace('_', ' ')}[/] ({champion}) {decision.reason}")


def loop(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron or a Kubernetes CronJob).")]
    = False,
    interval: Annotated[
        float | None, typer.Option(min=1.0, help="Seconds between passes (default: loop_interval_s).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (decisions, champion, feedback rates).")
    ] = None,
    pushgateway: Annotated[
        str | None, typer.Option(help="With --once: push the pass's metrics to this Prometheus Pushgateway.")
    ] = None,
) -> None:
    """Roll back a champion users like less than the previous one; retrain on new events and promote the
    challenger only when it beats the champion on the newest events."""
    from recstack.jobs.loop import run_forever, run_once
    from recstack.jobs.loop_metrics import LoopMetrics
    from recstack.registry import Registry
    from recstack.storage.lake import Lake

    cfg = settings(ctx)
    config = loop_config(cfg)
    registry, lake = Registry.from_settings(cfg), Lake(cfg.lake_root)
    metrics = LoopMetrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=metrics.registry)
    with store_from(ctx) as store:

        def observed(decisions: list[Decision] | None, seconds: float) -> None:
            if decisions is None:
                metrics.failed()
            else:
                metrics.observe(decisions, seconds, registry, store, config, int(time.time() * 1000))

        if once:
            started = time.monotonic()
            with err_console.status("feedback loop…") as status:
                decisions = run_once(store, lake, registry, config, progress=status.update)
            observed(decisions, time.monotonic() - started)
            for decision in decisions:
                show(decision)
            if pushgateway:
                from prometheus_client import push_to_gateway

                try:
                    push_to_gateway(pushgateway, job="recstack-loop", registry=metrics.registry)
                except OSError as exc:
                    err_console.print(f"[yellow]metrics not pushed to {pushgateway}: {exc}[/]")
            return
        stop = threading.Event()

        def _stop(*_: Any) -> None:
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop)
        every = interval or cfg.loop_interval_s
        err_console.print(f"feedback loop every {every:.0f} s; Ctrl-C to stop")
        run_forever(store, lake, registry, config, every, stop=stop, on_decision=show, on_pass=observed)
