"""Impressions and online feedback: the value types the store's impression methods take and return.

An impression is one item of one answer served (`served_at` epoch ms, `user_id`, `item_id`, 1-based
`position`, the `model_version` that served it or None for the popularity fallback, and the `request_id`
grouping one answer's items). An impression is *positive* when the same user has a positive interaction
with the same item within a window after it; `PositiveRule` says which interactions are positive, in terms
a SQL query can test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["FEEDBACK_COLUMNS", "IMPRESSION_COLUMNS", "ImpressionRow", "PositiveRule", "ServedAnswer"]

IMPRESSION_COLUMNS: Final = ("served_at", "user_id", "item_id", "position", "model_version", "request_id")
ImpressionRow = tuple[int, str, str, int, int | None, str]
"""One impression as plain values, in `IMPRESSION_COLUMNS` order."""
ServedAnswer = tuple[int, str, int | None, str, bytes]
"""One answer served: `served_at`, `user_id`, `model_version`, `request_id` and the answer's JSON, an object
whose `items` array holds objects with an `item_id`; each item is one impression, positioned 1, 2, …"""
FEEDBACK_COLUMNS: Final = ("model_version", "impressions", "positives", "rate")


@dataclass(frozen=True)
class PositiveRule:
    """Which interactions count as positive feedback on an impression.

    The serving feedback rule (`recstack.serving.feedback`) expressed without per-item durations, which a
    query over the store does not have: any event of `event_types`; a `watch` whose value (seconds) is at
    least `watch_min_s` (below it is a bounce, as `FeedbackConfig.bounce_s` reads it); a `rating` of at
    least `rating_min`. Views and skips never count.
    """

    event_types: tuple[str, ...] = ("like", "share", "purchase", "click")
    watch_min_s: float = 10.0
    rating_min: float = 4.0
