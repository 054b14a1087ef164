"""The one place URL schemes map to backends (as Gorse's `storage/scheme.go` and Feast's short names do).

Each concern (store, cache, bus, online state) maps a scheme to a dotted `module:Class` path, imported only
when that scheme is opened, so a driver that is an optional extra is needed only by whoever uses it. A
third-party backend registers itself with `register(concern, scheme, "package.module:Class")`.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal
from urllib.parse import urlsplit

from recstack.errors import ConfigurationError

__all__ = ["BACKENDS", "Concern", "backend_class", "register", "scheme_of"]

Concern = Literal["store", "cache", "bus", "online"]

BACKENDS: dict[Concern, dict[str, str]] = {
    "store": {
        "sqlite": "recstack.storage.sql:SqlStore",
        "postgresql": "recstack.storage.sql:SqlStore",
        "postgres": "recstack.storage.sql:SqlStore",
    },
    "cache": {
        "memory": "recstack.storage.cache:MemoryCache",
        "redis": "recstack.storage.cache:RedisCache",
        "rediss": "recstack.storage.cache:RedisCache",
        "unix": "recstack.storage.cache:RedisCache",
    },
    "bus": {
        "memory": "recstack.bus.memory:MemoryBus",
        "kafka": "recstack.bus.kafka:KafkaBus",
    },
    "online": {
        "memory": "recstack.processing.online:MemoryOnlineState",
        "sql": "recstack.processing.online_sql:SqlOnlineState",
        "redis": "recstack.processing.online_redis:RedisOnlineState",
        "rediss": "recstack.processing.online_redis:RedisOnlineState",
        "unix": "recstack.processing.online_redis:RedisOnlineState",
    },
}

_EXAMPLES: dict[Concern, str] = {
    "store": "sqlite:///path.db or postgresql://user@host/db",
    "cache": "memory:// or redis://host:port/db",
    "bus": "memory:// or kafka://host:port[,host:port…]",
    "online": "sql (the store), memory:// or redis://host:port/db",
}


def scheme_of(url: str) -> str:
    """`postgresql+psycopg://…` → `postgresql`; a bare word (`sql`) is its own scheme."""
    if "://" not in url and ":" not in url:
        return url
    return urlsplit(url).scheme.split("+", 1)[0]


def register(concern: Concern, scheme: str, path: str) -> None:
    BACKENDS[concern][scheme] = path


def backend_class(concern: Concern, url: str) -> Any:
    """The class that serves `url` for `concern`; a clear error names the schemes that exist."""
    scheme = scheme_of(url)
    path = BACKENDS[concern].get(scheme)
    if path is None:
        raise ConfigurationError(f"no {concern} backend for URL {url!r}: use {_EXAMPLES[concern]}")
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
