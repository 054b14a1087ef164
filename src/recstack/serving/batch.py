"""Answers precomputed by a batch job (`recstack spark recommend --cache`), served instead of computed.

A batch job ranks every user's items once with one model version and leaves each list in the result cache
under `batch:<model><version>:<user_id>`. Naming the version in the key means a new champion never reads an
old champion's lists: they just go unused until they expire. A list is never trusted to be current, only
filtered: at request time the user's history (every event in the online state, including those newer than
the batch), the request's `exclude` and `category`, and the catalogue's availability are applied to it, as
the live path applies them, so a posted event needs no invalidation of batch keys. When fewer than k items
survive, the caller computes the answer live rather than answer short.

With the lists, `load_cache` leaves a marker per version (`loaded_key`); `LoadedVersions` asks for it at most
every few seconds, so a server whose champion has no batch pays no extra cache round trip per answer.

Both cache backends hold these keys through the same `Cache` protocol; with the in-process memory cache
only a list loaded into the serving process itself is seen (a batch job's own process cannot reach it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

from recstack.storage.cache import Cache

__all__ = [
    "BatchAnswer", "LoadedVersions", "batch_key", "choose", "decode", "encode", "load_cache", "loaded_key",
    "model_label",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchAnswer:
    """One user's ranked list as the batch job wrote it: parallel lists, best first."""

    item_ids: list[str]
    scores: list[float]


def model_label(kind: str, version: int | None) -> str:
    """The name of one model version in cache keys (`als_spark3`), shared by batch and result keys."""
    return f"{kind}{version}"


def batch_key(model_version: str, user_id: str) -> str:
    """The cache key of one user's batch answer for one model version (`model_label`)."""
    return f"batch:{model_version}:{user_id}"


def loaded_key(model_version: str) -> str:
    """The key whose presence says a batch job loaded lists for this model version (it expires with them)."""
    return f"batch-loaded:{model_version}"


def encode(answer: BatchAnswer) -> bytes:
    """`[[item_id, score], …]` as JSON: compact, and readable by any other client of the cache."""
    return orjson.dumps([[i, s] for i, s in zip(answer.item_ids, answer.scores, strict=True)])


def decode(body: bytes) -> BatchAnswer | None:
    """The list under a batch key; None (logged) for a value this format does not describe, so a foreign
    or corrupt entry sends the request to the live path instead of failing it."""
    try:
        pairs = orjson.loads(body)
        return BatchAnswer([str(i) for i, _ in pairs], [float(s) for _, s in pairs])
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        logger.warning("ignoring a malformed batch answer (%d bytes): %s", len(body), exc)
        return None


def load_cache(recommendations: pd.DataFrame, cache: Cache, model_version: str, ttl_s: float) -> int:
    """Put each user's list from a batch job's `user_id, item_id, rank, score` rows under `batch_key`, in one
    round trip; returns the number of users."""
    values: dict[str, bytes] = {}
    ordered = recommendations.sort_values(["user_id", "rank"])
    for user_id, group in ordered.groupby("user_id", sort=False):
        answer = BatchAnswer([str(i) for i in group["item_id"]], [float(s) for s in group["score"]])
        values[batch_key(model_version, str(user_id))] = encode(answer)
    values[loaded_key(model_version)] = orjson.dumps({"users": len(values), "loaded_at_ms": int(time.time() * 1000)})
    cache.set_many(values, ttl_s)
    return len(values) - 1


class LoadedVersions:
    """Whether lists are loaded for a model version, asked of the cache at most every `recheck_s` seconds per
    version: a batch loaded while the server runs is served within `recheck_s`, and without one each answer
    costs no lookup. `clock` (monotonic by default) lets tests move time. Racing threads at worst ask twice."""

    def __init__(self, recheck_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.recheck_s = recheck_s
        self._clock = clock
        self._known: tuple[str, bool, float] | None = None

    def loaded(self, model_version: str, get: Callable[[str], bytes | None]) -> bool:
        """`get` reads the cache (None when the key is missing or the cache is unreachable)."""
        now = self._clock()
        known = self._known
        if known is None or known[0] != model_version or now - known[2] >= self.recheck_s:
            known = self._known = (model_version, get(loaded_key(model_version)) is not None, now)
        return known[1]


def choose(
    answer: BatchAnswer,
    k: int,
    skip: Set[str],
    positions: Mapping[str, int],
    available: np.ndarray,
    category_code: np.ndarray,
    category: int | None = None,
    seen: np.ndarray | None = None,
) -> tuple[list[int], list[float]] | None:
    """The first `k` items of `answer` that pass every request-time filter, as model item indices and the
    batch's scores; None when fewer than `k` pass.

    `skip` holds the user's history items and the request's `exclude`; `positions` maps item ids to the
    model's indices, and `available` / `category_code` are the catalogue's columns in that order (the live
    path's alignment, so both paths judge an item alike); `category` is the requested code; `seen` the
    user's training items (a batch job excludes them already: checked again so a hard filter never rests on
    what another job did). An item the model does not know is dropped.
    """
    training = set(seen.tolist()) if seen is not None and len(seen) else set()
    chosen: list[int] = []
    scores: list[float] = []
    for item_id, score in zip(answer.item_ids, answer.scores, strict=True):
        idx = positions.get(item_id, -1)
        if idx < 0 or item_id in skip or idx in training or not available[idx]:
            continue
        if category is not None and category_code[idx] != category:
            continue
        chosen.append(idx)
        scores.append(score)
        if len(chosen) == k:
            return chosen, scores
    return None
