"""Vocabulary and CSR construction, on hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.processing.matrix import Vocabulary, interaction_matrix, seen_matrix


def test_vocabulary_maps_both_ways_and_unknown_is_minus_one() -> None:
    vocab = Vocabulary(["b", "a", "c"])
    assert len(vocab) == 3
    assert vocab.index(["a", "c", "zzz", "b"]).tolist() == [1, 2, -1, 0]
    assert vocab.index("c").tolist() == [2]
    assert vocab.id(0) == "b"
    assert vocab.ids_of([2, 0]).tolist() == ["c", "b"]
    assert "a" in vocab and "zzz" not in vocab and 1 not in vocab
    with pytest.raises(IndexError):
        vocab.id(3)


def test_from_ids_is_sorted_distinct_and_ignores_row_order() -> None:
    assert Vocabulary.from_ids(["x", "b", "x"], pd.Series(["a", "b"])).ids.tolist() == ["a", "b", "x"]
    assert Vocabulary.from_ids(["b", "a"]) == Vocabulary.from_ids(["a", "b"])
    assert Vocabulary.from_ids([10, 2]).ids.tolist() == ["10", "2"]


def test_duplicates_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="unique"):
        Vocabulary(["a", "a"])


def test_extend_keeps_existing_indices() -> None:
    vocab = Vocabulary(["m", "a"]).extend(["z", "a", "b"])
    assert vocab.ids.tolist() == ["m", "a", "b", "z"]


@pytest.mark.parametrize("name", ["vocab.json", "vocab.npz"])
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    vocab = Vocabulary(["ü-1", "plain", "with space", ""])
    vocab.save(tmp_path / name)
    assert Vocabulary.load(tmp_path / name) == vocab
    assert Vocabulary.load(tmp_path / name).ids.tolist() == ["ü-1", "plain", "with space", ""]


def test_empty_vocabulary_round_trips(tmp_path: Path) -> None:
    Vocabulary().save(tmp_path / "e.npz")
    assert len(Vocabulary.load(tmp_path / "e.npz")) == 0


def test_interaction_matrix_sums_duplicates_and_drops_unknown_and_zero() -> None:
    users, items = Vocabulary(["u1", "u2"]), Vocabulary(["a", "b", "c"])
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u2", "ghost"],
            "item_id": ["a", "a", "b", "c", "c", "a"],
            "weight": [1.0, 2.5, 4.0, 1.0, -1.0, 9.0],
        }
    )
    matrix = interaction_matrix(frame, users, items)
    assert matrix.dtype == np.float32 and matrix.shape == (2, 3)
    assert matrix.toarray().tolist() == [[3.5, 0.0, 0.0], [0.0, 4.0, 0.0]]
    assert matrix.nnz == 2
    assert interaction_matrix(frame, users, items, weight=None).toarray().tolist() == [[2, 0, 0], [0, 1, 2]]


def test_seen_matrix_keeps_every_pair_whatever_its_weight() -> None:
    users, items = Vocabulary(["u1"]), Vocabulary(["a", "b"])
    frame = pd.DataFrame(
        {"user_id": ["u1", "u1", "u1"], "item_id": ["a", "b", "b"], "weight": [1.0, 1.0, -1.0]}
    )
    seen = seen_matrix(frame, users, items)
    assert seen.dtype == bool and seen.toarray().tolist() == [[True, True]]
