"""SequenceKNN meets the Recommender contract; its co-occurrence counts items close in each user's history."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recstack.models.sequence_knn import SequenceKNN, sequence_cooccurrence
from recstack.testing.recommender import RecommenderContract


class TestSequenceKNN(RecommenderContract):
    model_class = SequenceKNN
    ndcg_floor = 0.2


def test_neighbours_follow_time_order_not_row_order() -> None:
    # One user watched a, b, c in that order (rows shuffled); window 1 links only a-b and b-c.
    frame = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "v", "v"],
            "item_id": ["c", "a", "b", "a", "b"],
            "timestamp": [3_000, 1_000, 2_000, 1_000, 2_000],
        }
    )
    model = SequenceKNN(window=1, beta=0.0).fit(frame)
    sim = model.similarity_.toarray()
    a, b, c = (int(model.items.index(x)[0]) for x in ("a", "b", "c"))
    assert sim[a, b] > 0 and sim[b, c] > 0
    assert sim[a, c] == 0
    assert np.isclose(sim[a, b], sim[b, a], rtol=0.5)


def test_with_a_time_scale_pairs_count_by_seconds_apart_and_far_ones_drop() -> None:
    # u took up a, b in the same second, c a minute later, d a day later (ms timestamps, rows shuffled).
    frame = pd.DataFrame(
        {
            "user_id": ["u"] * 4,
            "item_id": ["d", "b", "a", "c"],
            "timestamp": [86_400_000, 0, 0, 60_000],
            "weight": [1.0] * 4,
        }
    )
    model = SequenceKNN()
    data = model._training_data(frame, None, None)
    idx = {x: int(data.items.index(x)[0]) for x in "abcd"}
    by_time = sequence_cooccurrence(data, window=10, time_scale_s=60.0).toarray()
    assert by_time[idx["a"], idx["b"]] == 1.0
    assert np.isclose(by_time[idx["a"], idx["c"]], np.exp(-1.0))
    assert by_time[idx["c"], idx["d"]] == 0.0  # a day apart: beyond ten time scales
    np.testing.assert_allclose(by_time, by_time.T)
    by_steps = sequence_cooccurrence(data, window=10).toarray()
    assert by_steps[idx["c"], idx["d"]] > 0.0 and by_steps[idx["a"], idx["b"]] == 1.0
