"""The `Store` contract: one behavioural suite for every store backend. A backend's suite subclasses
`StoreContract` and provides a `store` fixture (a migrated, empty store), e.g. parametrised over URLs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recstack.errors import InvalidRecord
from recstack.schema import LOCATION, validate_interactions, validate_items, validate_users
from recstack.storage import IngestRun, Store
from recstack.storage.lake import Lake

NOW = 1_790_000_000_000


def interactions(n: int, start: int = 0) -> pd.DataFrame:
    raw = pd.DataFrame(
        {
            "event_id": [f"e{i:05d}" for i in range(start, start + n)],
            "user_id": [f"u{i % 7}" for i in range(start, start + n)],
            "item_id": [f"i{i % 11}" for i in range(start, start + n)],
            "event_type": "watch",
            "value": [float(i) for i in range(start, start + n)],
            "timestamp": [1_700_000_000_000 + i for i in range(start, start + n)],
        }
    )
    return validate_interactions(raw, now_ms=NOW).accepted


class StoreContract:
    def test_schema_is_at_the_newest_revision(self, store: Store) -> None:
        assert store.revision() == "0004"  # type: ignore[attr-defined]
        store.migrate()  # idempotent
        assert store.counts() == {"users": 0, "items": 0, "interactions": 0, "quarantined": 0, "preferences": 0}


    def test_api_keys_are_found_by_hash_listed_and_revoked(self, store: Store) -> None:
        first = store.add_api_key("k1", "ci", "read", "a" * 64)
        store.add_api_key("k2", "ops", "admin", "b" * 64)
        assert store.api_key_by_hash("a" * 64) == first
        assert store.api_key_by_hash("c" * 64) is None
        assert [k.key_id for k in store.api_keys()] == ["k1", "k2"]
        assert store.revoke_api_key("k1") is True
        assert store.revoke_api_key("k1") is False
        assert store.revoke_api_key("nope") is False
        revoked = store.api_key_by_hash("a" * 64)
        assert revoked is not None and revoked.revoked_at is not None
        with pytest.raises(InvalidRecord, match="key_id"):
            store.add_api_key("k2", "again", "read", "d" * 64)

    def test_the_same_event_id_is_stored_once(self, store: Store) -> None:
        first = store.write_interactions(interactions(50))
        again = store.write_interactions(interactions(60))
        assert (first.inserted, first.existing) == (50, 0)
        assert (again.inserted, again.existing) == (10, 50)
        assert store.counts()["interactions"] == 60


    def test_repeated_ids_within_one_write_are_stored_once(self, store: Store) -> None:
        rows = interactions(5)
        doubled = pd.concat([rows, rows.iloc[:2]], ignore_index=True)
        result = store.write_interactions(doubled)
        assert result.inserted == 5
        assert store.counts()["interactions"] == 5


    def test_interactions_round_trip_in_bounded_chunks(self, store: Store) -> None:
        written = interactions(25)
        written.loc[3, "value"] = float("nan")
        store.write_interactions(written)
        chunks = list(store.iter_interactions(chunk_size=10))
        assert [len(c) for c in chunks] == [10, 10, 5]
        read = pd.concat(chunks).sort_values("event_id").reset_index(drop=True)
        expected = written.drop(columns=[LOCATION], errors="ignore").sort_values("event_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(read, expected, check_dtype=False)


    def test_items_upsert_and_documents_round_trip(self, store: Store) -> None:
        items = validate_items(
            pd.DataFrame({"item_id": ["v1", "v2"], "title": ["Cats", "Dogs"], "tags": ["a|b", ""],
                          "duration_s": ["30", "60"], "studio": ["x", "y"]}), now_ms=NOW
        ).accepted
        assert store.upsert_items(items).inserted == 2
        changed = items.assign(title=["Cats 2", "Dogs"])
        result = store.upsert_items(changed)
        assert (result.inserted, result.existing) == (0, 2)
        stored = store.read_items().set_index("item_id")
        assert stored.loc["v1", "title"] == "Cats 2"
        assert stored.loc["v1", "tags"] == ["a", "b"]
        assert stored.loc["v2", "attributes"] == {"studio": "y"}
        assert bool(stored.loc["v1", "available"]) is True
        partial = pd.DataFrame({"item_id": ["v1"], "title": [None], "duration_s": [45]})
        store.upsert_items(partial)
        stored = store.read_items().set_index("item_id")
        assert stored.loc["v1", "title"] == "Cats 2", "a missing value in an update must not erase the stored one"
        assert stored.loc["v1", "duration_s"] == 45


    def test_users_ensure_ids_and_known_ids(self, store: Store) -> None:
        users = validate_users(pd.DataFrame({"user_id": ["a"], "country": ["NZ"]}), now_ms=NOW).accepted
        store.upsert_users(users)
        assert store.ensure_ids("users", ["a", "b", "b", "c"]) == 2
        assert store.known_ids("users") == {"a", "b", "c"}
        assert store.read_users().set_index("user_id").loc["a", "attributes"] == {"country": "NZ"}


    def test_preference_documents(self, store: Store) -> None:
        assert store.get_preferences("u1") is None
        store.put_preferences("u1", {"categories": ["music", "cats"], "autoplay": False, "nested": {"x": 1.5}})
        store.put_preferences("u1", {"categories": ["news"]})
        assert store.get_preferences("u1") == {"categories": ["news"]}
        assert store.counts()["preferences"] == 1
        with pytest.raises(TypeError):
            store.put_preferences("u2", {"bad": object()})


    def test_quarantine_and_run_log(self, store: Store) -> None:
        run = IngestRun(run_id="r1", kind="interactions", source="f.csv", started_at=1)
        store.save_run(run)
        rejected = pd.DataFrame({"location": ["line 3", "line 9"], "reason": ["user_id is missing", "bad"],
                                 "record": ['{"user_id": ""}', "x,y"]})
        store.quarantine("r1", "interactions", "f.csv", rejected)
        run.add(read=10, accepted=8, rejected=2)
        run.finished_at = 2
        store.save_run(run)
        q = store.list_quarantine(run_id="r1")
        assert q[["location", "reason"]].values.tolist() == [["line 3", "user_id is missing"], ["line 9", "bad"]]
        runs = store.list_runs()
        assert runs.loc[0, ["read", "accepted", "rejected", "finished_at"]].tolist() == [10, 8, 2, 2]
        assert store.clear_quarantine("r1") == 2
        assert store.counts()["quarantined"] == 0


    def test_snapshot_of_a_long_history_partitions_by_day(self, store: Store, tmp_path: Path) -> None:
        days = 1500
        raw = pd.DataFrame(
            {
                "event_id": [f"d{i}" for i in range(days)],
                "user_id": [f"u{i % 5}" for i in range(days)],
                "item_id": [f"i{i % 9}" for i in range(days)],
                "event_type": "watch",
                "value": 1.0,
                "timestamp": [1_500_000_000_000 + i * 86_400_000 for i in range(days)],
            }
        )
        store.write_interactions(validate_interactions(raw, now_ms=NOW).accepted)
        lake = Lake(str(tmp_path / "lake"))
        snap = lake.write_snapshot(store)
        assert snap.interactions == days
        read = lake.read_interactions(snap.snapshot_id)
        assert sorted(read["event_id"]) == sorted(raw["event_id"])
        assert lake.query("select count(distinct date) as n from interactions", snap.snapshot_id)["n"][0] == days
