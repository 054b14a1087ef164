"""A fitted model on disk: `model.json` plus npz files, never pickle.

Layout of a model directory:
- `model.json`: `format`, `class` (`module:Class`), `name`, `config`, `weighting`, `fit_seconds`;
- `users.npz`, `items.npz`: the id vocabularies;
- `seen.npz`: the users × items training pattern that `exclude_seen` uses (scipy's sparse npz);
- `state.npz`: the model's learned arrays, sparse ones flattened as `name::data|indices|indptr|shape`.
Every array is written and read with pickle disabled, so loading a file runs no code from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from recstack.errors import ConfigurationError
from recstack.processing.matrix import Vocabulary

__all__ = ["FORMAT_VERSION", "SavedModel", "read", "write"]

FORMAT_VERSION: Final = 1


@dataclass(frozen=True)
class SavedModel:
    meta: dict[str, Any]
    users: Vocabulary
    items: Vocabulary
    seen: sp.csr_matrix
    state: dict[str, Any]


def _pack(state: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            arrays[f"{name}::data"] = csr.data
            arrays[f"{name}::indices"] = csr.indices
            arrays[f"{name}::indptr"] = csr.indptr
            arrays[f"{name}::shape"] = np.asarray(csr.shape, dtype=np.int64)
        else:
            arrays[name] = np.asarray(value)
    return arrays


def _unpack(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, value in arrays.items():
        name, _, part = key.partition("::")
        if not part:
            state[name] = value
        elif part == "shape":
            state[name] = sp.csr_matrix(
                (arrays[f"{name}::data"], arrays[f"{name}::indices"], arrays[f"{name}::indptr"]),
                shape=tuple(int(x) for x in value),
            )
    return state


def write(directory: Path, saved: SavedModel) -> None:
    """Write `saved` into `directory` (created if needed); `meta` gets the format version."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_VERSION, **saved.meta}
    (directory / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    saved.users.save(directory / "users.npz")
    saved.items.save(directory / "items.npz")
    sp.save_npz(directory / "seen.npz", saved.seen)
    with (directory / "state.npz").open("wb") as fh:
        np.savez(fh, allow_pickle=False, **_pack(saved.state))


def read(directory: Path) -> SavedModel:
    """Read what `write` wrote; `ConfigurationError` for a missing directory or an unknown format."""
    try:
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"no saved model in {directory}") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise ConfigurationError(f"{directory}: unsupported model format {meta.get('format')!r}")
    with np.load(directory / "state.npz", allow_pickle=False) as arrays:
        state = _unpack({key: arrays[key] for key in arrays.files})
    return SavedModel(
        meta=meta,
        users=Vocabulary.load(directory / "users.npz"),
        items=Vocabulary.load(directory / "items.npz"),
        seen=sp.csr_matrix(sp.load_npz(directory / "seen.npz")),
        state=state,
    )
