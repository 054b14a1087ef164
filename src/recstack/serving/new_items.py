"""New items through their content: candidates for items the champion cannot know.

A collaborative champion has no vector for an item added since it was trained. `NewItems` holds the content
index (`recstack.serving.content`) and uses it two ways: up to a quarter of a user's places go to the newest
such items whose content is close to the user's liked or recent items, and `/similar` of such an item is
answered by content. Every pick carries reason "content".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from recstack.serving.content import ContentIndex
from recstack.serving.data import Catalog
from recstack.serving.picks import Picked, top

__all__ = ["NewItems", "Ranked"]

MIN_SIMILARITY: Final = 0.3
# The newest items the champion lacks that compete for a place in a user's answer (bounds request cost).
NOVEL_ITEMS: Final = 1000


@dataclass(frozen=True)
class NovelItems:
    """The newest items with content but no place in the champion (added since it was trained)."""

    model: object
    content: ContentIndex
    ids: list[str]
    vectors: np.ndarray


@dataclass(frozen=True)
class Ranked:
    """Rows of `novel` whose content is close to a user's profile (similarity >= MIN_SIMILARITY), best first.
    `complete`: every such row is listed (else only the best `len(rows)`)."""

    novel: NovelItems
    rows: np.ndarray
    sims: np.ndarray
    complete: bool


@dataclass(frozen=True)
class _Placed:
    """The novel items' catalogue filter columns (for one catalogue snapshot); -1 / False where it lacks one."""

    novel: NovelItems
    catalog: Catalog
    # As Python objects: a request tests a few dozen rows one at a time.
    codes: list[int]
    usable: bytes


class NewItems:
    """The swappable content index plus the champion-specific set of items it alone can recommend."""

    def __init__(self) -> None:
        self.content: ContentIndex | None = None
        self._novel: NovelItems | None = None
        self._placed: _Placed | None = None

    def novel_for(self, model: object, known: Mapping[str, int], content: ContentIndex) -> NovelItems:
        novel = self._novel
        if novel is not None and novel.model is model and novel.content is content:
            return novel
        rows = [i for i, item_id in enumerate(content.ids) if item_id not in known][-NOVEL_ITEMS:]
        novel = NovelItems(model, content, [content.ids[i] for i in rows], content.vectors[rows])
        self._novel = novel
        return novel

    def _placed_for(self, novel: NovelItems, catalog: Catalog) -> _Placed:
        placed = self._placed
        if placed is not None and placed.novel is novel and placed.catalog is catalog:
            return placed
        _, code, available = catalog.attributes(novel.ids, unknown_available=False)
        placed = _Placed(novel, catalog, code.tolist(), available.astype(bool).tobytes())
        self._placed = placed
        return placed

    def mix(
        self, model: object, known: Mapping[str, int], catalog: Catalog, picked: Picked, k: int, category: str | None,
        blocked: set[str], liked: list[str], weights: list[float] | None, ranked: Ranked | None = None,
    ) -> Picked:
        """`picked` with up to a quarter of its places given to items the champion cannot know (new since
        training) whose content is close to `liked`, reason "content". `ranked`: those items as prepared for
        this user (`rank` of the same profile), used when made for the current novel items."""
        content = self.content
        if content is None or not liked or k < 4:
            return picked
        novel = self.novel_for(model, known, content)
        if not novel.ids:
            return picked
        depth = 4 * k  # the closest items that compete for the places
        # Novel items are derived from (champion, content index): a ranking made for both still holds.
        if ranked is None or ranked.novel.model is not model or ranked.novel.content is not content:
            ranked = self.rank(novel, content.profile(liked, weights), depth)
        chosen = self._choose(novel, ranked, depth, catalog, picked, k, category, blocked)
        if len(chosen) < k // 4 and not ranked.complete and len(ranked.rows) < depth:
            ranked = self.rank(novel, content.profile(liked, weights), depth)
            chosen = self._choose(novel, ranked, depth, catalog, picked, k, category, blocked)
        if not chosen:
            return picked
        keep = min(len(picked.item_ids), k - len(chosen))
        return Picked(
            [*picked.item_ids[:keep], *(i for i, _ in chosen)],
            [*picked.scores[:keep], *(s for _, s in chosen)],
            [*picked.reasons[:keep], *(["content"] * len(chosen))],
        )

    @staticmethod
    def rank(novel: NovelItems, profile: np.ndarray | None, depth: int) -> Ranked:
        """The best `depth` novel rows by similarity to `profile`, those reaching MIN_SIMILARITY."""
        if profile is None:
            return Ranked(novel, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), True)
        sims = novel.vectors @ profile
        close = np.flatnonzero(sims >= MIN_SIMILARITY)
        if len(close) > depth:
            close = close[np.argpartition(-sims[close], depth - 1)[:depth]]
        order = close[np.argsort(-sims[close], kind="stable")]
        return Ranked(novel, order, sims[order], True)

    def _choose(
        self, novel: NovelItems, ranked: Ranked, depth: int, catalog: Catalog, picked: Picked, k: int,
        category: str | None, blocked: set[str],
    ) -> list[tuple[str, float]]:
        placed = self._placed_for(novel, catalog)
        usable, codes, ids, wanted = placed.usable, placed.codes, novel.ids, k // 4
        code = catalog.codes.get(category, -2) if category is not None else None
        chosen: list[tuple[str, float]] = []
        already = set(picked.item_ids)
        for j, sim in zip(ranked.rows[:depth].tolist(), ranked.sims[:depth].tolist(), strict=True):
            if not usable[j] or (code is not None and codes[j] != code):
                continue
            item_id = ids[j]
            if item_id in blocked or item_id in already:
                continue
            chosen.append((item_id, sim))
            if len(chosen) >= wanted:
                break
        return chosen

    def neighbours(self, catalog: Catalog, item_id: str, k: int) -> Picked | None:
        """The available items whose content is closest to `item_id`'s (for an item the champion lacks)."""
        content = self.content
        if content is None or item_id not in content.position:
            return None
        sims = content.vectors @ content.vectors[content.position[item_id]]
        pos = catalog.positions(np.asarray(content.ids, dtype=object))
        ok = (pos >= 0) & (sims >= MIN_SIMILARITY)
        ok[pos >= 0] &= catalog.available[pos[pos >= 0]]
        ok[content.position[item_id]] = False
        top_idx, top_scores = top(np.flatnonzero(ok), sims[ok], k)
        if not len(top_idx):
            return None
        return Picked(
            [content.ids[i] for i in top_idx.tolist()], [float(s) for s in top_scores], ["content"] * len(top_idx)
        )
