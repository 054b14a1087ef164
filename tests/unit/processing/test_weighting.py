"""Interaction weighting: hand-computed strengths for each value kind, decay, presets and inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recstack.processing.weighting import (
    WeightingConfig,
    clip_negative,
    infer,
    play_counts,
    ratings,
    row_weights,
    variants,
    video,
    weigh,
)

DAY_MS = 86_400_000


def events(**columns: list[object]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base: dict[str, list[object]] = {"user_id": ["u"] * n, "item_id": [f"i{k}" for k in range(n)]}
    return pd.DataFrame({**base, **columns})


def test_default_event_order_share_like_full_watch_partial_watch_skip() -> None:
    frame = events(
        event_type=["share", "like", "watch", "watch", "skip"], value=[None, None, 95.0, 40.0, None]
    )
    items = pd.DataFrame({"item_id": ["i2", "i3"], "duration_s": [100.0, 100.0]})
    w = row_weights(frame, video(), items)
    # share 4, like 3, full watch (95% ≥ 90%) 2, partial watch 2 × 0.4, skip −1.
    np.testing.assert_allclose(w, [4.0, 3.0, 2.0, 0.8, -1.0])
    assert w[0] > w[1] > w[2] > w[3] > 0 > w[4]


def test_a_bounce_counts_as_a_skip() -> None:
    frame = events(event_type=["watch"], value=[3.0])
    items = pd.DataFrame({"item_id": ["i0"], "duration_s": [100.0]})
    assert row_weights(frame, video(), items).tolist() == [-1.0]


def test_unknown_durations_are_estimated_from_watch_times() -> None:
    # Five watches of one item: the 90th percentile (linear interpolation) of 10..50 is 46 seconds.
    frame = pd.DataFrame(
        {"user_id": list("abcde"), "item_id": ["x"] * 5, "value": [10.0, 20.0, 30.0, 40.0, 50.0]}
    )
    w = row_weights(frame, video())
    np.testing.assert_allclose(w, [2 * 10 / 46, 2 * 20 / 46, 2 * 30 / 46, 2 * 40 / 46, 2.0])


def test_rating_modes() -> None:
    frame = events(value=[1.0, 3.0, 4.0, 5.0])
    assert row_weights(frame, ratings()).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert row_weights(frame, ratings("threshold", 3.5)).tolist() == [0.0, 0.0, 1.0, 1.0]
    np.testing.assert_allclose(row_weights(frame, ratings("scale")), [0.2, 0.6, 0.8, 1.0])
    negative = WeightingConfig(**{**ratings("threshold").model_dump(), "below_threshold_weight": -0.5})
    assert row_weights(frame, negative).tolist() == [-0.5, -0.5, 1.0, 1.0]


def test_scaled_ratings_take_an_exponent() -> None:
    frame = events(value=[1.0, 4.0, 5.0])
    sqrt = ratings("scale").model_copy(update={"rating_exponent": 0.5})
    np.testing.assert_allclose(row_weights(frame, sqrt), np.sqrt([0.2, 0.8, 1.0]))


def test_variants_depend_on_what_the_values_are() -> None:
    rated = variants(ratings())
    assert rated[0] == ratings()
    readings = {(c.rating_mode, c.rating_exponent) for c in rated}
    assert readings == {("binary", 1.0), ("scale", 0.5), ("scale", 1.0)}
    assert len(rated) == len(set(map(str, rated)))
    counted = variants(play_counts())
    assert counted[0] == play_counts() and any(not c.value_kinds for c in counted)
    assert variants(video()) == [video()]


def test_play_counts_are_log_damped() -> None:
    frame = events(value=[0.0, 1.0, 9.0])
    np.testing.assert_allclose(row_weights(frame, play_counts()), np.log1p([0.0, 1.0, 9.0]))


def test_unknown_and_missing_event_types() -> None:
    frame = events(event_type=["bookmark", None])
    config = WeightingConfig(unknown_event_weight=0.25, default_event="like")
    assert row_weights(frame, config).tolist() == [0.25, 3.0]


def test_time_decay_halves_per_half_life() -> None:
    now = 1_700_000_000_000
    frame = events(event_type=["like", "like", "like"], timestamp=[now, now - 7 * DAY_MS, now - 14 * DAY_MS])
    config = WeightingConfig(half_life_days=7.0)
    np.testing.assert_allclose(row_weights(frame, config), [3.0, 1.5, 0.75])
    np.testing.assert_allclose(row_weights(frame, config, now_ms=now + 7 * DAY_MS), [1.5, 0.75, 0.375])


def test_weigh_sums_per_pair_and_caps() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "v"],
            "item_id": ["a", "a", "b", "a"],
            "event_type": ["like", "share", "skip", "view"],
        }
    )
    out = weigh(frame, WeightingConfig(max_weight=5.0))
    assert out.to_dict("records") == [
        {"user_id": "u", "item_id": "a", "weight": 5.0},
        {"user_id": "u", "item_id": "b", "weight": -1.0},
        {"user_id": "v", "item_id": "a", "weight": 1.0},
    ]


def test_clip_negative_drops_non_positive_entries() -> None:
    matrix = sp.csr_matrix(np.array([[1.0, -2.0], [0.0, 3.0]], dtype=np.float32))
    assert clip_negative(matrix).toarray().tolist() == [[1.0, 0.0], [0.0, 3.0]]
    assert clip_negative(matrix).nnz == 2
    assert matrix.nnz == 3


@pytest.mark.parametrize(
    "config", [video(), ratings("scale"), play_counts(), WeightingConfig(half_life_days=3)]
)
def test_config_round_trips_through_json(config: WeightingConfig) -> None:
    assert WeightingConfig.model_validate_json(config.model_dump_json()) == config


def test_unknown_config_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="extra"):
        WeightingConfig(no_such_field=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 3, 4, 5, 2, 5], ratings()),
        ([0.5, 3.5, 4.0, 5.0], ratings()),
        ([1, 1, 3, 120, 2, 7, 1, 45], play_counts()),
        ([312.4, 1800.0, 95.2, 640.9], video()),
        ([300, 1800, 95, 640, 1200, 2400], video()),
    ],
)
def test_infer_reads_the_values_not_the_name(values: list[float], expected: WeightingConfig) -> None:
    frame = pd.DataFrame({"user_id": ["u"] * len(values), "item_id": [f"i{k}" for k in range(len(values))]})
    assert infer(frame.assign(value=values)) == expected


def test_infer_with_typed_events_or_durations_or_nothing() -> None:
    frame = events(event_type=["watch", "like"], value=[3.0, None])
    assert infer(frame) == video()
    counted = events(value=[1.0, 2.0, 3.0])
    assert infer(counted, pd.DataFrame({"item_id": ["i0"], "duration_s": [60.0]})) == ratings()
    assert (
        infer(events(value=[12.0, 30.0, 31.5]), pd.DataFrame({"item_id": ["i0"], "duration_s": [60.0]}))
        == video()
    )
    assert infer(events(event_type=["view", "view"])) == video()
