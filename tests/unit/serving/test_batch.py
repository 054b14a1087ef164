"""A batch job's list is served only through the live path's filters, and only when k items survive them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recstack.serving.batch import (
    BatchAnswer,
    LoadedVersions,
    batch_key,
    choose,
    decode,
    encode,
    load_cache,
    loaded_key,
    model_label,
)
from recstack.storage.cache import MemoryCache

# Model items i0…i5; i3 unavailable; categories: i0, i2, i4 jazz (0), the others rock (1).
POSITIONS = {f"i{n}": n for n in range(6)}
AVAILABLE = np.array([True, True, True, False, True, True])
CATEGORY = np.array([0, 1, 0, 1, 0, 1], dtype=np.int32)
ANSWER = BatchAnswer(["i0", "i1", "i2", "i3", "i4", "i5"], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def pick(k: int, skip: set[str] | None = None, category: int | None = None,
         seen: list[int] | None = None, answer: BatchAnswer = ANSWER) -> list[str] | None:
    chosen = choose(answer, k, skip or set(), POSITIONS, AVAILABLE, CATEGORY, category,
                    None if seen is None else np.array(seen, dtype=np.int32))
    return None if chosen is None else [f"i{i}" for i in chosen[0]]


def test_the_batch_order_is_kept_with_its_scores() -> None:
    assert choose(ANSWER, 3, set(), POSITIONS, AVAILABLE, CATEGORY) == ([0, 1, 2], [0.9, 0.8, 0.7])


def test_history_and_exclude_items_are_skipped() -> None:
    assert pick(3, skip={"i0", "i2"}) == ["i1", "i4", "i5"]


def test_unavailable_and_unknown_items_are_skipped() -> None:
    with_unknown = BatchAnswer(["gone", *ANSWER.item_ids], [1.0, *ANSWER.scores])
    assert pick(4, answer=with_unknown) == ["i0", "i1", "i2", "i4"]


def test_the_category_filter_applies() -> None:
    assert pick(3, category=0) == ["i0", "i2", "i4"]
    assert pick(2, category=1) == ["i1", "i5"]


def test_training_items_are_skipped_even_if_the_batch_kept_them() -> None:
    assert pick(2, seen=[1, 2]) == ["i0", "i4"]


def test_fewer_than_k_survivors_is_no_answer() -> None:
    assert pick(5) == ["i0", "i1", "i2", "i4", "i5"]
    assert pick(6) is None
    assert pick(3, category=1) is None
    assert pick(4, skip={"i0"}) == ["i1", "i2", "i4", "i5"] and pick(5, skip={"i0"}) is None


def test_keys_name_the_model_version() -> None:
    assert batch_key(model_label("als_spark", 3), "u1") == "batch:als_spark3:u1"
    assert batch_key(model_label("als_spark", 3), "u1") != batch_key(model_label("als_spark", 4), "u1")


def test_load_cache_writes_each_users_list_in_rank_order() -> None:
    rows = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "item_id": ["b", "c", "a"], "rank": [2, 1, 1],
                         "score": [0.5, 0.7, 0.9]})
    cache = MemoryCache()
    assert load_cache(rows, cache, "als1", 60.0) == 2
    body = cache.get("batch:als1:u1")
    assert body is not None and decode(body) == BatchAnswer(["a", "b"], [0.9, 0.5])
    assert decode(encode(ANSWER)) == ANSWER
    assert cache.get(loaded_key("als1")) is not None and cache.get(loaded_key("als2")) is None


def test_a_versions_marker_is_asked_for_once_per_recheck_interval() -> None:
    now = [0.0]
    asked: list[str] = []
    present: set[str] = set()

    def get(key: str) -> bytes | None:
        asked.append(key)
        return b"1" if key in present else None

    versions = LoadedVersions(recheck_s=10.0, clock=lambda: now[0])
    assert not versions.loaded("als1", get) and not versions.loaded("als1", get)
    present.add(loaded_key("als1"))
    now[0] = 9.9
    assert not versions.loaded("als1", get)
    now[0] = 10.0
    assert versions.loaded("als1", get) and versions.loaded("als1", get)
    assert not versions.loaded("als2", get), "another version is asked for at once"
    assert asked == [loaded_key("als1"), loaded_key("als1"), loaded_key("als2")]


def test_a_malformed_value_is_no_answer() -> None:
    for body in (b"not json", b'{"a": 1}', b"[[1]]", b'[["i1", "x"]]'):
        assert decode(body) is None, body
