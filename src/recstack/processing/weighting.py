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
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RatingMode",
    "ValueKind",
    "ValueProfile",
    "WeightingConfig",
    "WeightingContext",
    "clip_negative",
    "infer",
    "infer_from",
    "play_counts",
    "ratings",
    "row_weights",
    "variants",
    "video",
    "weigh",
    "weighting_context",
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


@dataclass(frozen=True)
class WeightingContext:
    """The data-wide quantities a row's strength depends on besides the row itself.

    Fixing them first is what lets any slice of the rows (a Spark partition, a chunk) be weighed exactly as
    the whole data set would be: `row_weights` of a slice with the whole set's context gives the whole
    set's weights for those rows, bit for bit.

    - `now_ms`: the decay's reference time (None when no decay applies).
    - `rating_max`: the top of the rating scale for `scale` mode (None when unused).
    - `durations`: seconds per item id for watch-time rows, known from the catalogue or estimated from the
      item's watch times; `fallback_duration` for items it lacks (None when no watch-time row has a value,
      or, from an engine that checked, when no row needs it).
    """

    now_ms: float | None = None
    rating_max: float | None = None
    durations: pd.Series | None = None
    fallback_duration: float | None = None


def value_kinds(interactions: pd.DataFrame, config: WeightingConfig) -> np.ndarray:
    """How each row's `value` is read (a `ValueKind` per row, object array)."""
    events = _event_types(interactions, config)
    return pd.Series(config.value_kinds, dtype=object).reindex(events).fillna("none").to_numpy(dtype=object)


def _values(interactions: pd.DataFrame) -> np.ndarray:
    if "value" in interactions:
        return pd.to_numeric(interactions["value"], errors="coerce").to_numpy(dtype=np.float64)
    return np.full(len(interactions), np.nan)


def known_durations(items: pd.DataFrame | None) -> pd.Series:
    """Positive catalogue durations (seconds) by item id; the first row of a repeated id wins."""
    if items is None or "duration_s" not in items:
        return pd.Series(dtype=np.float64)
    table = pd.to_numeric(items["duration_s"], errors="coerce").astype(np.float64)
    table.index = pd.Index(items["item_id"].astype(str).to_numpy(dtype=object))
    table = table[~table.index.duplicated()]
    return table[table > 0]


def estimated_durations(item_ids: np.ndarray, seconds: np.ndarray, config: WeightingConfig) -> pd.Series:
    """The `duration_quantile` of each item's watch times, for items with at least
    `min_watches_for_estimate` of them. Any set of whole items gives the same value per item."""
    by_item = pd.Series(seconds, index=item_ids)
    grouped = by_item.groupby(level=0)
    enough = grouped.size() >= config.min_watches_for_estimate
    return grouped.quantile(config.duration_quantile)[enough]


def fallback_duration(seconds: np.ndarray, config: WeightingConfig) -> float:
    """The `duration_quantile` of all watch times: the estimate for an item with too few of its own."""
    return max(float(pd.Series(seconds).quantile(config.duration_quantile)), 1e-9)


def watch_sample(interactions: pd.DataFrame, config: WeightingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Item ids and seconds of the watch-time rows that carry a value: what duration estimates read."""
    values = _values(interactions)
    rows = (value_kinds(interactions, config) == "watch_time") & ~np.isnan(values)
    return interactions["item_id"].astype(str).to_numpy(dtype=object)[rows], values[rows]


def merge_durations(known: pd.Series, estimated: pd.Series) -> pd.Series:
    """Seconds per item: the catalogue's where known, else the estimate (floored above zero)."""
    estimates = estimated[~estimated.index.isin(known.index)].clip(lower=1e-9)
    return pd.concat([known, estimates]).astype(np.float64)


def weighting_context(
    interactions: pd.DataFrame,
    config: WeightingConfig,
    items: pd.DataFrame | None = None,
    now_ms: int | None = None,
) -> WeightingContext:
    """The context of a whole data set held in one frame (the embedded engine's path)."""
    values = _values(interactions)
    kinds = value_kinds(interactions, config)
    reference: float | None = None
    if config.half_life_days is not None and "timestamp" in interactions:
        stamps = pd.to_numeric(interactions["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
        reference = float(now_ms) if now_ms is not None else float(np.nanmax(stamps, initial=0.0))
    top: float | None = None
    if config.rating_mode == "scale":
        rated = values[(kinds == "rating") & ~np.isnan(values)]
        top = config.rating_max if config.rating_max is not None else float(np.nanmax(rated, initial=0.0))
    durations, fallback = None, None
    item_ids, seconds = watch_sample(interactions, config)
    if seconds.size:
        durations = merge_durations(known_durations(items), estimated_durations(item_ids, seconds, config))
        fallback = fallback_duration(seconds, config)
    return WeightingContext(reference, top, durations, fallback)


def _durations(interactions: pd.DataFrame, rows: np.ndarray, context: WeightingContext) -> np.ndarray:
    """Seconds of each selected row's item, from the context."""
    assert context.durations is not None
    fallback = context.fallback_duration if context.fallback_duration is not None else np.nan
    item_ids = interactions["item_id"].astype(str).to_numpy(dtype=object)[rows]
    return context.durations.reindex(item_ids).fillna(fallback).to_numpy(dtype=np.float64)


def _rating_factor(values: np.ndarray, config: WeightingConfig, top: float | None) -> np.ndarray:
    if config.rating_mode == "binary":
        return np.ones_like(values)
    if config.rating_mode == "threshold":
        return np.where(values >= config.rating_threshold, 1.0, config.below_threshold_weight)
    if top is None or top <= 0:
        return np.ones_like(values)
    scaled = np.clip(values / top, 0.0, None)
    return scaled if config.rating_exponent == 1.0 else scaled**config.rating_exponent


def row_weights(
    interactions: pd.DataFrame,
    config: WeightingConfig,
    items: pd.DataFrame | None = None,
    now_ms: int | None = None,
    context: WeightingContext | None = None,
) -> np.ndarray:
    """The strength of every row of `interactions` (float64, same order), before summing per pair.

    Needs `item_id`; reads `event_type`, `value` and `timestamp` (epoch ms) when present. `items` supplies
    `duration_s` for watch-time fractions. `now_ms` is the decay's reference time (default: newest row).
    `context` (see `WeightingContext`) replaces what would otherwise be read from these rows as a whole,
    so that a slice of a larger data set is weighed like that data set; `items` and `now_ms` are then unused.
    """
    if context is None:
        context = weighting_context(interactions, config, items, now_ms)
    n = len(interactions)
    events = _event_types(interactions, config)
    lookup = pd.Series(config.event_weights, dtype=np.float64)
    weights = lookup.reindex(events).fillna(config.unknown_event_weight).to_numpy(dtype=np.float64, copy=True)
    values = _values(interactions)
    kinds = pd.Series(config.value_kinds, dtype=object).reindex(events).fillna("none").to_numpy(dtype=object)
    present = ~np.isnan(values)
    factor = np.ones(n)

    rated = present & (kinds == "rating")
    if rated.any():
        factor[rated] = _rating_factor(values[rated], config, context.rating_max)
    counted = present & (kinds == "count")
    if counted.any():
        counts = np.maximum(values[counted], 0.0)
        factor[counted] = np.log1p(counts) if config.count_transform == "log" else counts
    rows = (kinds == "watch_time") & present
    if rows.any():
        fraction = np.clip(values[rows] / _durations(interactions, rows, context), 0.0, 1.0)
        factor[rows] = np.where(fraction >= config.full_watch_fraction, 1.0, fraction)
        if config.bounce_fraction is not None:
            bounced = np.zeros(n, dtype=bool)
            bounced[rows] = fraction < config.bounce_fraction
            weights[bounced] = config.event_weights.get("skip", -1.0)
            factor[bounced] = 1.0
    strength = weights * factor

    if config.half_life_days is not None:
        if "timestamp" in interactions and context.now_ms is not None:
            stamps = pd.to_numeric(interactions["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
            reference = context.now_ms
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


@dataclass(frozen=True)
class ValueProfile:
    """What `infer` looks at, summarised so any engine can compute it with a handful of aggregates.

    - `events`: the distinct non-null event types; `n_values`: rows with a finite value.
    - `min_value`, `max_value`; `half_grid`: every value within tolerance of a multiple of 0.5;
      `distinct_values`: how many distinct values (an engine may stop counting past 21);
      `integers`: every value within tolerance of an integer; `median`; `share_ones`: the share equal to 1.
    - `durations_known`: the catalogue gives some item a positive duration.
    """

    events: frozenset[str]
    n_values: int
    min_value: float = 0.0
    max_value: float = 0.0
    half_grid: bool = False
    distinct_values: int = 0
    integers: bool = False
    median: float = 0.0
    share_ones: float = 0.0
    durations_known: bool = False

    @classmethod
    def of(cls, interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> ValueProfile:
        """The profile of one frame (the embedded engine's path)."""
        events: frozenset[str] = frozenset()
        if "event_type" in interactions:
            events = frozenset(interactions["event_type"].dropna().astype(str).unique())
        durations = False
        if items is not None and "duration_s" in items:
            durations = bool(pd.to_numeric(items["duration_s"], errors="coerce").gt(0).any())
        values = _values(interactions) if "value" in interactions else np.array([], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls(events, 0, durations_known=durations)
        return cls(
            events=events,
            n_values=int(values.size),
            min_value=float(values.min()),
            max_value=float(values.max()),
            half_grid=bool(np.allclose(values * 2, np.round(values * 2))),
            distinct_values=int(np.unique(values).size),
            integers=bool(np.allclose(values, np.round(values))),
            median=float(np.median(values)),
            share_ones=float(np.mean(values == 1)),
            durations_known=durations,
        )


def _looks_like_ratings(profile: ValueProfile) -> bool:
    """Few distinct values on a half-point grid inside 0–10: the shape of every star-rating scale."""
    if profile.n_values == 0 or profile.min_value < 0 or profile.max_value > 10:
        return False
    return profile.half_grid and profile.distinct_values <= 21


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
    return infer_from(ValueProfile.of(interactions, items))


def infer_from(profile: ValueProfile) -> WeightingConfig:
    """`infer`'s decision from a `ValueProfile`, however it was computed."""
    events = profile.events
    if profile.n_values == 0 or events & {"watch", "like", "share", "skip"}:
        choice, config = "typed events", video()
    elif (not events or "rating" in events) and _looks_like_ratings(profile):
        choice, config = "ratings", ratings()
    elif profile.durations_known:
        choice, config = "watch seconds (durations known)", video()
    elif profile.integers and (profile.median <= 20 or profile.share_ones >= 0.05):
        choice, config = "play counts", play_counts()
    else:
        choice, config = "watch seconds", video()
    logger.info("interaction weighting inferred from the data: %s", choice)
    return config
