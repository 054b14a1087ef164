"""SASRec meets the Recommender contract, learns order, is deterministic, and needs `recstack[deep]` to fit;
its training targets, multi-target loss and seen-item exclusion do what the model's docstring says."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recstack.errors import MissingExtra
from recstack.models import _torch
from recstack.models.base import Recommender
from recstack.models.sequential import SASRec, SASRecConfig, _factor_init, _future, _windows
from recstack.testing.recommender import Platform, RecommenderContract

from .deep import require_torch

FAST: dict[str, Any] = {"dim": 32, "max_len": 30, "layers": 1, "learning_rate": 5e-3, "epochs": 30, "time_budget_s": 30}


@pytest.fixture(autouse=True)
def _torch_present() -> None:
    require_torch()


class TestSASRec(RecommenderContract):
    model_class = SASRec
    params = FAST
    ndcg_floor = 0.08
    # The platform's timestamps are drawn at random within a month and its test split is random, so it holds
    # no order to learn; `test_it_predicts_the_next_item_of_a_sequence` is where this model proves itself.
    beats_popularity = False


def _cycles(n_users: int = 200, n_items: int = 40, length: int = 12) -> pd.DataFrame:
    """Every user walks part of one fixed cycle of items from a random start: the next item is the one after."""
    rng = np.random.default_rng(3)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for step in range(length):
            rows.append((f"u{u}", f"i{(start + step) % n_items}", 1_000 * step))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_it_predicts_the_next_item_of_a_sequence() -> None:
    frame = _cycles()
    model = SASRec(**FAST).fit(frame)
    recs = model.recommend(frame["user_id"].unique(), k=1)
    last = frame.groupby("user_id")["item_id"].last()
    expected = {u: f"i{(int(last[u][1:]) + 1) % 40}" for u in last.index}
    hits = np.mean([expected[u] == i for u, i in zip(recs["user_id"], recs["item_id"], strict=True)])
    assert hits > 0.8, hits
    assert model.epochs_ >= 1 and model.validation_ndcg_ > 0.5


def test_same_seed_same_model(platform: Platform) -> None:
    params = {**FAST, "epochs": 2}
    first = SASRec(**params).fit(platform.train)
    second = SASRec(**params).fit(platform.train)
    np.testing.assert_array_equal(first.score(np.arange(5)), second.score(np.arange(5)))


def test_progress_callback_sees_each_epoch(platform: Platform) -> None:
    seen: list[tuple[int, int]] = []
    model = SASRec(**{**FAST, "epochs": 3, "patience": 10})
    model.progress = lambda epoch, total, metric: seen.append((epoch, total))
    model.fit(platform.train)
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_saved_weights_rebuild_the_network(platform: Platform, tmp_path: Any) -> None:
    model = SASRec(**{**FAST, "epochs": 2}).fit(platform.train)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, SASRec)
    assert not any(p.suffix == ".pkl" or p.suffix == ".pt" for p in (tmp_path / "m").iterdir())
    for a, b in zip(model.network().parameters(), loaded.network().parameters(), strict=True):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_without_torch_fit_names_the_extra(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtra, match=r"recstack\[deep\]"):
        SASRec(**FAST).fit(platform.train)


def _chunks(sequences: list[np.ndarray], length: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
    """The windows' inputs and one draw of their targets (both shifted by one, 0 pads)."""
    import torch

    flat, index, begin, end = (torch.from_numpy(a) for a in _windows(sequences, length))
    inputs = torch.where(index >= 0, flat[index.clamp(min=0)], 0)
    cfg = SASRecConfig(max_len=length, **params)
    return inputs.numpy(), _future(flat, index, begin, end, cfg, torch.Generator().manual_seed(0)).numpy()


def test_each_position_targets_the_next_horizon_items() -> None:
    inputs, targets = _chunks([np.array([10, 11, 12, 13])], 5, horizon=2, window_share=0)
    # Shifted by one (0 pads): inputs 10, 11, 12 left-padded; each one's targets are the two items after it.
    np.testing.assert_array_equal(inputs, [[0, 0, 11, 12, 13]])
    np.testing.assert_array_equal(targets[0], [[0, 0], [0, 0], [12, 13], [13, 14], [14, 0]])


def test_windows_of_a_long_sequence_look_past_their_end() -> None:
    inputs, targets = _chunks([np.arange(7), np.array([20, 21])], 3, horizon=2, window_share=0)
    np.testing.assert_array_equal(inputs, [[4, 5, 6], [1, 2, 3], [0, 0, 21]])
    np.testing.assert_array_equal(targets[1], [[2, 3], [3, 4], [4, 5]])
    np.testing.assert_array_equal(targets[2], [[0, 0], [0, 0], [22, 0]])  # never into the next user's items


def test_drawn_targets_lie_in_a_window_proportional_to_the_history() -> None:
    sequence = np.arange(100)
    inputs, targets = _chunks([sequence], 99, horizon=3, window_share=0.5, targets=50)
    seen = np.arange(1, 100)  # input position p has seen p + 1 items, its own included
    window = np.clip(np.ceil(0.5 * seen), 3, 200).astype(int)
    step = np.where(targets[0] > 0, targets[0] - inputs[0][:, None], 0)
    assert (step[targets[0] > 0] >= 1).all()
    assert (step <= window[:, None]).all()
    assert (targets[0] <= 100).all()  # within the sequence (shifted by one)
    # The window grows with the history: late positions reach far, early ones stay near.
    assert step[50:70].max() > 20 and step[:5].max() <= 3
    _, near = _chunks([sequence], 99, horizon=3, window_share=0.5, targets=50, near_bias=3.0)
    near_step = np.where(near[0] > 0, near[0] - inputs[0][:, None], 0)
    assert near_step[60:80][near_step[60:80] > 0].mean() < step[60:80][step[60:80] > 0].mean()


def test_factor_init_starts_co_occurring_items_close() -> None:
    from recstack.models.sequential import _network

    rng = np.random.default_rng(0)
    sequences = [rng.permutation(np.arange(0, 10) if u % 2 else np.arange(10, 20)) for u in range(40)]
    cfg = SASRecConfig(dim=8)
    network = _network(20, cfg)
    _factor_init(network, sequences, 20, cfg)
    vectors = network.item_matrix().detach()
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    cosine = unit @ unit.T
    assert float(cosine[:10, :10].mean()) > 0.9 and float(cosine[:10, 10:].abs().mean()) < 0.1
    assert float(vectors.std()) == pytest.approx(8**-0.5, rel=1e-2)


def test_multi_target_loss_is_the_mean_over_real_targets_and_skips_excluded_items() -> None:
    import torch

    hidden = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    log_p = torch.log_softmax(hidden @ items.T, dim=1)[0]
    both = _torch.next_item_loss(hidden, items, torch.tensor([[1, 2, -1]]), 0, None)
    assert float(both) == pytest.approx(-float(log_p[1] + log_p[2]) / 2)
    # Item 0 (the user's own, the likeliest) leaves the softmax: item 1 then takes most of the mass.
    without = _torch.next_item_loss(hidden, items, torch.tensor([1]), 0, None, exclude=torch.tensor([[0, -1]]))
    expected = -float(torch.log_softmax(torch.tensor([1.0, 0.0]), dim=0)[0])
    assert float(without) == pytest.approx(expected)
    # An excluded item that is also the target stays in; the other excluded one leaves.
    kept = _torch.next_item_loss(hidden, items, torch.tensor([0]), 0, None, exclude=torch.tensor([[0, 1]]))
    assert float(kept) == pytest.approx(-float(torch.log_softmax(torch.tensor([2.0, 0.0]), dim=0)[0]))


def test_clock_keeps_room_for_the_refit_epochs() -> None:
    clock = _torch.TrainingClock(budget_s=10.0, patience=100, reserve_epochs=3)
    clock.started -= 4.0
    clock._last -= 2.0
    assert clock.record(0.1) == (True, False)  # 4 s gone, 2 s an epoch: one more and three reserved overrun 10 s
    roomy = _torch.TrainingClock(budget_s=10.0, patience=100)
    roomy.started -= 4.0
    roomy._last -= 2.0
    assert roomy.record(0.1) == (True, True)


def _fits_next_item(**params: Any) -> SASRec:
    """SASRec fitted on the cycles with `params`, checked to predict each user's next item."""
    frame = _cycles()
    model = SASRec(**{**FAST, **params}).fit(frame)
    recs = model.recommend(frame["user_id"].unique(), k=1)
    last = frame.groupby("user_id")["item_id"].last()
    expected = {u: f"i{(int(last[u][1:]) + 1) % 40}" for u in last.index}
    hits = np.mean([expected[u] == i for u, i in zip(recs["user_id"], recs["item_id"], strict=True)])
    assert hits > 0.8, hits
    return model


def test_refit_and_profile_weight_still_predict_the_next_item() -> None:
    model = _fits_next_item(refit_epochs=2, horizon=1)
    assert model.profile_weight_ in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_weight_average_still_predicts_the_next_item() -> None:
    model = _fits_next_item(average_decay=0.9, refit_epochs=1)
    np.testing.assert_allclose(model.network().item_matrix().detach().numpy(), model.item_embeddings())
