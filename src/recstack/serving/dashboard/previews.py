"""Recommendations as the dashboard shows them: the champion's, or another registered version's, for one
user, without counting as served.

A preview is a `RecommendationService` of its own that shares the live one's store, cache, history reader,
online state and catalogue, but logs no impressions (a person looking at a user must not move the feedback
loop's positive rate) and counts into metrics of its own. The champion's preview uses the very model the
API serves; another version is loaded from the model source and prepared once, and the last few are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import orjson

from recstack.errors import NotFound
from recstack.serving.metrics import Metrics
from recstack.serving.recommender_service import RecommendationService, ServingModel
from recstack.serving.reload import Reloader

__all__ = ["Previews"]

KEEP_VERSIONS = 2


class Previews:
    """Answers `recommend(user_id, k, version)` for the champion (version None) or a registered version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: OrderedDict[int, ServingModel] = OrderedDict()
        self._champion: RecommendationService | None = None

    @staticmethod
    def _service_like(live: RecommendationService) -> RecommendationService:
        preview = RecommendationService(
            live.store, live.cache, Metrics(), cache_ttl_s=live.cache_ttl_s, feedback=live.feedback,
            retrieval=live.retrieval, history_limit=live.reader.limit, plan_size=live.plan_size, online=live.online,
        )
        preview.reader, preview.history, preview.new_items = live.reader, live.history, live.new_items
        return preview

    def _for_champion(self, live: RecommendationService) -> RecommendationService:
        with self._lock:
            preview = self._champion
            if preview is None:
                preview = self._champion = self._service_like(live)
        if preview.model is not live.model:
            preview.set_model(live.model, live.plans)
        return preview

    def model(self, reloader: Reloader, version: int) -> ServingModel:
        """Version `version` prepared for serving (the champion's own object when it is the champion).
        `NotFound` without a model source or such a version. Slow the first time (load + index): call it
        off the event loop."""
        live = reloader.service.model
        if live is not None and live.version == version:
            return live
        with self._lock:
            kept = self._models.get(version)
            if kept is not None:
                self._models.move_to_end(version)
                return kept
        source = reloader.source
        if source is None:
            raise NotFound("no model registry: only the serving model can be shown")
        prepared = ServingModel.build(source.load(version), version, reloader.service.retrieval)
        with self._lock:
            self._models[version] = prepared
            while len(self._models) > KEEP_VERSIONS:
                self._models.popitem(last=False)
        return prepared

    def recommend(self, reloader: Reloader, user_id: str, k: int, version: int | None = None) -> dict[str, Any]:
        """The answer body of `GET /v1/users/{user_id}/recommendations?k=` as the champion (None) or
        `version` would give it now."""
        live = reloader.service
        if version is None:
            preview = self._for_champion(live)
        else:
            preview = self._service_like(live)
            preview.set_model(self.model(reloader, version))
        if live.catalog is not None:
            preview.set_catalog(live.catalog)
        body: dict[str, Any] = orjson.loads(preview.recommend(user_id, k, None, []).body)
        return body
