"""Item-item neighbours from order of consumption: items that users take up close together in time.

Each user's interactions are put in time order; every pair of items at most `window` steps apart in some
user's sequence adds `1 / distance` to their (symmetric) co-occurrence. The matrix is normalised as
`C_ij / (deg_i^½ · deg_j^β)`, and a user's score is `X_u · C`. Where plain co-occurrence says "the same
people liked both", this says "people took up both at about the same moment" — sessions, a catalogue's
release order, an interface that shows items in batches — which a co-occurrence model cannot see.

Without a `timestamp` column the rows' order is taken as the time order. Memory is O(pairs) ≤
interactions × window, and each item keeps only its `neighbours` strongest links.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recstack.models._neighbours import NeighbourhoodRecommender, top_neighbours
from recstack.models.base import RecommenderConfig, TrainingData, Trial

__all__ = ["SequenceKNN", "SequenceKNNConfig", "sequence_cooccurrence"]

_BLOCK_CELLS = 1 << 23


class SequenceKNNConfig(RecommenderConfig):
    """`window`: how many steps apart two items may be; `beta`: popularity penalty on the target item."""

    window: int = Field(default=10, ge=1)
    beta: float = Field(default=0.5, ge=0.0)
    neighbours: int = Field(default=300, ge=1)
    time_scale_s: float | None = Field(default=None, gt=0.0)


def sequence_cooccurrence(data: TrainingData, window: int, time_scale_s: float | None = None) -> sp.csr_matrix:
    """Symmetric items×items matrix of item pairs at most `window` steps apart in a user's time-ordered
    history (row order breaks ties and stands in for missing timestamps), each pair adding `1 / steps`.

    With `time_scale_s` and timestamps (epoch milliseconds), a pair adds `exp(−seconds apart / time_scale_s)`
    instead: people rate or watch in sittings, many items within the same second, so clock time says which
    items were taken up together where step counts within a burst follow arbitrary tie order. Pairs further
    apart than ten time scales are dropped. Rows with a non-positive weight (skips, dislikes) are left out;
    the diagonal is zero."""
    frame = data.interactions
    keep = frame["weight"].to_numpy() > 0
    order_keys = [np.arange(len(frame))]
    times: np.ndarray | None = None
    if "timestamp" in frame:
        times = np.nan_to_num(pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(np.float64))
        order_keys.append(times)
    order_keys.append(frame["user_idx"].to_numpy())
    order = np.lexsort(order_keys)
    order = order[keep[order]]
    users = frame["user_idx"].to_numpy()[order]
    items = frame["item_idx"].to_numpy()[order]
    seconds = times[order] / 1000.0 if times is not None and time_scale_s is not None else None
    scale = float(time_scale_s or 1.0)
    n = len(data.items)
    rows, cols, values = [], [], []
    for distance in range(1, window + 1):
        same = users[distance:] == users[:-distance]
        if seconds is None:
            weight = np.full(int(same.sum()), 1.0 / distance)
        else:
            apart = np.abs(seconds[distance:] - seconds[:-distance])
            same &= apart <= 10.0 * scale
            weight = np.exp(-apart[same] / scale)
        if not same.any():
            break
        rows.append(items[:-distance][same])
        cols.append(items[distance:][same])
        values.append(weight)
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float64)
    matrix = sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float64
    )
    matrix = sp.csr_matrix(matrix + matrix.T)
    matrix.setdiag(0.0)
    matrix.eliminate_zeros()
    return matrix


class SequenceKNN(NeighbourhoodRecommender[SequenceKNNConfig]):
    """Co-occurrence within a sliding window over each user's time-ordered history."""

    name: ClassVar[str] = "sequence_knn"
    needs_timestamps: ClassVar[bool] = True
    config_type: ClassVar[type[SequenceKNNConfig]] = SequenceKNNConfig

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        n = len(data.items)
        matrix = sequence_cooccurrence(data, cfg.window, cfg.time_scale_s)
        degree = np.asarray(matrix.sum(axis=1)).ravel()
        left = np.power(np.maximum(degree, 1e-12), -0.5)
        right = np.power(np.maximum(degree, 1e-12), -cfg.beta)
        scaled = sp.csr_matrix(sp.diags(left) @ matrix @ sp.diags(right))
        step = max(1, _BLOCK_CELLS // max(n, 1))
        blocks = [top_neighbours(scaled[s : s + step].toarray(), cfg.neighbours) for s in range(0, n, step)]
        self.similarity_ = sp.csr_matrix(sp.vstack(blocks, format="csr"), dtype=np.float32)
        self.user_items_ = sp.csr_matrix(data.matrix > 0, dtype=np.float32)

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "window": trial.suggest_int("window", 1, 50, log=True),
            "beta": trial.suggest_float("beta", 0.0, 1.0),
            "neighbours": trial.suggest_int("neighbours", 20, 1000, log=True),
        }
