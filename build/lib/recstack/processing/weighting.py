"""Raw events → implicit-feedback strength, as configuration rather than code.

Every interaction row gets a strength: the weight of its event type, times what its `value` says (how much of
the item was watched, what rating was given, how many plays), times an optional exponential time decay.
Strengths are then summed per (user, item) pair. A negative total (say, a skip that outweighs a view) is a
real signal for models that can use it; models that need non-negative input drop those pairs with
`clip_negative`.

How `value` is read depends on the event type (`value_kinds`): a platform may send watch seconds on `watch`
events and a star rating on `rating` events in one stream. Rows without an event type are read as
`default_event`. The presets `video()`, `ratings()` and `play_counts()` cover the common shapes of data, and
`infer()` picks one by looking at the values themselves, never at a data set's name.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RatingMode",
    "ValueKind",
    "WeightingConfig",
    "clip_negative",
    "infer",
    "play_counts",
    "ratings",
    "row_weights",
    "variants",
    "video",
    "weigh",
]

logger = logging.getLogger(__name__)

ValueKind = Literal["none", "rating", "count", "watch_time"]
RatingMode = Literal["binary", "threshold", "scale"]

_MS_PER_DAY = 86_400_000.0

# Share > purchase > like > a full watch > a view > a click; a skip counts against the item.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "share": 4.0,
    "purchase": 4.0,
    "like": 3.0,
    "watch": 2.0,
    "rating": 1.0,
    "view": 1.0,
    "click": 0.5,
    "skip": -1.0,
}


class WeightingConfig(BaseModel):
    """How each interaction row becomes a strength; JSON round-trips through `model_dump_json`.

    Per row: `strength = event_weights[event_type] × value_factor × decay`, where `value_factor` is 1 unless
    `value_kinds` names how that event type's value is read:

    - `watch_time`: value is seconds watched. The fraction of the item's duration (`duration_s` of the items
      frame; else estimated as the `duration_quantile` of the item's watch times, or of all watch times when
      the item has fewer than `min_watches_for_estimate`) gives the factor: 1 at or above
      `full_watch_fraction` (a full watch), the fraction itself below it (a partial watch), and a bounce,
      below `bounce_fraction`, is scored as a `skip` event instead.
    - `rating`: `binary` counts every rating as 1; `threshold` gives 1 at or above `rating_threshold` and
      `below_threshold_weight` under it; `scale` gives (rating / `rating_max`) ** `rating_exponent`, with
      `rating_max` the data's maximum if unset.
    - `count`: `log1p(count)` (or the count itself with `count_transform="linear"`).

    Rows with no value keep factor 1. With `half_life_days`, strength halves for every half-life between
    the row's timestamp and the reference time (the newest timestamp unless one is given). `max_weight`
    caps a pair's total after summing, so one compulsive re-watcher cannot dominate an item's column.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    unknown_event_weight: float = 1.0
    default_event: str = "view"
    value_kinds: dict[str, ValueKind] = Field(default_factory=dict)
    full_watch_fraction: float = Field(default=0.9, gt=0.0, le=1.0)
    bounce_fraction: float | None = Field(default=0.05, ge=0.0, lt=1.0)
    duration_quantile: float = Field(default=0.9, gt=0.0, le=1.0)
    min_watches_for_estimate: int = Field(default=5, ge=1)
    rating_mode: RatingMode = "binary"
    rating_threshold: float = 3.5
    below_threshold_weight: float = 0.0
    rating_max: float | None = Field(default=None, gt=0.0)
    rating_exponent: float = Field(default=1.0, gt=0.0)
    count_transform: Literal["log", "linear"] = "log"
    half_life_days: float | None = Field(default=None, gt=0.0)
    max_weight: float | None = Field(default=None, gt=0.0)


def video() -> WeightingConfig:
    """Event-driven platform data: typed events, watch seconds on `watch`/`view`, ratings on `rating`."""
    return WeightingConfig(
        default_event="watch",
        value_kinds={"watch": "watch_time", "view": "watch_time", "rating": "rating"},
        rating_mode="scale",
    )


def ratings(mode: RatingMode = "binary", threshold: float = 3.5) -> WeightingConfig:
    """Explicit ratings. For top-k retrieval the fact of rating carries most of the signal (people rate
    what they chose to watch), so the default counts every rating; `threshold` and `scale` are one switch
    away for data where low ratings mean rejection."""
    return WeightingConfig(
        default_event="rating", value_kinds={"rating": "rating"}, rating_mode=mode, rating_threshold=threshold
    )


def variants(config: WeightingConfig) -> list[WeightingConfig]:
    """Alternatives worth comparing on validation data for the shape of data `config` reads, `config` first.

    How much a rating's value should count is a property of the data, not of the scale: on some sets the
    fact of rating is all the signal, on others a damped value helps. Ratings therefore get binary, square-
    root-scaled and linearly scaled variants, and counts log-damped or binary ones; anything else (typed
    events, watch time) has one reading.
    """
    kinds = set(config.value_kinds.values())
    out = [config]
    if kinds == {"rating"}:
        out += [
            config.model_copy(update={"rating_mode": "binary"}),
            config.model_copy(update={"rating_mode": "scale", "rating_exponent": 0.5}),
            config.model_copy(update={"rating_mode": "scale", "rating_exponent": 1.0}),
        ]
    elif kinds == {"count"}:
        out += [
            config.model_copy(update={"count_transform": "log"}),
            config.model_copy(update={"value_kinds": {}}),
        ]
    unique: list[WeightingConfig] = []
    for candidate in out:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def play_counts() -> WeightingConfig:
    """Consumption counts (plays, purchases of a quantity): log-damped so heavy repeats do not dominate."""
    return WeightingConfig(default_event="view", value_kinds={"view": "count", "watch": "count"})


def _event_types(interactions: pd.DataFrame, config: WeightingConfig) -> np.ndarray:
    if "event_type" not in interactions:
        return np.full(len(interactions), config.default_event, dtype=object)
    events = interactions["event_type"].astype(object)
    return events.where(events.notna(), config.default_event).astype(str).to_numpy(dtype=object)


def _durations(
    interactions: pd.DataFrame,
    watched: np.ndarray,
    values: np.ndarray,
    items: pd.DataFrame | None,
    config: WeightingConfig,
) -> np.ndarray:
    """Seconds per row's item: the catalogue's duration where known and positive, else an estimate."""
    item_ids = interactions["item_id"].astype(str).to_numpy(dtype=object)
    known = np.full(len(interactions), np.nan)
    if items is not None and "duration_s" in items:
        table = pd.to_numeric(items["duration_s"], errors="coerce")
        table.index = items["item_id"].astype(str).to_numpy(dtype=object)
        table = table[~table.index.duplicated()]
        known = table.reindex(item_ids).to_numpy(dtype=np.float64, copy=True)
        known[~(known > 0)] = np.nan
    sample = pd.Series(values[watched & ~np.isnan(values)])
    if sample.empty:
        return known
    by_item = pd.Series(sample.to_numpy(), index=item_ids[watched & ~np.isnan(values)])
    grouped = by_item.groupby(level=0)
    enough = grouped.size() >= config.min_watches_for_estimate
    estimate = grouped.quantile(config.duration_quantile).where(enough)
    overall = float(sample.quantile(config.duration_quantile))
    estimated = estimate.reindex(item_ids).fillna(overall).to_numpy(dtype=np.float64)
    return np.where(np.isnan(known), np.maximum(estimated, 1e-9), known)


def _rating_factor(values: np.ndarray, config: WeightingConfig) -> np.ndarray:
    if config.rating_mode == "binary":
        return np.ones_like(values)
    if config.rating_mode == "threshold":
        return np.where(values >= config.rating_threshold, 1.0, config.below_threshold_weight)
    top = config.rating_max if config.rating_max is not None else float(np.nanmax(values, initial=0.0))
    if top <= 0:
        return np.ones_like(values)
    scaled = np.clip(values / top, 0.0, None)
    return scaled if config.rating_exponent == 1.0 else scaled**config.rating_exponent


def row_weights(
    interactions: pd.DataFrame,
    config: WeightingConfig,
    items: pd.DataFrame | None = None,
    now_ms: int | None = None,
) -> np.ndarray:
    """The strength of every row of `interactions` (float64, same order), before summing per pair.

    Needs `item_id`; reads `event_type`, `value` and `timestamp` (epoch ms) when present. `items` supplies
    `duration_s` for watch-time fractions. `now_ms` is the decay's reference time (default: newest row).
    """
    n = len(interactions)
    events = _event_types(interactions, config)
    lookup = pd.Series(config.event_weights, dtype=np.float64)
    weights = lookup.reindex(events).fillna(config.unknown_event_weight).to_numpy(dtype=np.float64, copy=True)
    if "value" in interactions:
        values = pd.to_numeric(interactions["value"], errors="coerce").to_numpy(dtype=np.float64)
    else:
        values = np.full(n, np.nan)
    kinds = pd.Series(config.value_kinds, dtype=object).reindex(events).fillna("none").to_numpy(dtype=object)
    present = ~np.isnan(values)
    factor = np.ones(n)

    rated = present & (kinds == "rating")
    if rated.any():
        factor[rated] = _rating_factor(values[rated], config)
    counted = present & (kinds == "count")
    if counted.any():
        counts = np.maximum(values[counted], 0.0)
        factor[counted] = np.log1p(counts) if config.count_transform == "log" else counts
    watched = kinds == "watch_time"
    if (watched & present).any():
        durations = _durations(interactions, watched, values, items, config)
        rows = watched & present
        fraction = np.clip(values[rows] / durations[rows], 0.0, 1.0)
        factor[rows] = np.where(fraction >= config.full_watch_fraction, 1.0, fraction)
        if config.bounce_fraction is not None:
            bounced = np.zeros(n, dtype=bool)
            bounced[rows] = fraction < config.bounce_fraction
            weights[bounced] = config.event_weights.get("skip", -1.0)
            factor[bounced] = 1.0
    strength = weights * factor

    if config.half_life_days is not None:
        if "timestamp" in interactions:
            stamps = pd.to_numeric(interactions["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
            reference = float(now_ms) if now_ms is not None else float(np.nanmax(stamps, initial=0.0))
            age_days = np.maximum(reference - np.nan_to_num(stamps, nan=reference), 0.0) / _MS_PER_DAY
            strength = strength * np.power(0.5, age_days / config.half_life_days)
        else:
            logger.debug("half_life_days is set but the interactions have no timestamp; no decay applied")
    return strength


def weigh(
    interactions: pd.DataFrame,
    config: WeightingConfig | None = None,
    items: pd.DataFrame | None = None,
    now_ms: int | None = None,
) -> pd.DataFrame:
    """One row per (user_id, item_id) with the summed strength in `weight` (float64, may be negative).

    `config=None` infers a preset from the data (`infer`). `max_weight` caps each pair's total.
    """
    config = config if config is not None else infer(interactions, items)
    strength = row_weights(interactions, config, items, now_ms)
    frame = pd.DataFrame(
        {
            "user_id": interactions["user_id"].astype(str).to_numpy(dtype=object),
            "item_id": interactions["item_id"].astype(str).to_numpy(dtype=object),
            "weight": strength,
        }
    )
    out = frame.groupby(["user_id", "item_id"], sort=True, as_index=False)["weight"].sum()
    if config.max_weight is not None:
        out["weight"] = out["weight"].clip(upper=config.max_weight)
    return out


def clip_negative(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """A copy of `matrix` without its non-positive entries, for models that need non-negative input."""
    out = matrix.copy()
    out.data[out.data < 0] = 0
    out.eliminate_zeros()
    return out


def _looks_like_ratings(values: np.ndarray) -> bool:
    """Few distinct values on a half-point grid inside 0–10: the shape of every star-rating scale."""
    if values.size == 0 or values.min() < 0 or values.max() > 10:
        return False
    on_grid = np.allclose(values * 2, np.round(values * 2))
    return bool(on_grid and np.unique(values).size <= 21)


def infer(interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> WeightingConfig:
    """Pick a preset from what the data looks like (a heuristic; the choice is logged at INFO).

    - No usable values, or engagement events (watch, like, share, skip) → `video()`, which reads watch
      seconds, ratings and bare events alike.
    - Values on a half-point grid within 0–10 with at most 21 distinct levels, on rows that are untyped or
      typed `rating` → `ratings()`.
    - Durations known for the items → the values are watch seconds → `video()`.
    - Integer values where small counts are common (median ≤ 20 or at least 5 % ones) → `play_counts()`.
    - Anything else (large or fractional values) → watch seconds without durations → `video()`.
    """
    events: set[str] = set()
    if "event_type" in interactions:
        events = set(interactions["event_type"].dropna().astype(str).unique())
    values = np.array([], dtype=np.float64)
    if "value" in interactions:
        values = pd.to_numeric(interactions["value"], errors="coerce").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
    durations = None
    if items is not None and "duration_s" in items:
        durations = pd.to_numeric(items["duration_s"], errors="coerce")
    if values.size == 0 or events & {"watch", "like", "share", "skip"}:
        choice, config = "typed events", video()
    elif (not events or "rating" in events) and _looks_like_ratings(values):
        choice, config = "ratings", ratings()
    elif durations is not None and bool(durations.gt(0).any()):
        choice, config = "watch seconds (durations known)", video()
    elif np.allclose(values, np.round(values)) and (
        float(np.median(values)) <= 20 or float(np.mean(values == 1)) >= 0.05
    ):
        choice, config = "play counts", play_counts()
    else:
        choice, config = "watch seconds", video()
    logger.info("interaction weighting inferred from the data: %s", choice)
    return config
