"""Keys, scopes, the key ring's revocation lag and the token bucket, on a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recstack.errors import Forbidden, InvalidRecord, RateLimited, Unauthenticated
from recstack.serving.auth import ANONYMOUS_ADMIN, KeyRing, Scope, hash_key, issue_key, token_from_headers
from recstack.serving.guard import Guard
from recstack.serving.limits import MemoryRateLimiter
from recstack.storage import Store, open_store
from recstack.testing.clock import ManualClock


@pytest.fixture
def keystore(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'keys.db'}")
    store.migrate()
    yield store
    store.close()


def test_scopes_include_the_ones_before_them() -> None:
    assert Scope.READ < Scope.WRITE < Scope.ADMIN
    assert Scope.parse(" Write ") is Scope.WRITE
    with pytest.raises(InvalidRecord, match="scope"):
        Scope.parse("root")


def test_a_key_is_stored_only_as_its_hash(keystore: Store) -> None:
    issued = issue_key(keystore, Scope.WRITE, "ci")
    assert issued.token.startswith(f"rk_{issued.record.key_id}_")
    (stored,) = keystore.api_keys()
    assert stored.key_hash == hash_key(issued.token) and issued.token not in repr(stored)
    assert (stored.name, stored.scope, stored.revoked_at) == ("ci", "write", None)


def test_tokens_come_from_bearer_or_x_api_key() -> None:
    assert token_from_headers({"authorization": "Bearer rk_a_b"}) == "rk_a_b"
    assert token_from_headers({"authorization": "bearer   rk_a_b "}) == "rk_a_b"
    assert token_from_headers({"x-api-key": "rk_c_d"}) == "rk_c_d"
    assert token_from_headers({"authorization": "Basic dXNlcg=="}) is None
    assert token_from_headers({"authorization": "Bearer "}) is None
    assert token_from_headers({}) is None


def test_a_revoked_key_stops_working_within_the_ttl(keystore: Store) -> None:
    clock = ManualClock()
    ring = KeyRing(keystore, ttl_s=5.0, clock=clock)
    issued = issue_key(keystore, Scope.READ, "web")
    caller = ring.authenticate(issued.token)
    assert caller is not None and (caller.key_id, caller.scope) == (issued.record.key_id, Scope.READ)
    keystore.revoke_api_key(issued.record.key_id)
    assert ring.authenticate(issued.token) == caller, "trusted from the cache until the TTL passes"
    clock.advance(5.01)
    assert ring.authenticate(issued.token) is None


def test_unknown_malformed_and_oversized_tokens_are_refused(keystore: Store) -> None:
    ring = KeyRing(keystore, clock=ManualClock())
    issued = issue_key(keystore, Scope.READ)
    assert ring.authenticate(issued.token + "x") is None
    assert ring.authenticate("not-a-key") is None
    assert ring.authenticate("rk_" + "a" * 500) is None
    assert ring.authenticate("rk_\udcff") is None


def test_the_key_ring_cache_stays_bounded(keystore: Store) -> None:
    ring = KeyRing(keystore, max_entries=10, clock=ManualClock())
    for i in range(50):
        assert ring.authenticate(f"rk_guess_{i}") is None
    assert len(ring._seen) <= 10


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = ManualClock()
    limiter = MemoryRateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.take("k").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("k")
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.5)
    assert limiter.take("other").allowed, "each caller has its own bucket"
    clock.advance(0.5)
    assert limiter.take("k").allowed and not limiter.take("k").allowed
    clock.advance(100)
    assert [limiter.take("k").allowed for _ in range(4)] == [True, True, True, False], "refills to the burst only"


def test_the_guard_checks_key_scope_and_bucket(keystore: Store) -> None:
    clock = ManualClock()
    guard = Guard(KeyRing(keystore, clock=clock), MemoryRateLimiter(1.0, 2, clock=clock))
    reader = issue_key(keystore, Scope.READ).token
    with pytest.raises(Unauthenticated) as missing:
        guard.admit({}, "10.0.0.1", Scope.READ)
    assert missing.value.status_code == 401
    assert missing.value.headers == {"WWW-Authenticate": 'Bearer realm="recstack"'}
    assert guard.admit({"x-api-key": reader}, "10.0.0.1", Scope.READ).scope is Scope.READ
    with pytest.raises(Forbidden, match="needs write"):
        guard.admit({"x-api-key": reader}, "10.0.0.1", Scope.WRITE)
    guard.admit({"authorization": f"Bearer {reader}"}, "10.0.0.2", Scope.READ)  # the key's bucket, any address
    with pytest.raises(RateLimited) as limited:
        guard.admit({"x-api-key": reader}, "10.0.0.1", Scope.READ)
    assert limited.value.status_code == 429 and limited.value.headers == {"Retry-After": "1"}


def test_failed_attempts_draw_from_the_client_address_bucket(keystore: Store) -> None:
    clock = ManualClock()
    guard = Guard(KeyRing(keystore, clock=clock), MemoryRateLimiter(1.0, 2, clock=clock))
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            guard.admit({"x-api-key": "rk_guess_1"}, "10.0.0.9", Scope.READ)
    with pytest.raises(RateLimited):
        guard.admit({"x-api-key": "rk_guess_2"}, "10.0.0.9", Scope.READ)


def test_without_a_key_ring_every_caller_is_an_admin() -> None:
    assert Guard(None, None).admit({}, None, Scope.ADMIN) == ANONYMOUS_ADMIN
