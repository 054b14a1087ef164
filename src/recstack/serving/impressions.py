"""The impression log: which items each answer showed, by which model version, written off the request path.

The feedback loop's online rule compares champions by what users did with the items they were shown, so
every answer served (cache hits too) is recorded. Recording is one deque append of the response bytes the
request already has; a background thread hands each batch of answers, as they are, to the store, which
keeps each as one row (its JSON checked and its items counted by the database, one transaction). The writer shares
the GIL with the requests, so it does next to no Python work per answer, and nothing else: the ranking
features of what was shown are computed from the logged answers by the loop
(`recstack.jobs.impression_features`), not here. The buffer is bounded: when the store falls behind, new
answers are counted in `dropped` rather than held in memory, and a batch the store refuses is dropped with
a warning (impressions are a measurement, never worth an outage).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import Final

import orjson

from recstack.storage import Store
from recstack.storage.impressions import ServedAnswer

__all__ = ["ImpressionLog"]

logger = logging.getLogger(__name__)

# served_at, user_id, answer body, model version.
_Entry = tuple[int, str, bytes, int | None]
_JOIN_S: Final = 10.0


class ImpressionLog:
    """Buffers served answers and writes their items to `store.write_answer_impressions` in batches.

    `record` is safe from any thread and never blocks on I/O. The writer wakes every `flush_interval_s`, or
    as soon as `batch_size` answers wait; at most `max_buffered` answers wait at once. `stop` writes what is
    left before returning. `answers` counts the answers written (one without items too), `written` their items
(impressions); a body that is not an answer's JSON is skipped.
    """

    def __init__(
        self, store: Store, *, batch_size: int = 500, flush_interval_s: float = 1.0, max_buffered: int = 50_000
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered
        self.answers = 0
        self.written = 0
        self.dropped = 0
        self._queue: deque[_Entry] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        # Request ids: one random prefix per log and a counter, unique without a uuid4 per answer.
        self._prefix = uuid.uuid4().hex[:16]
        self._next_id = 0

    def record(self, user_id: str, body: bytes, model_version: int | None) -> None:
        """Note that `body` (a recommendation answer's JSON, with its `items`) was served to `user_id` now."""
        queued = len(self._queue)
        if queued >= self.max_buffered:
            self.dropped += 1
            return
        self._queue.append((time.time_ns() // 1_000_000, user_id, body, model_version))
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
        answers: list[ServedAnswer] = []
        for served_at, user_id, body, version in entries:
            answers.append((served_at, user_id, version, f"{self._prefix}{self._next_id:016x}", body))
            self._next_id += 1
        try:
            written = self.store.write_answer_impressions(answers)
            taken = len(answers)
        except Exception:
            # Some body is not JSON: read them here and write the good ones.
            written, taken = self._write_checked(answers)
        self.answers += taken
        self.written += written
        return written

    def _write_checked(self, answers: list[ServedAnswer]) -> tuple[int, int]:
        good: list[ServedAnswer] = []
        for answer in answers:
            try:
                items = orjson.loads(answer[4]).get("items", [])
                if not all(isinstance(item, dict) and "item_id" in item for item in items):
                    raise KeyError("item_id")
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
                logger.debug("impression log: a body that is not an answer was skipped")
                continue
            good.append(answer)
        try:
            return self.store.write_answer_impressions(good), len(good)
        except Exception as exc:
            self.dropped += len(answers)
            logger.warning("impression log: dropped %d answers the store did not take: %s", len(answers), exc)
            return 0, 0
