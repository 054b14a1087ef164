"""Where the API sends what clients post: onto the bus, and — when the bus lives in this process — through
the in-process stream worker that consumes it.

With `kafka://` the API only publishes (through the outbox's `Publisher`, so an unreachable broker costs
nothing a client was told is accepted) and `recstack stream` processes elsewhere. With `memory://` the
bus exists only in this process, so the API runs a `StreamProcessor` on a thread of its own and a request
waits until its events are processed: the embedded setup keeps read-your-writes with no server running.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import pandas as pd

from recstack.bus.base import Topics
from recstack.bus.events import encode_catalog, encode_events
from recstack.processing.stream import BatchReport, StreamProcessor

__all__ = ["EmbeddedStream", "Intake", "Sender"]

logger = logging.getLogger(__name__)


class Sender(Protocol):
    """What the API publishes through (`recstack.bus.outbox.Publisher`)."""

    @property
    def bus_up(self) -> bool: ...

    @property
    def pending(self) -> int: ...

    def publish(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> Literal["sent", "spooled"]: ...

    def stop(self, timeout_s: float = 10.0) -> None: ...


class EmbeddedStream:
    """A `StreamProcessor` on a daemon thread, with a way to wait until everything published is processed."""

    def __init__(self, processor: StreamProcessor, on_batch: Callable[[BatchReport], None] | None = None) -> None:
        self.processor = processor
        self._user_hook = on_batch
        processor.on_batch = self._batch_done
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recstack-stream", daemon=True)

    def _batch_done(self, report: BatchReport) -> None:
        if self._user_hook is not None:
            try:
                self._user_hook(report)
            except Exception:  # the view update must never stop the stream
                logger.exception("in-process stream hook failed")
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        self.processor.run(self._stop)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.processor.close()

    def wait(self, timeout_s: float = 5.0) -> bool:
        """Block until the worker has committed everything published so far; False on time-out."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.processor.consumer.lag() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True


class Intake:
    """Publishes accepted events and catalogue changes; awaits the in-process worker when there is one."""

    def __init__(self, sender: Sender, topics: Topics, embedded: EmbeddedStream | None = None) -> None:
        self.sender = sender
        self.topics = topics
        self.embedded = embedded

    async def events(self, fresh: pd.DataFrame) -> Literal["sent", "spooled"]:
        if fresh.empty:
            return "sent"
        outcome = await asyncio.to_thread(self.sender.publish, self.topics.events, encode_events(fresh))
        await self._settle()
        return outcome

    async def change(
        self, kind: Literal["item", "user"], record: dict[str, Any], preferences: dict[str, Any] | None = None
    ) -> Literal["sent", "spooled"]:
        message = encode_catalog(kind, record, preferences)
        outcome = await asyncio.to_thread(self.sender.publish, self.topics.catalog, [message])
        await self._settle()
        return outcome

    async def _settle(self) -> None:
        if self.embedded is not None and not await asyncio.to_thread(self.embedded.wait):
            logger.warning("the in-process stream worker did not catch up within its wait")

    @property
    def applied_on_answer(self) -> bool:
        """True when a change is in the store by the time the request is answered."""
        return self.embedded is not None
