"""Every metric against a case small enough to compute by hand; the arithmetic is written out beside it.

The shared case, k = 3 (rows deliberately out of rank order):

    user  list (rank order)  relevant          hits     |rel|
    u1    a b c d            a c x             1 0 1    3
    u2    e f g              g                 0 0 1    1
    u3    (none)             a                 -        1
    u4    h                  (not in test)     ignored
    u5    a b c              a b y z           1 1 0    4

Averages are over the four test users u1, u2, u3, u5; u3 scores zero everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigurationError
from recstack.evaluation import metrics as m

LOG2_3 = math.log2(3)
IDCG_3 = 1 + 1 / LOG2_3 + 1 / 2  # ideal DCG with three hits: 1/log2(2) + 1/log2(3) + 1/log2(4)


def recs_frame(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, item, r + 1, 1.0 / (r + 1)) for u, items in lists.items() for r, item in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def pairs_frame(pairs: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(u, i) for u, items in pairs.items() for i in items], columns=["user_id", "item_id"])


@pytest.fixture
def recs() -> pd.DataFrame:
    return recs_frame({"u1": ["a", "b", "c", "d"], "u2": ["e", "f", "g"], "u4": ["h"], "u5": ["a", "b", "c"]})


@pytest.fixture
def relevant() -> pd.DataFrame:
    # "a" twice for u1: duplicates count once.
    return pairs_frame({"u1": ["a", "c", "x", "a"], "u2": ["g"], "u3": ["a"], "u5": ["a", "b", "y", "z"]})


def test_hit_matrix(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    hm = m.hit_matrix(recs, relevant, k=3)
    assert list(hm.users) == ["u1", "u2", "u3", "u5"]
    assert hm.hits.astype(int).tolist() == [[1, 0, 1], [0, 0, 1], [0, 0, 0], [1, 1, 0]]
    assert hm.n_relevant.tolist() == [3, 1, 1, 4]


def test_precision(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    # u1 2/3, u2 1/3, u3 0, u5 2/3 -> (5/3) / 4 = 5/12
    assert m.precision(recs, relevant, k=3) == pytest.approx(5 / 12)


def test_recall(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    # u1 2/3, u2 1/1, u3 0, u5 2/4 -> (2/3 + 1 + 1/2) / 4 = (13/6) / 4 = 13/24
    assert m.recall(recs, relevant, k=3) == pytest.approx(13 / 24)


def test_ndcg(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    # u1: DCG = 1/log2(2) + 1/log2(4) = 1.5, ideal over min(3, 3) = 3 hits -> 1.5 / IDCG_3
    # u2: DCG = 1/log2(4) = 0.5, ideal over min(1, 3) = 1 hit = 1 -> 0.5
    # u5: DCG = 1 + 1/log2(3), ideal over min(4, 3) = 3 hits -> (1 + 1/log2 3) / IDCG_3
    u1 = 1.5 / IDCG_3
    u5 = (1 + 1 / LOG2_3) / IDCG_3
    assert u1 == pytest.approx(0.7039180890341347)
    assert m.ndcg(recs, relevant, k=3) == pytest.approx((u1 + 0.5 + 0 + u5) / 4)


def test_map_both_denominators(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    # precision at each hit rank, summed:  u1 P@1 + P@3 = 1 + 2/3 = 5/3;  u2 P@3 = 1/3;  u5 P@1 + P@2 = 2
    # "min" divides by min(|rel|, 3): u1 (5/3)/3 = 5/9, u2 (1/3)/1, u5 2/3  -> (5/9 + 1/3 + 2/3)/4 = 7/18
    # "all" divides by |rel|:        u1 (5/3)/3 = 5/9, u2 (1/3)/1, u5 2/4  -> (5/9 + 1/3 + 1/2)/4 = 25/72
    assert m.map_at_k(recs, relevant, k=3) == pytest.approx(7 / 18)
    assert m.map_at_k(recs, relevant, k=3, denominator="all") == pytest.approx(25 / 72)
    with pytest.raises(ConfigurationError):
        m.map_at_k(recs, relevant, k=3, denominator="some")  # type: ignore[arg-type]


def test_hit_rate_and_mrr(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    # hits for u1, u2, u5 -> 3/4; first hit ranks 1, 3, none, 1 -> (1 + 1/3 + 0 + 1) / 4 = 7/12
    assert m.hit_rate(recs, relevant, k=3) == pytest.approx(3 / 4)
    assert m.mrr(recs, relevant, k=3) == pytest.approx(7 / 12)


def test_ranking_metrics_agrees_with_single_functions(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    together = m.ranking_metrics(recs, relevant, k=3)
    assert set(together) == set(m.ACCURACY_METRICS)
    assert together["ndcg"] == pytest.approx(m.ndcg(recs, relevant, 3))
    assert together["map_all"] == pytest.approx(25 / 72)
    assert together["precision"] == pytest.approx(5 / 12)


def test_k_cuts_the_list(recs: pd.DataFrame, relevant: pd.DataFrame) -> None:
    # k = 1: hits u1 (a), u5 (a) -> precision (1 + 1) / 4 = 1/2, recall (1/3 + 1/4) / 4 = 7/48
    assert m.precision(recs, relevant, k=1) == pytest.approx(1 / 2)
    assert m.recall(recs, relevant, k=1) == pytest.approx(7 / 48)
    with pytest.raises(ConfigurationError):
        m.precision(recs, relevant, k=0)


def test_perfect_list_scores_one() -> None:
    recs = recs_frame({"u": ["a", "b"]})
    relevant = pairs_frame({"u": ["a", "b"]})
    assert m.ranking_metrics(recs, relevant, k=2) == pytest.approx(
        {"precision": 1, "recall": 1, "ndcg": 1, "map": 1, "map_all": 1, "hit_rate": 1, "mrr": 1}
    )


def test_catalogue_coverage(recs: pd.DataFrame) -> None:
    # first 3 of each list: a b c | e f g | h | a b c -> {a, b, c, e, f, g, h} = 7 items
    catalogue = list("abcdefghij")  # 10 items; "d" is 4th for u1, outside k = 3
    assert m.catalogue_coverage(recs, catalogue, k=3) == pytest.approx(7 / 10)
    assert m.catalogue_coverage(recs, 14, k=3) == pytest.approx(7 / 14)
    # k = 4 adds "d": 8 / 10; items outside the catalogue do not count: {a..d} only -> 4 / 4
    assert m.catalogue_coverage(recs, catalogue, k=4) == pytest.approx(8 / 10)
    assert m.catalogue_coverage(recs, list("abcd"), k=4) == pytest.approx(1.0)


def test_novelty() -> None:
    # 4 training users; i1 seen by all 4 (p = 1, 0 bits), i2 by 1 (p = 1/4, 2 bits), i3 by 2 (1 bit);
    # "new" is not in train: counts as one user -> 2 bits.
    train = pairs_frame({"U1": ["i1", "i2", "i3"], "U2": ["i1", "i3"], "U3": ["i1"], "U4": ["i1", "i1"]})
    recs = recs_frame({"A": ["i1", "i2"], "B": ["i3"], "C": ["new", "i1"]})
    # A: (0 + 2) / 2 = 1;  B: 1;  C: (2 + 0) / 2 = 1  -> mean 1
    assert m.novelty(recs, train, k=2) == pytest.approx(1.0)
    # k = 1: A 0, B 1, C 2 -> 1
    assert m.novelty(recs_frame({"A": ["i1", "i2"], "B": ["i2"]}), train, k=1) == pytest.approx(1.0)


def test_intra_list_diversity_vectors_and_categories() -> None:
    vectors = pd.DataFrame({"x": [1.0, 0.0, 1.0], "y": [0.0, 1.0, 1.0]}, index=["i1", "i2", "i3"])
    # [i1, i2]: cosine 0 -> distance 1
    # [i1, i3]: cosine 1/sqrt 2 -> distance 1 - 0.70711 = 0.29289
    # [i1, i2, i3]: cosines 0, 1/sqrt2, 1/sqrt2 -> mean 0.47140 -> distance 0.52860
    # [i2, "unknown"]: one described item -> skipped
    recs = recs_frame({"A": ["i1", "i2"], "B": ["i1", "i3"], "C": ["i1", "i2", "i3"], "D": ["i2", "unknown"]})
    expected = (1 + (1 - 1 / math.sqrt(2)) + (1 - math.sqrt(2) / 3)) / 3
    assert m.intra_list_diversity(recs, k=3, item_vectors=vectors) == pytest.approx(expected)
    categories = {"i1": ["Drama"], "i2": ["Comedy"], "i3": ["Drama", "Comedy"]}
    assert m.intra_list_diversity(recs, k=3, item_categories=categories) == pytest.approx(expected)
    with pytest.raises(ConfigurationError):
        m.intra_list_diversity(recs, k=3)


def test_long_tail_items_and_share() -> None:
    # 10 interactions: i1 6, i2 2, i3 1, i4 1.  Shares sorted: i1 0.6, i2 0.2, ...
    train = pd.DataFrame({"user_id": [f"u{n}" for n in range(10)], "item_id": ["i1"] * 6 + ["i2"] * 2 + ["i3", "i4"]})
    # head_share 0.5: i1 alone makes 0.6 >= 0.5 -> head {i1}; head_share 0.7: i1 + i2 = 0.8 -> head {i1, i2}
    assert m.long_tail_items(train, 0.5) == {"i2", "i3", "i4"}
    assert m.long_tail_items(train, 0.7) == {"i3", "i4"}
    recs = recs_frame({"A": ["i1", "i3"], "B": ["i2", "i4"]})
    # head {i1}: 3 of 4 recommended pairs are tail -> 0.75
    assert m.long_tail_share(recs, train, k=2, head_share=0.5) == pytest.approx(0.75)


def test_long_tail_slice_keeps_tail_relevance_only() -> None:
    train = pd.DataFrame({"user_id": ["x"] * 6 + ["y"] * 4, "item_id": ["i1"] * 6 + ["i2"] * 2 + ["i3", "i4"]})
    recs = recs_frame({"A": ["i1", "i3"], "B": ["i1", "i2"]})
    relevant = pairs_frame({"A": ["i1", "i3"], "B": ["i1"]})
    sliced_recs, sliced_rel = m.long_tail_slice(recs, relevant, train, head_share=0.5)
    # B has no tail item left and drops out; A: relevant {i3}, list i1 i3 -> recall 1, precision 1/2
    assert set(sliced_rel["user_id"]) == {"A"}
    assert m.recall(sliced_recs, sliced_rel, k=2) == pytest.approx(1.0)
    assert m.precision(sliced_recs, sliced_rel, k=2) == pytest.approx(0.5)


def test_cold_user_slice() -> None:
    train = pairs_frame({"warm": ["a", "b", "c"], "cold": ["a"]})
    recs = recs_frame({"warm": ["d"], "cold": ["d"], "new": ["e"]})
    relevant = pairs_frame({"warm": ["d"], "cold": ["x"], "new": ["e"]})
    sliced_recs, sliced_rel = m.cold_user_slice(recs, relevant, train, max_train_interactions=2)
    # users with <= 2 training rows, unseen users included: cold (miss) and new (hit) -> hit rate 1/2
    assert set(sliced_rel["user_id"]) == {"cold", "new"}
    assert m.hit_rate(sliced_recs, sliced_rel, k=1) == pytest.approx(0.5)


def test_no_recommendations_at_all_scores_zero() -> None:
    empty = pd.DataFrame({"user_id": [], "item_id": [], "rank": []})
    relevant = pairs_frame({"u": ["a"]})
    assert m.ranking_metrics(empty, relevant, k=5) == pytest.approx(dict.fromkeys(m.ACCURACY_METRICS, 0.0))
    assert np.isfinite(m.catalogue_coverage(empty, ["a"], k=5))
