"""One APIRouter per resource, as the FastAPI full-stack template lays them out; `serving.app` includes
them. Each route names its scope (`ReadCaller`, `WriteCaller`, `AdminCaller`) and the service it uses."""

from __future__ import annotations

from recstack.serving.routes import events, health, items, keys, metrics, models, users

__all__ = ["events", "health", "items", "keys", "metrics", "models", "users"]
