"""Ranking features, point-in-time correct: an example at time t sees only the events strictly before t.

One code path for training and serving. An `EventLog` indexes a frame of interactions (a lakehouse
snapshot's `read_interactions()`, a training frame, or the serving model's training events) by
(group, time) with prefix sums, so any statistic "over the events of this user / item / user×category before
t, optionally within a window" is two binary searches, vectorised over all rows; `build_features` turns
`Candidates` rows and their reference times into one float32 matrix whose columns are `feature_names()`.

Features (NaN where undefined, which LightGBM treats as missing):
- user: events, positive events and events in the last 7 days; days since the last event; skip rate
  (share of non-positive events); mean watched fraction of `watch` events;
- item: positive events over 1, 7, 30 days and all time; skip rate; mean watched fraction; age in days
  (from `created_at`, else from the item's first event); duration; category code;
- user × item: each candidate source's score and rank, the number of sources that found it, the user's
  share of positive events in the item's category, whether that category is the user's top one, days since
  the user last engaged with the category; content similarity to the recent items is the `content` score;
- context: hour of day and weekday (UTC) of the reference time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from recstack.errors import ConfigurationError

if TYPE_CHECKING:
    from recstack.ranking.candidates import Candidates

__all__ = ["EventLog", "ItemAttributes", "build_features", "epoch_ms", "feature_names"]

_DAY: Final = 86_400_000.0
_USER: Final = ("u_events", "u_positive", "u_events_7d", "u_days_since_last", "u_skip_rate", "u_watch_fraction")
_ITEM: Final = (
    "i_pop_1d", "i_pop_7d", "i_pop_30d", "i_pop_all", "i_skip_rate", "i_watch_fraction", "i_age_days",
    "i_duration_s", "i_category",
)
_CROSS: Final = ("ui_sources", "ui_category_share", "ui_category_is_top", "ui_days_since_category")
_CONTEXT: Final = ("ctx_hour", "ctx_weekday")


def feature_names() -> list[str]:
    """Column names of `build_features`' matrix, in order."""
    from recstack.ranking.candidates import SOURCES

    sources = [f"src_{s}_score" for s in SOURCES] + [f"src_{s}_rank" for s in SOURCES]
    return [*_USER, *_ITEM, *sources, *_CROSS, *_CONTEXT]


def epoch_ms(values: pd.Series) -> np.ndarray:
    """Timestamps (epoch ms numbers, datetimes or ISO strings) as float64 epoch ms; NaN where missing."""
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    stamps = pd.to_datetime(values, utc=True, errors="coerce")
    delta = (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(milliseconds=1)
    return np.asarray(delta, dtype=np.float64)


@dataclass(frozen=True)
class ItemAttributes:
    """Per item (model order): category code (-1 unknown), duration in seconds and creation time (ms)."""

    category: np.ndarray
    duration_s: np.ndarray
    created_ms: np.ndarray
    n_categories: int

    @classmethod
    def from_items(cls, items: pd.DataFrame | None, n_items: int) -> ItemAttributes:
        """From a metadata frame aligned to the model's items (row i = item i), or None."""
        nan = np.full(n_items, np.nan)
        if items is None:
            return cls(np.full(n_items, -1, dtype=np.int64), nan, nan.copy(), 0)
        if "category" in items:
            first = items["category"].map(lambda c: c[0] if isinstance(c, list | tuple) and c else c)
            codes, uniques = pd.factorize(first.astype(object), sort=True)
            category, n_cat = codes.astype(np.int64), len(uniques)
        else:
            category, n_cat = np.full(n_items, -1, dtype=np.int64), 0
        duration = nan
        if "duration_s" in items:
            duration = pd.to_numeric(items["duration_s"], errors="coerce").to_numpy(np.float64)
        created = epoch_ms(items["created_at"]) if "created_at" in items else nan.copy()
        return cls(category, duration, created, n_cat)


class _Prefix:
    """Events sorted by (group, time) with prefix sums of named values; queries count "before t"."""

    def __init__(self, group: np.ndarray, times: np.ndarray, t0: int, stride: int, values: dict[str, np.ndarray]):
        self.t0, self.stride = t0, stride
        keys = group.astype(np.int64) * stride + (times - t0)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.times = times[order]
        self.cum = {name: np.concatenate([[0.0], np.cumsum(v[order], dtype=np.float64)]) for name, v in values.items()}

    def _key(self, group: np.ndarray, t: np.ndarray) -> np.ndarray:
        return group.astype(np.int64) * self.stride + np.clip(t - self.t0, 0, self.stride - 1)

    def span(self, group: np.ndarray, t: np.ndarray, window_ms: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions [lo, hi) of each row's events in `group` strictly before `t` (and at or after
        `t - window_ms` when given)."""
        hi = np.searchsorted(self.keys, self._key(group, t), side="left")
        start = t - np.int64(window_ms) if window_ms is not None else np.full_like(t, self.t0)
        lo = np.searchsorted(self.keys, self._key(group, start), side="left")
        return lo, hi

    def total(self, name: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        cum = self.cum[name]
        return cum[hi] - cum[lo]

    def last_time(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        out = np.full(len(hi), np.nan)
        has = hi > lo
        out[has] = self.times[hi[has] - 1]
        return out


class EventLog:
    """The point-in-time index of a set of interactions; see the module docstring.

    `events` has `user_idx`, `item_idx`, `timestamp` and `weight` (positive = engaged); `event_type` and
    `value` (seconds watched) give watched fractions when the items have a duration.
    """

    def __init__(self, events: pd.DataFrame, n_users: int, attributes: ItemAttributes) -> None:
        missing = [c for c in ("user_idx", "item_idx", "timestamp", "weight") if c not in events]
        if missing:
            raise ConfigurationError(f"an event log needs column(s) {missing}")
        self.attributes = attributes
        self.n_users = n_users
        user = events["user_idx"].to_numpy(np.int64)
        item = events["item_idx"].to_numpy(np.int64)
        stamps = epoch_ms(events["timestamp"])
        if np.isnan(stamps).any():
            raise ConfigurationError("an event log needs a timestamp on every event")
        times = stamps.astype(np.int64)
        self.t0 = int(times.min()) - 1 if len(times) else 0
        # Room for reference times up to ten years past the newest event.
        stride = int(times.max() - self.t0) + 1 + int(3650 * _DAY) if len(times) else 1
        n_groups = max(n_users * max(attributes.n_categories, 1), len(attributes.category), 1)
        if n_groups * stride >= 2**62:
            raise ConfigurationError("event log: too many users × categories for its time span")
        positive = (events["weight"].to_numpy(np.float64) > 0).astype(np.float64)
        fraction = self._fractions(events, item)
        watched = (~np.isnan(fraction)).astype(np.float64)
        values = {
            "events": np.ones(len(user)),
            "positive": positive,
            "watched": watched,
            "fraction": np.nan_to_num(fraction),
        }
        self.by_user = _Prefix(user, times, self.t0, stride, values)
        self.by_item = _Prefix(item, times, self.t0, stride, values)
        category = attributes.category[item] if len(attributes.category) else np.full(len(item), -1)
        known = category >= 0
        n_cat = max(attributes.n_categories, 1)
        self.n_categories = n_cat
        self.by_user_category = _Prefix(
            user[known] * n_cat + category[known], times[known], self.t0, stride, {"positive": positive[known]}
        )
        first = np.full(len(attributes.category), np.nan)
        if len(item):
            order = np.lexsort((times, item))
            head = np.concatenate([[True], item[order][1:] != item[order][:-1]])
            first[item[order][head]] = times[order][head]
        self.first_ms = first

    def _fractions(self, events: pd.DataFrame, item: np.ndarray) -> np.ndarray:
        out = np.full(len(item), np.nan)
        if "event_type" not in events or "value" not in events or not len(self.attributes.duration_s):
            return out
        watch = (events["event_type"].astype(str) == "watch").to_numpy()
        value = pd.to_numeric(events["value"], errors="coerce").to_numpy(np.float64)
        duration = self.attributes.duration_s[item]
        ok = watch & (duration > 0) & ~np.isnan(value)
        out[ok] = np.minimum(value[ok] / duration[ok], 1.0)
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(len(num), np.nan), where=den > 0)


def _user_block(log: EventLog, user: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    p = log.by_user
    lo, hi = p.span(user, t)
    lo7, hi7 = p.span(user, t, 7 * _DAY)
    events, positive = p.total("events", lo, hi), p.total("positive", lo, hi)
    return [
        events,
        positive,
        p.total("events", lo7, hi7),
        (t - p.last_time(lo, hi)) / _DAY,
        _ratio(events - positive, events),
        _ratio(p.total("fraction", lo, hi), p.total("watched", lo, hi)),
    ]


def _item_block(log: EventLog, item: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    p, attrs = log.by_item, log.attributes
    lo, hi = p.span(item, t)
    windows = [p.total("positive", *p.span(item, t, days * _DAY)) for days in (1, 7, 30)]
    events, positive = p.total("events", lo, hi), p.total("positive", lo, hi)
    created = attrs.created_ms[item]
    born = np.where(np.isnan(created), log.first_ms[item], created)
    # An item first seen after t has no age yet at t.
    age = np.where(born < t, (t - born) / _DAY, np.nan)
    return [
        *windows,
        positive,
        _ratio(events - positive, events),
        _ratio(p.total("fraction", lo, hi), p.total("watched", lo, hi)),
        age,
        attrs.duration_s[item],
        attrs.category[item].astype(np.float64),
    ]


def _cross_block(log: EventLog, candidates: Candidates, user: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    item = candidates.item
    n_cat = log.n_categories
    category = log.attributes.category[item]
    known = category >= 0
    p = log.by_user_category
    group = user * n_cat + np.maximum(category, 0)
    lo, hi = p.span(group, t)
    in_category = p.total("positive", lo, hi)
    u_lo, u_hi = log.by_user.span(user, t)
    share = _ratio(in_category, log.by_user.total("positive", u_lo, u_hi))
    since = (t - p.last_time(lo, hi)) / _DAY
    # The user's top category at t: every (distinct user, t) pair against every category.
    _, first, inverse = np.unique(log.by_user._key(user, t), return_index=True, return_inverse=True)
    grid_group = user[first][:, None] * n_cat + np.arange(n_cat)[None, :]
    grid_t = np.broadcast_to(t[first][:, None], grid_group.shape)
    g_lo, g_hi = p.span(grid_group.ravel(), grid_t.ravel())
    counts = p.total("positive", g_lo, g_hi).reshape(grid_group.shape)
    top = np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), -1)[inverse.ravel()]
    return [
        (~np.isnan(candidates.ranks)).sum(axis=1).astype(np.float64),
        np.where(known, share, np.nan),
        np.where(known, (category == top).astype(np.float64), np.nan),
        np.where(known, since, np.nan),
    ]


def build_features(log: EventLog, candidates: Candidates, as_of: np.ndarray | int) -> np.ndarray:
    """The feature matrix (len(candidates) × len(feature_names()), float32) of `candidates` at `as_of`
    (epoch ms, one per row or one for all), from `log`'s events strictly before each row's time."""
    n = len(candidates)
    t = np.broadcast_to(np.asarray(as_of, dtype=np.int64), (n,)).copy()
    user = np.maximum(candidates.user, 0)
    columns = [
        *_user_block(log, user, t),
        *_item_block(log, candidates.item, t),
        *candidates.scores.T.astype(np.float64),
        *candidates.ranks.T.astype(np.float64),
        *_cross_block(log, candidates, user, t),
        ((t // 3_600_000) % 24).astype(np.float64),
        # 1970-01-01 was a Thursday (weekday 3, Monday = 0).
        ((t // int(_DAY) + 3) % 7).astype(np.float64),
    ]
    out = np.column_stack(columns).astype(np.float32) if n else np.empty((0, len(feature_names())), np.float32)
    unknown = candidates.user < 0
    if unknown.any():
        out[unknown, : len(_USER)] = np.nan
    return out
