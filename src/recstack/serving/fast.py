"""The recommendation route's common case without FastAPI's per-request parameter machinery.

FastAPI's dependency solving costs about as much as the whole retrieve-filter-rank path, so a request
whose parameters are plainly valid (k a small integer, category and exclude plain strings, nothing
repeated that must not be) is answered here, after the same guard as every route (key, scope, rate
limit); anything else goes to the declared FastAPI route, which stays the one in the OpenAPI schema and
gives the same 422s.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from recstack.errors import RecstackError
from recstack.schema import MAX_ID_LENGTH
from recstack.serving.auth import Scope as KeyScope
from recstack.serving.guard import Guard
from recstack.serving.handlers import error_response
from recstack.serving.recommender_service import RecommendationService

__all__ = ["add_fast_recommendations"]

PATH = "/v1/users/{user_id}/recommendations"


class _FastRecommendations:
    _KNOWN = frozenset({"k", "category", "exclude"})

    def __init__(self, route: APIRoute, max_k: int, max_id_length: int) -> None:
        self.route = route
        self.max_k = max_k
        self.max_id_length = max_id_length

    def _parse(self, scope: Scope) -> tuple[str, int, str | None, list[str]] | None:
        user_id = scope["path_params"].get("user_id", "")
        if not 0 < len(user_id) <= self.max_id_length or "\x00" in user_id:
            return None
        k, category = 10, None
        exclude: list[str] = []
        seen: set[str] = set()
        values = 0
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if name not in self._KNOWN or (name in seen and name != "exclude"):
                return None
            seen.add(name)
            if name == "k":
                if not (value.isascii() and value.isdigit() and 1 <= int(value) <= self.max_k):
                    return None
                k = int(value)
            elif name == "category":
                if not 0 < len(value) <= MAX_ID_LENGTH or "\x00" in value:
                    return None
                category = value
            else:
                values += 1
                if values > 1000:
                    return None
                exclude.extend(part for part in value.split(",") if part)
        return user_id, k, category, exclude

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parsed = self._parse(scope)
        if parsed is None:
            scope["route"], scope["endpoint"] = self.route, self.route.endpoint
            await self.route.handle(scope, receive, send)
            return
        state = scope["app"].state
        guard: Guard = state.guard
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"] if name in (b"authorization", b"x-api-key")
        }
        client = scope.get("client")
        try:
            guard.admit(headers, client[0] if client else None, KeyScope.READ)
        except RecstackError as exc:
            await error_response(exc)(scope, receive, send)
            return
        service: RecommendationService = state.service
        answer = service.recommend(*parsed)
        # What `Response(body, media_type="application/json", headers=...)` sends, without building one.
        out = [
            (b"content-length", str(len(answer.body)).encode()),
            (b"content-type", b"application/json"),
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.items()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": answer.body})


class _FastRoute(Route):
    """A route that, like FastAPI's, leaves itself in the scope (the metrics label by its path template)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def add_fast_recommendations(app: FastAPI, declared_in: APIRouter, max_k: int, max_id_length: int) -> None:
    """Put the fast route in front of every other route; `declared_in` holds the declared one."""
    declared = next(r for r in declared_in.routes if isinstance(r, APIRoute) and r.path == PATH)
    endpoint = _FastRecommendations(declared, max_k, max_id_length)
    fast = _FastRoute(declared.path, endpoint, methods=["GET"], include_in_schema=False)
    fast.methods = {"GET"}  # as declared: no implicit HEAD
    app.router.routes.insert(0, fast)
