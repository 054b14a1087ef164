"""Candidate pools and reranking features for `AutoRecommender`'s learned ranking layer.

For each user, a pool of `pool_size` unseen items is drawn from the blend of the member models
(standardised scores summed), and every (user, candidate) pair is described by:

- per member: its standardised score and the log of its rank among the user's unseen items;
- the blend score and its rank;
- the item's popularity (log count) and the user's activity (log count);
- with timestamps: where the item's life (first, median, last interaction) sits relative to the user's
  active period (first, median, last interaction), in days, and the share of the item's interactions that
  fall inside the user's active window. On data collected over years this tells an item that did not yet
  exist, or had long faded, when the user was active — something no co-occurrence model sees.

Everything is computed from the training interactions only, so the same code builds features on the
internal validation split (to train the ranker) and on the full training data (to apply it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recstack.models.ensemble import MemberView, normalised, ranks
from recstack.processing.matrix import Vocabulary

__all__ = ["ActivityStats", "Pool", "build_pool", "feature_names"]

_DAY_S = 86_400.0
_KEY_SHIFT = np.int64(1) << np.int64(36)
_PADS_DAYS = (3, 30)


@dataclass(frozen=True)
class ActivityStats:
    """Per-item and per-user counts and time summaries (seconds; NaN without timestamps)."""

    item_count: np.ndarray
    user_count: np.ndarray
    item_times: np.ndarray
    user_times: np.ndarray
    item_keys: np.ndarray
    all_times: np.ndarray
    has_time: bool

    @classmethod
    def from_interactions(cls, frame: pd.DataFrame, users: Vocabulary, items: Vocabulary) -> ActivityStats:
        """Counts and (first, median, last) times of `frame`'s rows over the two vocabularies."""
        u = users.index(frame["user_id"])
        i = items.index(frame["item_id"])
        keep = (u >= 0) & (i >= 0)
        u, i = u[keep], i[keep]
        item_count = np.bincount(i, minlength=len(items)).astype(np.float64)
        user_count = np.bincount(u, minlength=len(users)).astype(np.float64)
        has_time = "timestamp" in frame
        item_times = np.full((len(items), 3), np.nan)
        user_times = np.full((len(users), 3), np.nan)
        item_keys = np.empty(0, dtype=np.int64)
        all_times = np.empty(0, dtype=np.float64)
        if has_time:
            seconds = np.floor(
                pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(dtype=np.float64)[keep] / 1000.0
            )
            valid = np.isfinite(seconds)
            has_time = bool(valid.any())
            if has_time:
                item_times = _time_summary(i[valid], seconds[valid], len(items))
                user_times = _time_summary(u[valid], seconds[valid], len(users))
                offset = np.nanmin(seconds)
                relative = (seconds[valid] - offset).astype(np.int64)
                item_keys = np.sort(i[valid].astype(np.int64) * _KEY_SHIFT + relative)
                all_times = np.sort(relative).astype(np.float64)
                item_times = item_times - offset
                user_times = user_times - offset
        return cls(item_count, user_count, item_times, user_times, item_keys, all_times, has_time)

    def state(self, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}item_count": self.item_count,
            f"{prefix}user_count": self.user_count,
            f"{prefix}item_times": self.item_times,
            f"{prefix}user_times": self.user_times,
            f"{prefix}item_keys": self.item_keys,
            f"{prefix}all_times": self.all_times,
            f"{prefix}has_time": np.asarray(self.has_time),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], prefix: str) -> ActivityStats:
        return cls(
            state[f"{prefix}item_count"],
            state[f"{prefix}user_count"],
            state[f"{prefix}item_times"],
            state[f"{prefix}user_times"],
            state[f"{prefix}item_keys"],
            state[f"{prefix}all_times"],
            bool(state[f"{prefix}has_time"]),
        )


def _time_summary(group: np.ndarray, seconds: np.ndarray, n: int) -> np.ndarray:
    frame = pd.DataFrame({"g": group, "t": seconds}).groupby("g")["t"]
    out = np.full((n, 3), np.nan)
    summary = pd.concat([frame.min(), frame.median(), frame.max()], axis=1)
    out[summary.index.to_numpy()] = summary.to_numpy()
    return out


def feature_names(n_members: int, has_time: bool) -> list[str]:
    names = [f"m{j}_{kind}" for j in range(n_members) for kind in ("z", "log_rank")]
    names += ["blend", "blend_log_rank", "item_log_count", "user_log_count"]
    if has_time:
        names += [
            "item_first_minus_user_last",
            "item_median_minus_user_median",
            "item_last_minus_user_first",
            "item_first_minus_user_first",
            "user_span",
            "item_share_in_user_window",
            "item_log_count_in_user_window",
        ]
        names += [f"item_log_local_share_{pad}d" for pad in _PADS_DAYS]
    return names


@dataclass(frozen=True)
class Pool:
    """Candidates (users × pool_size item indices) with their features (rows user-major) and blend scores."""

    items: np.ndarray
    features: np.ndarray
    blend: np.ndarray


def build_pool(
    views: list[MemberView],
    weights: np.ndarray,
    user_idx: np.ndarray,
    seen: np.ndarray,
    stats: ActivityStats,
    pool_size: int,
) -> Pool:
    """The pool and features for one block of users; `seen` is their dense users×items training mask."""
    n_users = len(user_idx)
    z_blocks = [normalised(v.scores(user_idx), seen) for v in views]
    blend = sum((w * z for w, z in zip(weights, z_blocks, strict=True)), np.zeros_like(z_blocks[0]))
    blend = np.where(seen, -np.inf, blend)
    size = min(pool_size, blend.shape[1])
    pool = np.argpartition(-blend, size - 1, axis=1)[:, :size]
    rows = np.repeat(np.arange(n_users), size)
    cols = pool.ravel()
    columns: list[np.ndarray] = []
    for z in z_blocks:
        columns.append(z[rows, cols])
        columns.append(np.log(ranks(np.where(seen, -np.inf, z))[rows, cols]))
    columns.append(blend[rows, cols])
    columns.append(np.log(ranks(blend)[rows, cols]))
    columns.append(np.log1p(stats.item_count[cols]))
    columns.append(np.repeat(np.log1p(stats.user_count[user_idx]), size))
    if stats.has_time:
        it = stats.item_times[cols] / _DAY_S
        ut = stats.user_times[np.repeat(user_idx, size)] / _DAY_S
        columns += [it[:, 0] - ut[:, 2], it[:, 1] - ut[:, 1], it[:, 2] - ut[:, 0], it[:, 0] - ut[:, 0]]
        columns.append(ut[:, 2] - ut[:, 0])
        in_window = _count_in_window(stats, cols, ut[:, 0] * _DAY_S, ut[:, 2] * _DAY_S)
        columns.append(in_window / np.maximum(stats.item_count[cols], 1.0))
        columns.append(np.log1p(in_window))
        for pad in _PADS_DAYS:
            lo_s, hi_s = (ut[:, 0] - pad) * _DAY_S, (ut[:, 2] + pad) * _DAY_S
            local = _count_in_window(stats, cols, lo_s, hi_s)
            total = np.searchsorted(stats.all_times, hi_s, side="right") - np.searchsorted(stats.all_times, lo_s)
            columns.append(np.log((local + 1.0) / (total + 100.0)))
    features = np.column_stack(columns).astype(np.float32)
    return Pool(items=pool, features=features, blend=blend[np.arange(n_users)[:, None], pool])


def _count_in_window(stats: ActivityStats, items: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """How many of each item's interactions fall between the given times (NaN times count nothing)."""
    valid = np.isfinite(start_s) & np.isfinite(end_s)
    base = items.astype(np.int64) * _KEY_SHIFT
    lo = base + np.where(valid, start_s, 0).astype(np.int64)
    hi = base + np.where(valid, end_s, -1).astype(np.int64)
    count = np.searchsorted(stats.item_keys, hi, side="right") - np.searchsorted(stats.item_keys, lo, side="left")
    return np.where(valid, np.maximum(count, 0), 0).astype(np.float64)
