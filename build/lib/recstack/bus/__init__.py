"""The event bus: one narrow protocol (`Bus`), an in-process log (`memory://`) and Kafka (`kafka://…`).

`open_bus(url)` picks the implementation by scheme; `events` holds the versioned message formats and
`outbox` the durable local spool producers use while the broker is unreachable.
"""

from __future__ import annotations

from typing import Any

from recstack.backends import backend_class
from recstack.bus.base import Bus, Consumer, Message, Topics

__all__ = ["Bus", "Consumer", "Message", "Topics", "open_bus"]


def open_bus(url: str, **options: Any) -> Bus:
    """The bus behind `url`: `memory://[NAME][?partitions=N]` or `kafka://host:port[,host:port…]`."""
    bus: Bus = backend_class("bus", url)(url, **options)
    return bus
