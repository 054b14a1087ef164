"""The impression log: which items each answer showed, by which model version, written off the request path.

The feedback loop's online rule compares champions by what users did with the items they were shown, so
every answer served (cache hits too) is recorded. Recording is one deque append of the response bytes the
request already has; a background thread parses them and writes batches to the store. The buffer is
bounded: when the store falls behind, new answers are counted in `dropped` rather than held in memory, and
a batch the store refuses is dropped with a warning (impressions are a measurement, never worth an outage).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import orjson
import pandas as pd

from recstack.storage import Store
from recstack.storage.impressions import IMPRESSION_COLUMNS

if TYPE_CHECKING:
    from recstack.storage.lake import Lake

__all__ = ["ImpressionLog"]

logger = logging.getLogger(__name__)

# served_at, user_id, answer body, model version, and the serving model when its features are logged.
_Entry = tuple[int, str, bytes, int | None, Any]
_JOIN_S: Final = 10.0


class ImpressionLog:
    """Buffers served answers and writes their items to `store.write_impressions` in batches.

    `record` is safe from any thread and never blocks on I/O. The writer wakes every `flush_interval_s`, or
    as soon as `batch_size` answers wait; at most `max_buffered` answers wait at once. `stop` writes what is
    left before returning.
    """

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        max_buffered: int = 50_000,
        lake: Lake | None = None,
    ) -> None:
        self.store = store
        self.lake = lake
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered
        self.written = 0
        self.dropped = 0
        self._queue: deque[_Entry] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()

    def record(self, user_id: str, body: bytes, model_version: int | None, model: Any = None) -> None:
        """Note that `body` (a recommendation answer's JSON, with its `items`) was served to `user_id` now.

        With a `lake` and the `ServingModel` that answered, the writer thread (never the request) also asks the
        model for the ranking features of the items shown and appends them to the lake."""
        queued = len(self._queue)
        if queued >= self.max_buffered:
            self.dropped += 1
            return
        self._queue.append((time.time_ns() // 1_000_000, user_id, body, model_version, model))
        if queued + 1 == self.batch_size:
            self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="recstack-impressions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer and write everything still buffered."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=_JOIN_S)
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write what is buffered now; returns the number of impressions (items) written."""
        with self._flush_lock:
            total = 0
            while self._queue:
                entries = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                total += self._write(entries)
            return total

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the writer thread must outlive any one bad batch
                logger.exception("impression log: flush failed")

    def _write(self, entries: list[_Entry]) -> int:
        frame = _frame(entries)
        if frame.empty:
            return 0
        if self.lake is not None:
            self._write_features(entries, frame)
        try:
            written = self.store.write_impressions(frame.drop(columns="entry"))
        except Exception as exc:
            self.dropped += len(entries)
            logger.warning("impression log: dropped %d answers the store did not take: %s", len(entries), exc)
            return 0
        self.written += written
        return written


    def _write_features(self, entries: list[_Entry], frame: pd.DataFrame) -> None:
        assert self.lake is not None
        parts = []
        for entry, rows in frame.groupby("entry", sort=False):
            _, user_id, _, _, model = entries[int(entry)]
            if model is None:
                continue
            uidx = model.user_pos.get(user_id, -1)
            item_idx = model.items.index(rows["item_id"].to_numpy(dtype=object))
            found = model.model.ranking_features(uidx, item_idx) if uidx >= 0 else None
            if found is None:
                continue
            names, matrix = found
            parts.append(
                rows.drop(columns="entry").assign(
                    feature_names=[names] * len(rows), features=[np.asarray(r, dtype=np.float32) for r in matrix]
                )
            )
        if parts:
            try:
                self.lake.write_impression_features(pd.concat(parts, ignore_index=True))
            except Exception as exc:
                logger.warning("impression log: features of %d answers not written to the lake: %s", len(parts), exc)


def _frame(entries: list[_Entry]) -> pd.DataFrame:
    rows: list[tuple[int, str, str, int, int | None, str, int]] = []
    for entry, (served_at, user_id, body, version, _) in enumerate(entries):
        try:
            items = orjson.loads(body).get("items", [])
        except (orjson.JSONDecodeError, AttributeError):
            logger.debug("impression log: an answer that is not a JSON object was skipped")
            continue
        request_id = uuid.uuid4().hex
        rows.extend(
            (served_at, user_id, str(item["item_id"]), position, version, request_id, entry)
            for position, item in enumerate(items, start=1)
        )
    return pd.DataFrame(rows, columns=[*IMPRESSION_COLUMNS, "entry"])
