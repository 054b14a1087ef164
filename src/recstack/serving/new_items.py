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

__all__ = ["NewItems"]

MIN_SIMILARITY: Final = 0.3
# The newest items the champion lacks that compete for a place in a user's answer (bounds request cost).
NOVEL_ITEMS: Final = 1000


@dataclass(frozen=True)
class _Novel:
    """The newest items with content but no place in the champion (added since it was trained)."""

    model: object
    content: ContentIndex
    ids: list[str]
    vectors: np.ndarray


class NewItems:
    """The swappable content index plus the champion-specific set of items it alone can recommend."""

    def __init__(self) -> None:
        self.content: ContentIndex | None = None
        self._novel: _Novel | None = None

    def _novel_for(self, model: object, known: Mapping[str, int], content: ContentIndex) -> _Novel:
        novel = self._novel
        if novel is not None and novel.model is model and novel.content is content:
            return novel
        rows = [i for i, item_id in enumerate(content.ids) if item_id not in known][-NOVEL_ITEMS:]
        novel = _Novel(model, content, [content.ids[i] for i in rows], content.vectors[rows])
        self._novel = novel
        return novel

    def mix(
        self, model: object, known: Mapping[str, int], catalog: Catalog, picked: Picked, k: int, category: str | None,
        blocked: set[str], liked: list[str], weights: list[float] | None,
    ) -> Picked:
        """`picked` with up to a quarter of its places given to items the champion cannot know (new since
        training) whose content is close to `liked`, reason "content"."""
        content = self.content
        if content is None or not liked or k < 4:
            return picked
        novel = self._novel_for(model, known, content)
        if not novel.ids:
            return picked
        profile = content.profile(liked, weights)
        if profile is None:
            return picked
        sims = novel.vectors @ profile
        want = min(len(sims), 4 * k)
        head = np.argpartition(-sims, want - 1)[:want] if len(sims) > want else np.arange(len(sims))
        order = head[np.argsort(-sims[head], kind="stable")]
        taken = blocked | set(picked.item_ids)
        code = catalog.codes.get(category, -2) if category is not None else None
        lookup = catalog.lookup
        chosen: list[tuple[str, float]] = []
        for j in order.tolist():
            if sims[j] < MIN_SIMILARITY or len(chosen) >= k // 4:
                break
            item_id = novel.ids[j]
            pos = lookup.get(item_id, -1)
            if item_id in taken or pos < 0 or not catalog.available[pos]:
                continue
            if code is not None and catalog.category_code[pos] != code:
                continue
            chosen.append((item_id, float(sims[j])))
        if not chosen:
            return picked
        keep = min(len(picked.item_ids), k - len(chosen))
        return Picked(
            [*picked.item_ids[:keep], *(i for i, _ in chosen)],
            [*picked.scores[:keep], *(s for _, s in chosen)],
            [*picked.reasons[:keep], *(["content"] * len(chosen))],
        )

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
