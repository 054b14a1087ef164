"""Top-k selection over dense score blocks, shared by `recommend` and `similar_items`.

Scores are produced one block of query rows at a time (at most `BLOCK_CELLS` float32 cells, 64 MiB), so
asking for every user of a large catalogue never materialises a users × items matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["BLOCK_CELLS", "ranked_frame", "top_k"]

BLOCK_CELLS: Final = 1 << 24


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and scores of each row's `k` best finite scores, best first.

    `scores` is a dense (rows × columns) array where -inf (or NaN) marks an excluded column. Returns two
    (rows × min(k, columns)) arrays; slots beyond a row's count of finite scores hold index -1 and -inf.
    Ties are broken by column index, so equal inputs always give equal outputs.
    """
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    if kk <= 0:
        return np.empty((n_rows, 0), dtype=np.int64), np.empty((n_rows, 0), dtype=np.float32)
    clean = np.where(np.isnan(scores), -np.inf, scores)
    if kk < n_cols:
        candidates = np.argpartition(-clean, kk - 1, axis=1)[:, :kk]
    else:
        candidates = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    values = np.take_along_axis(clean, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=1)
    index = np.take_along_axis(candidates, order, axis=1).astype(np.int64)
    values = np.take_along_axis(values, order, axis=1)
    index[~np.isfinite(values)] = -1
    return index, values


def ranked_frame(
    query_ids: np.ndarray,
    query_idx: np.ndarray,
    item_ids: np.ndarray,
    k: int,
    scorer: Callable[[np.ndarray], np.ndarray],
    columns: tuple[str, str, str, str],
    exclude: sp.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
    exclude_self: bool = False,
    block_cells: int = BLOCK_CELLS,
) -> pd.DataFrame:
    """Score the queries block by block, mask, keep the top `k`, and return a frame with `columns`
    (query id, item id, 1-based rank, score), queries in the order given.

    `exclude` (queries' rows × items) masks each query's own pairs (seen items); `allowed` masks items
    for every query; `exclude_self` masks item `query_idx[i]` for query i (an item is not its own
    neighbour). `scorer(rows)` returns the dense (len(rows) × len(item_ids)) scores.
    """
    block = max(1, min(4096, block_cells // max(len(item_ids), 1)))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(query_idx), block):
        rows = query_idx[start : start + block]
        scores = np.array(scorer(rows), dtype=np.float32, copy=True)
        if exclude is not None:
            sub = exclude[rows]
            scores[np.repeat(np.arange(len(rows)), np.diff(sub.indptr)), sub.indices] = -np.inf
        if exclude_self:
            scores[np.arange(len(rows)), rows] = -np.inf
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        index, values = top_k(scores, k)
        valid = index >= 0
        # Valid cells are a prefix of each row (best first), so a cell's rank is its column + 1.
        ranks = np.broadcast_to(np.arange(1, index.shape[1] + 1), index.shape)[valid]
        parts.append(
            (
                np.repeat(query_ids[start : start + block], valid.sum(axis=1)),
                item_ids[index[valid]],
                ranks,
                values[valid].astype(np.float64),
            )
        )
    if not parts:
        dtypes = (object, object, np.int64, np.float64)
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, dtypes, strict=True)})
    queries, items, ranks, scores = (np.concatenate(p) for p in zip(*parts, strict=True))
    return pd.DataFrame(
        {
            columns[0]: queries.astype(object),
            columns[1]: items.astype(object),
            columns[2]: ranks.astype(np.int64),
            columns[3]: scores,
        }
    )
