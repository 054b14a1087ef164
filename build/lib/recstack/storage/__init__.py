"""Where records live: the operational store (SQL), the lakehouse (Parquet) and, later, caches."""

from recstack.storage.store import IngestRun, Store, open_store

__all__ = ["IngestRun", "Store", "open_store"]
