"""`recstack produce` (a file onto the bus) and `recstack stream` (the consumer-group worker)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from recstack.backends import scheme_of
from recstack.bus import Bus, open_bus
from recstack.cli.common import console, err_console, progress_bar, settings, store_from
from recstack.cli.ingest import Defaults, Kind, Mapping, Policy, Tolerate, options_from, print_run
from recstack.config import Settings
from recstack.errors import RejectedRecords
from recstack.ingestion.files import FileFormat, read_file
from recstack.ingestion.produce import produce
from recstack.processing.online import open_online_state
from recstack.processing.stream import BatchReport, StreamMetrics, StreamProcessor
from recstack.schema import ValidationRules
from recstack.storage import Store
from recstack.storage.cache import open_cache


def register(app: typer.Typer) -> None:
    app.command("produce")(produce_file)
    app.command("stream")(stream)


def _processor(cfg: Settings, bus: Bus, store: Store, group: str, metrics: StreamMetrics | None = None) -> (
        StreamProcessor):
    return StreamProcessor(
        bus, store, open_online_state(cfg.online_state_url, store, cfg.history_limit), topics=cfg.topics,
        group=group, rules=ValidationRules(max_value=cfg.max_value), unknown_users=cfg.unknown_users,
        unknown_items=cfg.unknown_items, cache=open_cache(cfg.cache_url), cache_ttl_s=cfg.cache_ttl_s,
        batch_size=cfg.stream_batch_size, metrics=metrics,
    )


def produce_file(
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
    """Stream a file onto the bus (backfill, replay): the same formats, checks and --map options as ingest.

    With the in-process bus (memory://) nothing outlives this command, so it also runs the stream worker
    here until everything produced is stored."""
    from recstack.bus.outbox import Outbox, Publisher

    cfg = settings(ctx)
    options = options_from(cfg, kind, mapping, defaults, unknown_users, unknown_items)
    bus = open_bus(cfg.bus_url, partitions=cfg.bus_partitions)
    bus.ensure_topics(cfg.topics.all())
    publisher = Publisher(bus, Outbox(cfg.outbox_dir))
    with store_from(ctx) as store:
        batches = read_file(path, fmt, cfg.chunk_size, delimiter)
        with progress_bar(f"{kind} → {cfg.topics.events if kind == 'interactions' else cfg.topics.catalog}") as bar:
            run = produce(store, publisher, batches, str(path), options, cfg.topics, bar)
        if publisher.pending:
            err_console.print(f"[yellow]the bus did not answer: {publisher.pending:,} message(s) wait in "
                              f"{cfg.outbox_dir} and go out with the next producer that reaches it[/]")
        print_run(store, run)
        if scheme_of(bus.url) == "memory":
            processor = _processor(cfg, bus, store, cfg.stream_group)
            with err_console.status("storing through the in-process stream…"):
                done = processor.run(idle_exit_s=0.5)
            processor.close()
            console.print(f"stored {done.stored:,} new events ({done.duplicates:,} already stored)")
    bus.close()
    if run.rejected and not (tolerate_rejects or cfg.tolerate_rejects):
        raise RejectedRecords(
            f"{run.rejected:,} {kind} rejected (see `recstack quarantine list --run {run.run_id}`); "
            "pass --tolerate-rejects to accept a partial load"
        )


def stream(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Consumer group (default: the stream_group setting).")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (lag, events/s, DLQ, latency).")
    ] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without a message (backfills, tests).")
    ] = None,
) -> None:
    """Consume the event and catalogue topics as a member of a consumer group: store every event once,
    keep the online state, invalidate cached answers, dead-letter what fails. Run more to scale out."""
    cfg = settings(ctx)
    metrics = StreamMetrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=metrics.registry)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bus = open_bus(cfg.bus_url, partitions=cfg.bus_partitions)
    with store_from(ctx) as store:
        processor = _processor(cfg, bus, store, group or cfg.stream_group, metrics)

        def show(report: BatchReport) -> None:
            err_console.log(
                f"{report.messages:,} messages: {report.stored:,} stored, {report.duplicates:,} duplicates, "
                f"{report.rejected:,} rejected ({report.seconds * 1000:.0f} ms)"
            )

        processor.on_batch = show if err_console.is_terminal else None
        err_console.print(f"stream: group [bold]{processor.group}[/] on {bus.url} → {store.url.split('@')[-1]}")
        try:
            total = processor.run(stop, idle_exit_s=idle_exit)
        finally:
            processor.close()
            bus.close()
    console.print(
        f"stream stopped: {total.messages:,} messages, {total.stored:,} stored, {total.duplicates:,} duplicates, "
        f"{total.rejected:,} rejected"
    )
