"""Id vocabularies and the sparse users×items matrices models train on.

External ids are strings at every boundary; inside a model, users and items are contiguous integer indices.
A `Vocabulary` is the one place that translation happens, and it persists without pickle (JSON or npz) so a
saved model can be loaded by a process that trusts nothing in the file but data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.errors import ConfigurationError

__all__ = ["Vocabulary", "id_array", "interaction_matrix", "seen_matrix"]

logger = logging.getLogger(__name__)


def id_array(ids: Iterable[str] | str | np.ndarray | pd.Series | pd.Index) -> np.ndarray:
    """Ids as an object array of str; a lone string is one id, not a sequence of characters."""
    if isinstance(ids, str):
        return np.array([ids], dtype=object)
    if isinstance(ids, pd.Series | pd.Index):
        return ids.astype(str).to_numpy(dtype=object)
    if isinstance(ids, np.ndarray):
        return ids.astype(str).astype(object)
    return np.array([str(i) for i in ids], dtype=object)


class Vocabulary:
    """A bijection between external string ids and the indices `0 … len(self) - 1`.

    The order of ids is the order of indices and never changes for an existing id: `extend` appends new ids
    at the end, so matrices built with the old vocabulary stay valid prefixes. Lookups are vectorised; an
    unknown id maps to -1 rather than raising, because unknown users and items are a normal case at serving
    time (cold start), not an error.
    """

    __slots__ = ("_index",)

    def __init__(self, ids: Iterable[str] | np.ndarray | pd.Series | pd.Index = ()) -> None:
        """Take `ids` in the given order as indices 0, 1, …; duplicates are a `ConfigurationError`."""
        index = pd.Index(id_array(ids), dtype=object)
        if not index.is_unique:
            dupes = index[index.duplicated()].unique()[:5].tolist()
            raise ConfigurationError(f"vocabulary ids must be unique; repeated: {dupes}")
        self._index = index

    @classmethod
    def from_ids(cls, *columns: Iterable[str] | np.ndarray | pd.Series) -> Vocabulary:
        """The sorted distinct ids found in one or more columns (sorted so the result ignores row order)."""
        parts = [id_array(c) for c in columns]
        merged = np.concatenate(parts) if parts else np.array([], dtype=object)
        return cls(np.unique(merged.astype(str)))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and item_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    def __hash__(self) -> int:
        return hash(tuple(self._index))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"

    @property
    def ids(self) -> np.ndarray:
        """All ids in index order, as an object array of str (a copy)."""
        return self._index.to_numpy(dtype=object, copy=True)

    def index(self, ids: Iterable[str] | str | np.ndarray | pd.Series) -> np.ndarray:
        """Indices (int64) of `ids`, with -1 wherever an id is unknown."""
        return self._index.get_indexer(pd.Index(id_array(ids), dtype=object)).astype(np.int64)

    def id(self, index: int) -> str:
        """The external id at one index; IndexError outside `0 … len - 1`."""
        if not 0 <= index < len(self._index):
            raise IndexError(f"index {index} outside vocabulary of {len(self)} ids")
        return str(self._index[index])

    def ids_of(self, indices: np.ndarray | Iterable[int]) -> np.ndarray:
        """External ids (object array of str) at the given indices."""
        return self._index.to_numpy(dtype=object)[np.asarray(indices, dtype=np.int64)]

    def extend(self, ids: Iterable[str] | np.ndarray | pd.Series) -> Vocabulary:
        """A new vocabulary with the unseen `ids` appended (sorted) after the existing ones."""
        new = np.unique(id_array(ids).astype(str))
        new = new[self.index(new) < 0]
        return Vocabulary(np.concatenate([self._index.to_numpy(dtype=object), new.astype(object)]))

    def to_array(self) -> np.ndarray:
        """Ids as a fixed-width unicode array, the form `np.savez` stores without pickle."""
        if len(self._index) == 0:
            return np.array([], dtype="<U1")
        return np.asarray(self._index.to_numpy(dtype=object).astype(str))

    @classmethod
    def from_array(cls, array: np.ndarray) -> Vocabulary:
        """Inverse of `to_array`."""
        return cls(array.astype(str))

    def save(self, path: str | Path) -> None:
        """Write to `path`: JSON (`{"ids": […]}`) when it ends in .json, otherwise npz (key `ids`)."""
        path = Path(path)
        if path.suffix == ".json":
            path.write_text(json.dumps({"ids": self._index.tolist()}, ensure_ascii=False), encoding="utf-8")
        else:
            with path.open("wb") as fh:
                np.savez(fh, allow_pickle=False, ids=self.to_array())

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by `save`; npz files are read with pickle disabled."""
        path = Path(path)
        if path.suffix == ".json":
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls(payload["ids"])
        with np.load(path, allow_pickle=False) as data:
            return cls.from_array(data["ids"])


def _indices(
    frame: pd.DataFrame, users: Vocabulary, items: Vocabulary
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column indices of the frame's rows, and the mask of rows both vocabularies know."""
    rows = users.index(frame["user_id"])
    cols = items.index(frame["item_id"])
    known = (rows >= 0) & (cols >= 0)
    dropped = int((~known).sum())
    if dropped:
        logger.debug("dropped %d interactions whose user or item is not in the vocabulary", dropped)
    return rows[known], cols[known], known


def interaction_matrix(
    frame: pd.DataFrame, users: Vocabulary, items: Vocabulary, weight: str | None = "weight"
) -> sp.csr_matrix:
    """The users×items CSR matrix (float32) of `frame[weight]`, summed over repeated (user, item) pairs.

    `frame` needs `user_id` and `item_id`; with `weight=None` (or the column absent) every row counts 1.
    Rows whose user or item the vocabularies lack are dropped. Pairs whose weights sum to exactly zero are
    removed, so the matrix's structure is exactly the pairs carrying signal. Indices are sorted.
    """
    rows, cols, known = _indices(frame, users, items)
    if weight is not None and weight in frame:
        values = frame[weight].to_numpy(dtype=np.float64)[known]
        values = np.nan_to_num(values, nan=0.0)
    else:
        values = np.ones(len(rows), dtype=np.float64)
    # Sum in float64: float32 loses whole units once a popular pair's total passes 2**24.
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(users), len(items)), dtype=np.float64)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    out = matrix.astype(np.float32)
    out.sort_indices()
    return out


def seen_matrix(frame: pd.DataFrame, users: Vocabulary, items: Vocabulary) -> sp.csr_matrix:
    """A users×items CSR pattern (bool) of every pair present in `frame`, whatever its weight.

    This is what "exclude seen items" excludes: a skipped or disliked item counts as seen even though its
    training weight may be negative or zero.
    """
    rows, cols, _ = _indices(frame, users, items)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(users), len(items)), dtype=bool
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix
