"""A real uvicorn server on a free loopback port, in a thread of the test process, plus a small data set."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd
import uvicorn
from fastapi import FastAPI

from recstack.ingestion.pipeline import IngestOptions, RawBatch, ingest
from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
from recstack.models.base import Recommender
from recstack.models.catalog import create
from recstack.storage import Store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(server: subprocess.Popen[bytes], base: str, within_s: float = 120.0, poll_s: float = 0.3) -> None:
    """Wait until a `recstack serve` subprocess answers /readyz 200; fail with its output if it exits first."""
    deadline = time.monotonic() + within_s
    while True:
        assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{base} not ready in {within_s:.0f} s"
        time.sleep(poll_s)


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn until the block ends; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass(frozen=True)
class World:
    items: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame


def make_world() -> World:
    config = SyntheticConfig(users=200, items=300, interactions=12_000, categories=6, seed=7)
    users, items = make_catalog(config)
    interactions = pd.concat(list(iter_interactions(config)), ignore_index=True)
    return World(items, users, interactions)


def load(store: Store, world: World) -> None:
    for kind, frame in (("items", world.items), ("users", world.users), ("interactions", world.interactions)):
        located = frame.assign(_location=[f"row {i}" for i in range(len(frame))])
        ingest(store, [RawBatch(located)], "synthetic", IngestOptions(kind=kind))  # type: ignore[arg-type]


def train(world: World, seed: int = 42, factors: int = 16) -> Recommender[Any]:
    columns = ["user_id", "item_id", "event_type", "value"]
    return create("als", factors=factors, iterations=6, random_state=seed, num_threads=1).fit(
        world.interactions[columns], world.items
    )


class FixedSource:
    """A model source holding one model (what a registry with a single champion looks like)."""

    @dataclass(frozen=True)
    class Version:
        version: int

    def __init__(self, model: Recommender[Any], version: int = 1) -> None:
        self.model = model
        self.version = version

    def champion(self) -> FixedSource.Version:
        return FixedSource.Version(self.version)

    def load(self, version: Any) -> Recommender[Any]:
        return self.model
