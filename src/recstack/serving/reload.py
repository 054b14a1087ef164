"""Hot reload: a background thread follows the registry's champion and the store's catalogue.

A new champion is loaded and prepared (Faiss index included) entirely in the background; only then is the
service's model reference replaced, in one assignment. Requests read that reference once when they start,
so none ever sees a half-built model, and the server never stops answering.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from recstack.models.base import Recommender
from recstack.serving.artefacts import Artefact, open_artefact, prepare, prepared
from recstack.serving.content import load_content
from recstack.serving.data import count_items, load_catalog, unavailable_items
from recstack.serving.recommender_service import RecommendationService, ServingModel

__all__ = ["ModelSource", "Reloader"]

logger = logging.getLogger(__name__)

# Catalogues larger than this start without trending scores and content index (read in the background).
DEFER_ABOVE_ITEMS = 20_000




class ModelSource(Protocol):
    """Where champions come from: `recstack.registry.Registry`, or anything with the same two methods."""

    def champion(self) -> Any:
        """The current champion (an object with an int `version`), or None."""

    def load(self, version: Any) -> Recommender[Any]: ...


class Reloader:
    """Polls `source.champion()` and the items marked unavailable every `interval_s`, and re-reads the whole
    catalogue (new items, categories, trending) every `catalog_interval_s`."""

    def __init__(
        self,
        service: RecommendationService,
        source: ModelSource | None,
        interval_s: float = 1.0,
        catalog_interval_s: float = 30.0,
    ) -> None:
        self.service = service
        self.source = source
        self.interval_s = interval_s
        self.catalog_interval_s = catalog_interval_s
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._catalog_at = 0.0
        self._catalog_epoch = 0
        # Serving artefacts are used when the source keeps them (`serving_dir`, as the registry does).
        self.use_artefacts = True

    def refresh_catalog(self) -> None:
        """Read the catalogue, its trending scores and the content index.

        The first read of a large catalogue (over `DEFER_ABOVE_ITEMS`) takes only the items: trending (a
        scan of the window's events) and the content index (a text model over every item) take seconds
        there, so the server becomes ready without them and the background thread reads them on its first
        tick, a second later. Until then unknown users get the catalogue order and no new-item mixing."""
        store = self.service.store
        if self.service.catalog is None and count_items(store) > DEFER_ABOVE_ITEMS:
            self.service.set_catalog(load_catalog(store, trending=False))
            self._catalog_at = float("-inf")
            return
        catalog = load_catalog(store)
        self.service.set_catalog(catalog)
        content = self.service.new_items.content
        # Refitted only when items arrived that this process has no vector for (posted to another worker).
        if content is None or any(str(i) not in content.position for i in catalog.ids.tolist()):
            self.service.new_items.content = load_content(store)
        self._catalog_at = time.monotonic()

    def check(self) -> bool:
        """Swap in the champion if it changed; True when a swap happened. Errors are logged and kept in
        `last_error` (the current model keeps serving)."""
        if self.source is None:
            return False
        try:
            champion = self.source.champion()
            current = self.service.model
            if champion is None or (current is not None and current.version == champion.version):
                self.last_error = None
                return False
            started = time.perf_counter()
            model = self.source.load(champion)
            opened = self._open_artefact(champion, model)
            if opened is None:
                prepared = ServingModel.build(model, int(champion.version), self.service.retrieval)
        except Exception as exc:  # a broken registry or artifact must not stop the server
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.service.metrics.reloads.labels("failed").inc()
            logger.warning("champion reload failed; keeping the current model: %s", self.last_error)
            return False
        if opened is not None:
            prepared, plans = opened.model, opened.plans
        else:
            try:
                plans = self.service.prepare(prepared)
            except Exception as exc:  # without plans every request takes the live path: slower, same answers
                logger.warning("user plans not prepared; answering through the live path: %s: %s",
                               type(exc).__name__, exc)
                plans = None
        self.service.set_model(prepared, plans)
        self.last_error = None
        self.service.metrics.reloads.labels("swapped").inc()
        logger.info("serving champion %s v%s (prepared in %.2f s)", prepared.kind, prepared.version,
                    time.perf_counter() - started)
        return True

    def _open_artefact(self, champion: Any, model: Recommender[Any]) -> Artefact | None:
        """The champion's serving artefact, memory-mapped; prepared here first (once per host, under a lock,
        then uploaded) when no process made it yet. None when the source keeps no artefacts (the caller
        prepares in memory) or it cannot be opened."""
        locate = getattr(self.source, "serving_dir", None)
        if locate is None or not self.use_artefacts:
            return None
        service = self.service
        try:
            directory = locate(champion)
            if not prepared(directory):
                built = prepare(directory, model, int(champion.version), service.reader, service.catalog,
                                service.feedback, service.retrieval, service.plan_size)
                upload = getattr(self.source, "upload_serving", None)
                if built and upload is not None:
                    try:
                        upload(champion, directory)
                    except Exception as exc:  # other hosts prepare their own; this one serves
                        logger.warning("serving artefact not uploaded: %s: %s", type(exc).__name__, exc)
            return open_artefact(directory, model, int(champion.version), service.catalog, service.retrieval)
        except Exception as exc:  # a broken artefact: prepare in this process instead
            logger.warning("serving artefact not usable; preparing in memory: %s: %s", type(exc).__name__, exc)
            return None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recstack-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()
            try:
                self.service.rank_novel()
                while self.service.refresh_plans() and not self._stop.is_set():
                    pass
            except Exception as exc:  # the online state may be briefly unreachable; requests go live
                logger.warning("plan refresh failed: %s: %s", type(exc).__name__, exc)
            try:
                online = self.service.online
                epoch = online.catalog_epoch() if online is not None else 0
                if epoch != self._catalog_epoch or time.monotonic() - self._catalog_at >= self.catalog_interval_s:
                    self._catalog_epoch = epoch
                    self.refresh_catalog()
                elif self.service.catalog is not None:
                    catalog = self.service.catalog
                    updated = catalog.with_unavailable(unavailable_items(self.service.store))
                    if updated is not catalog and self.service.catalog is catalog:
                        self.service.set_catalog(updated)
            except Exception as exc:  # the store may be briefly unreachable; the old catalogue serves
                logger.warning("catalogue refresh failed: %s", exc)
