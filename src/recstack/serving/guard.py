"""The one check every guarded request passes, FastAPI route or fast path alike: who is calling (the key
ring), may they (the route's scope), and may they now (their token bucket).

A request without a valid key draws from its client address's bucket before the 401, so guessing keys
costs the guesser tokens (and the store lookups it forces stay bounded).
"""

from __future__ import annotations

from collections.abc import Mapping

from recstack.errors import Forbidden, RateLimited, Unauthenticated
from recstack.serving.auth import ANONYMOUS_ADMIN, Caller, KeyRing, Scope, token_from_headers
from recstack.serving.limits import RateLimiter

__all__ = ["Guard"]


class Guard:
    """`admit(headers, client, scope)` returns the Caller or raises 401, 403 or 429."""

    def __init__(self, keyring: KeyRing | None, limiter: RateLimiter | None) -> None:
        self.keyring = keyring
        self.limiter = limiter

    def admit(self, headers: Mapping[str, str], client: str | None, scope: Scope) -> Caller:
        if self.keyring is None:
            caller, bucket = ANONYMOUS_ADMIN, f"ip:{client}"
        else:
            token = token_from_headers(headers)
            found = self.keyring.authenticate(token) if token else None
            if found is None:
                self._limit(f"ip:{client}")
                raise Unauthenticated(
                    "a valid API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
                    if token is None else "the API key is unknown or revoked"
                )
            caller, bucket = found, f"key:{found.key_id}"
        if caller.scope < scope:
            raise Forbidden(f"this key's scope is {caller.scope.label}; this route needs {scope.label}")
        self._limit(bucket)
        return caller

    def _limit(self, bucket: str) -> None:
        if self.limiter is None:
            return
        decision = self.limiter.take(bucket)
        if not decision.allowed:
            raise RateLimited(decision.retry_after_s)
