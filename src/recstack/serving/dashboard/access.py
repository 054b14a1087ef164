"""Who is looking at the dashboard, and what they may do there.

With authentication on (`app.state.keyring` set), a browser signs in once with an API key: the key goes
into a session cookie encrypted and signed with the process's session secret (Fernet: AES-CBC + HMAC,
with an expiry), marked `HttpOnly` and `SameSite=Strict` (`Secure` over HTTPS). Every request decrypts it
and authenticates the key again through the app's guard, so a revoked key stops working within the key
ring's TTL and the rate limits apply as to any API call. A request carrying the key itself
(`Authorization: Bearer …` or `X-API-Key`) is accepted too, for scripts and probes. Without a key ring
every caller is an admin.

Every form carries a CSRF token: the session's own random token (kept inside the encrypted cookie) or,
without a session, an HMAC of the secret, so a page of another site can never produce one. A request
authenticated by a header needs none (no browser adds such a header across sites).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

from recstack.errors import Forbidden, Unauthenticated
from recstack.serving.auth import ANONYMOUS_ADMIN, Caller, Scope, token_from_headers
from recstack.serving.deps import client_of, guard_of

__all__ = ["COOKIE", "Sessions", "Viewer"]

COOKIE = "recstack_session"
SESSION_S = 8 * 3600


@dataclass(frozen=True)
class Viewer:
    """The caller of a dashboard request, how they came (`session`, `header`, `open`), and their CSRF token
    (empty for header callers)."""

    caller: Caller
    via: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.caller.scope >= Scope.ADMIN

    @property
    def can_write(self) -> bool:
        return self.caller.scope >= Scope.WRITE


class Sessions:
    """Issues and reads dashboard session cookies with one secret (several workers need the same one:
    `RECSTACK_SESSION_SECRET`; without it each process makes its own, and sessions end at restart)."""

    def __init__(self, secret: str = "") -> None:
        raw = secret.encode() if secret else secrets.token_bytes(32)
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"recstack-session|" + raw).digest()))
        self._mac = hashlib.sha256(b"recstack-csrf|" + raw).digest()

    # ---- tokens -----------------------------------------------------------------------------------

    def open_csrf(self, purpose: str = "open") -> str:
        """The CSRF token of forms shown without a session (the sign-in form; everything without auth)."""
        return hmac.new(self._mac, purpose.encode(), hashlib.sha256).hexdigest()

    def check_open_csrf(self, sent: str | None, purpose: str = "open") -> None:
        if not (sent and hmac.compare_digest(sent, self.open_csrf(purpose))):
            raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")

    def issue(self, response: Response, token: str, secure: bool) -> None:
        payload = json.dumps({"k": token, "c": secrets.token_urlsafe(24)}).encode()
        response.set_cookie(
            COOKIE, self._fernet.encrypt(payload).decode(), max_age=SESSION_S, path="/dashboard", httponly=True,
            samesite="strict", secure=secure,
        )

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")

    def _read(self, request: Request) -> tuple[str, str] | None:
        raw = request.cookies.get(COOKIE)
        if not raw or len(raw) > 4096:
            return None
        try:
            body = json.loads(self._fernet.decrypt(raw.encode(), ttl=SESSION_S))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(body, dict) or not isinstance(body.get("k"), str) or not isinstance(body.get("c"), str):
            return None
        return body["k"], body["c"]

    # ---- callers ----------------------------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer | None:
        """The request's viewer; None when auth is on and neither a session nor a key header comes with it.
        Raises `Unauthenticated` for a bad key header, `RateLimited` over the key's rate."""
        if getattr(request.app.state, "keyring", None) is None:
            return Viewer(ANONYMOUS_ADMIN, "open", self.open_csrf())
        guard = guard_of(request)
        if token_from_headers(request.headers) is not None:
            return Viewer(guard.admit(request.headers, client_of(request), Scope.READ), "header", "")
        session = self._read(request)
        if session is None:
            return None
        token, csrf = session
        try:
            caller = guard.admit({"authorization": f"Bearer {token}"}, client_of(request), Scope.READ)
        except Unauthenticated:
            return None
        return Viewer(caller, "session", csrf)

    def authenticate(self, request: Request, token: str) -> Caller:
        """The caller of `token` (the sign-in form); `Unauthenticated` when the key is not valid."""
        return guard_of(request).admit({"authorization": f"Bearer {token}"}, client_of(request), Scope.READ)


def check_form(viewer: Viewer, sent: str | None, needs: Scope) -> None:
    """Refuse a form submission without the viewer's CSRF token, or from a scope below `needs`."""
    if viewer.via != "header" and not (sent and hmac.compare_digest(sent, viewer.csrf)):
        raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")
    if viewer.caller.scope < needs:
        raise Forbidden(f"this key's scope is {viewer.caller.scope.label}; this action needs {needs.label}")
