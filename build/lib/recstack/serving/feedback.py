"""Real-time feedback: a user's newest events steer their next answer without retraining.

Every event marks its item as seen. Some events also say something about taste: a like, share, purchase,
a long watch or a high rating pull the items most similar to it up; a skip, a short watch (bounce) or a
low rating push them down. With item embeddings this moves the user's query vector toward (or away from)
the item's unit vector, so the effect reaches the whole catalogue through retrieval; without embeddings
the model's own `similar_items` neighbours get their scores shifted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recstack.serving.data import Catalog, History

__all__ = ["FeedbackConfig", "Signal", "adjust_query", "signals"]


@dataclass(frozen=True)
class FeedbackConfig:
    """`strength`: how far one positive signal moves the query, as a share of the query's norm;
    `decay`: each older signal counts this factor less than the next newer one; `max_signals` bounds work."""

    strength: float = 0.6
    decay: float = 0.8
    max_signals: int = 20
    long_watch_fraction: float = 0.5
    long_watch_s: float = 60.0
    bounce_s: float = 10.0
    like_rating: float = 4.0
    dislike_rating: float = 2.0


@dataclass(frozen=True)
class Signal:
    item_id: str
    weight: float  # > 0 pulls similar items up, < 0 pushes them down, already decayed by age


_POSITIVE = frozenset({"like", "share", "purchase"})
_TELLING = _POSITIVE | {"skip", "watch", "rating"}


def _polarity(event_type: str, value: float | None, duration_s: float, cfg: FeedbackConfig) -> float:
    if event_type in _POSITIVE:
        return 1.0
    if event_type == "skip":
        return -1.0
    if event_type == "watch":
        if value is None:
            return 1.0
        if not math.isnan(duration_s) and duration_s > 0:
            return 1.0 if value >= cfg.long_watch_fraction * duration_s else (-1.0 if value < cfg.bounce_s else 0.0)
        return 1.0 if value >= cfg.long_watch_s else (-1.0 if value < cfg.bounce_s else 0.0)
    if event_type == "rating" and value is not None:
        return 1.0 if value >= cfg.like_rating else (-1.0 if value <= cfg.dislike_rating else 0.0)
    return 0.0


def signals(history: History, catalog: Catalog, cfg: FeedbackConfig) -> list[Signal]:
    """Taste signals from the newest events (history is newest first); views and clicks carry none."""
    if not history.item_ids:
        return []
    lookup = catalog.lookup
    out: list[Signal] = []
    age = 0
    for item_id, event_type, value in zip(history.item_ids, history.event_types, history.values, strict=True):
        if event_type not in _TELLING:
            continue
        pos = lookup.get(item_id, -1)
        duration = float(catalog.duration_s[pos]) if pos >= 0 else math.nan
        polarity = _polarity(event_type, value, duration, cfg)
        if polarity != 0.0:
            out.append(Signal(item_id, polarity * cfg.decay**age))
            age += 1
            if len(out) >= cfg.max_signals:
                break
    return out


def adjust_query(
    query: np.ndarray | None,
    unit_items: np.ndarray,
    item_idx: Sequence[int],
    weights: Sequence[float],
    cfg: FeedbackConfig,
) -> np.ndarray | None:
    """The query moved by the signals (`item_idx` into `unit_items`, the model's unit item vectors).

    A user the model has never seen (`query` None) gets a query built from the signals alone, or None
    when they are all negative (nothing to go on: the caller falls back to trending).
    """
    if not len(item_idx):
        return query
    direction = (np.asarray(weights, dtype=np.float32)[:, None] * unit_items[np.asarray(item_idx)]).sum(axis=0)
    if query is None:
        if max(weights) <= 0:
            return None
        return direction.astype(np.float32)
    scale = float(np.linalg.norm(query)) or 1.0
    return (query + cfg.strength * scale * direction).astype(np.float32)
