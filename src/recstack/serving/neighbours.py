"""Every item's nearest items by the champion's own `similar_items`, for a champion without embeddings.

Such a champion's feedback signals shift the scores of each signal item's neighbours (`feedback`). Asked
per request, that was a dense similarity row and a pandas frame per signal (≈ 7 ms each, up to five per
request on a 10,000-item `auto`); computed for every item at once when the champion is prepared (and kept
in its serving artefact), it is a row lookup, and the plans made in batch shift scores by the very rows the
live path uses, so the two rank alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from recstack.errors import ConfigurationError
from recstack.models.base import Recommender

__all__ = ["DEPTH", "MAX_SIGNALS", "ItemNeighbours"]

logger = logging.getLogger(__name__)

# Neighbours kept per item, and signals of a request that shift scores.
DEPTH: Final = 50
MAX_SIGNALS: Final = 5
_CHUNK: Final = 2048


@dataclass(frozen=True)
class ItemNeighbours:
    """Per model item index, its `DEPTH` nearest items (model indices, best first, -1 padded) and their
    similarities (0 where padded)."""

    items: np.ndarray
    scores: np.ndarray

    @classmethod
    def of_model(cls, model: Recommender[Any], depth: int = DEPTH) -> ItemNeighbours | None:
        """`model.similar_items(i, k=depth)` of every item, in chunks; None when the model has none."""
        started = time.perf_counter()
        vocab = model.items
        n_items = len(vocab)
        items = np.full((n_items, depth), -1, dtype=np.int32)
        scores = np.zeros((n_items, depth), dtype=np.float32)
        for start in range(0, n_items, _CHUNK):
            try:
                frame = model.similar_items(vocab.ids[start : start + _CHUNK], k=depth)
            except ConfigurationError:
                return None
            if frame.empty:
                continue
            rows = vocab.index(frame["item_id"].to_numpy(dtype=object))
            cols = frame["rank"].to_numpy(dtype=np.int64) - 1
            items[rows, cols] = vocab.index(frame["similar_item_id"].to_numpy(dtype=object))
            scores[rows, cols] = frame["score"].to_numpy(np.float32)
        logger.info("item neighbours: %d items × %d in %.1f s", n_items, depth, time.perf_counter() - started)
        return cls(items, scores)

    def shift(self, scores: np.ndarray, signals: Sequence[tuple[int, float]], strength: float) -> None:
        """Move one user's dense `scores` (in place) by the first `MAX_SIGNALS` (item index, weight) signals:
        each neighbour by weight × similarity × `strength` × three times the scores' spread."""
        if not len(signals):
            return
        spread = float(scores.std()) or 1.0
        for item_idx, weight in signals[:MAX_SIGNALS]:
            row = self.items[item_idx]
            n = int(np.count_nonzero(row >= 0))
            if n:
                scores[row[:n]] += strength * weight * spread * 3.0 * self.scores[item_idx, :n]

    def nearest(self, item_idx: int, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The `k` best allowed neighbours of `item_idx` (indices, similarities), or None when fewer than `k`
        of the kept ones are allowed (the caller asks the model for a deeper list)."""
        row = self.items[item_idx]
        n = int(np.count_nonzero(row >= 0))
        ids, sims = row[:n], self.scores[item_idx, :n]
        keep = allowed[ids]
        if int(np.count_nonzero(keep)) < k:
            return None
        return ids[keep][:k], sims[keep][:k]
