"""What the request path assembles: picked items with scores and reasons, top-k selection, and the
trending fill that completes any answer (cold start, no champion, or fewer than k survivors of the filters)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recstack.serving.data import Catalog

__all__ = ["Picked", "top", "with_trending"]


@dataclass
class Picked:
    """Parallel lists, best first."""

    item_ids: list[str]
    scores: list[float]
    reasons: list[str]


def top(candidates: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates by score, best first (ties by candidate order)."""
    if len(candidates) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        candidates, scores = candidates[part], scores[part]
    order = np.lexsort((candidates, -scores))
    return candidates[order], scores[order].astype(np.float32)


def with_trending(
    catalog: Catalog, k: int, category: str | None, blocked: set[str], preferred: list[str], picked: Picked
) -> Picked:
    """`picked` filled up to k with trending items that pass every filter (preferred categories first)."""
    need = k - len(picked.item_ids)
    if need <= 0:
        return picked
    mask = catalog.available.copy()
    if category is not None:
        code = catalog.codes.get(category)
        if code is None:
            return picked
        mask &= catalog.category_code == code
    taken = [*blocked, *picked.item_ids]
    if taken:
        pos = catalog.positions(list(taken))
        mask[pos[pos >= 0]] = False
    order = catalog.trending_order
    codes = [catalog.codes[c] for c in preferred if c in catalog.codes]
    if codes:
        liked = np.isin(catalog.category_code, codes)
        chosen = np.concatenate([order[(mask & liked)[order]][:need], order[(mask & ~liked)[order]][:need]])
    else:
        chosen = order[mask[order]]
    chosen = chosen[:need]
    return Picked(
        [*picked.item_ids, *(str(i) for i in catalog.ids[chosen])],
        [*picked.scores, *(float(s) for s in catalog.trending[chosen])],
        [*picked.reasons, *(["trending"] * len(chosen))],
    )
