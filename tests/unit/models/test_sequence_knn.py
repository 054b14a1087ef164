"""SequenceKNN meets the Recommender contract; its co-occurrence counts items close in each user's history."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recstack.models.sequence_knn import SequenceKNN

from .contract import RecommenderContract


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
