"""SequenceEASE meets the Recommender contract and is exactly EASE when the sequence weight is zero."""

from __future__ import annotations

import numpy as np

from recstack.models.ease import EASE
from recstack.models.sequence_ease import SequenceEASE
from recstack.testing.recommender import Platform, RecommenderContract


class TestSequenceEASE(RecommenderContract):
    model_class = SequenceEASE
    ndcg_floor = 0.3


def test_zero_sequence_weight_is_ease(platform: Platform) -> None:
    plain = EASE(l2=200.0).fit(platform.train)
    sequenced = SequenceEASE(l2=200.0, l2_relative=False, l2_popularity_exponent=0.0, sequence_weight=0.0).fit(
        platform.train
    )
    users = np.arange(20)
    np.testing.assert_allclose(sequenced.score(users), plain.score(users), rtol=1e-5, atol=1e-6)
    weighted = SequenceEASE(l2=200.0, l2_relative=False, l2_popularity_exponent=0.0, sequence_weight=1.0).fit(
        platform.train
    )
    assert not np.allclose(weighted.score(users), plain.score(users))
