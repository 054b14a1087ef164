"""Records onto the bus instead of into the store: backfills and replays (`recstack produce`).

Each batch takes the ingestion pipeline's checks (`check_batch`: mapping, rules, id policy); rejects go to
the quarantine as in `recstack ingest`, the good interactions are published keyed by `user_id` and
catalogue records as upserts. Events without an `event_id` get the deterministic one ingestion derives, so
producing the same file twice stores nothing twice: the stream processor recognises every event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

from recstack.bus.base import Topics
from recstack.bus.events import encode_catalog, encode_events
from recstack.ingestion.pipeline import IngestOptions, RawBatch, check_batch, id_policies, recorded_run
from recstack.schema import INTERACTION_COLUMNS, LOCATION
from recstack.storage import IngestRun, Store

__all__ = ["produce"]

Progress = Callable[[int], None]


class _Publish(Protocol):
    def publish(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> Literal["sent", "spooled"]: ...


def produce(
    store: Store,
    publisher: _Publish,
    batches: Iterable[RawBatch],
    source: str,
    options: IngestOptions,
    topics: Topics,
    progress: Progress | None = None,
) -> IngestRun:
    """Check and publish every batch; returns the run summary (`accepted` = published; saved in the run log).

    Under the `reject` policy the ids are checked against the store; under `create` the stream processor
    creates them when it stores the events.
    """
    policies = id_policies(store, options)
    with recorded_run(store, options.kind, f"produce {source}") as run:
        for batch in batches:
            checked = check_batch(batch, options, policies)
            store.quarantine(run.run_id, options.kind, run.source, checked.refused)
            accepted = checked.accepted.drop(columns=[LOCATION], errors="ignore")
            if not accepted.empty:
                if options.kind == "interactions":
                    publisher.publish(topics.events, encode_events(accepted.loc[:, list(INTERACTION_COLUMNS)]))
                else:
                    publisher.publish(topics.catalog, _changes(options.kind, accepted.to_dict("records")))
            run.add(read=checked.read, accepted=len(accepted), duplicates=checked.repeats,
                    rejected=len(checked.refused))
            if progress is not None:
                progress(checked.read)
    return run


def _changes(kind: str, records: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    one = "item" if kind == "items" else "user"
    out: list[tuple[bytes | None, bytes]] = []
    for record in records:
        key, value = encode_catalog(one, {k: v for k, v in record.items() if v is not None})
        out.append((key, value))
    return out
