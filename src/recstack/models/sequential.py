"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's item sequence, next-items prediction.

Each user's interactions in time order form a sequence; a small pre-norm Transformer encoder reads it with a
causal mask, and the state at each position is scored against every item's embedding (shared with the input
embedding) with a full softmax cross-entropy. Full softmax rather than the paper's one sampled negative: it
is the main finding of later replications (Klenitskiy & Vasilev, RecSys 2023) and costs little at catalogue
sizes a dense score matrix allows anyway. Two departures from the paper serve the question a recommendation
answers, "what will this user take up next" (a set, with what they already have left out):

- each position learns all of the next `horizon` items, not only the next one (a "dense all-action"
  multi-target loss): the order within a sitting is noise, the set that follows is the signal;
- the items a position has already seen are taken out of its softmax (`exclude_seen`), as recommendations
  leave them out, so no capacity goes into learning not to repeat them.

Early stopping holds out each user's latest `validation_fraction` of interactions (the honest question:
what comes next); the best epoch's weights are kept, then optionally trained `refit_epochs` more on the
whole sequences (the held-out tails are the latest, most telling data). After training each user's whole
history is encoded once — the last state, blended with the mean of all its states (the long-term profile)
by a weight chosen on the validation users — so `score` is a product of user and item vectors
(`user_embeddings`/`item_embeddings`, ready for an ANN index) and a loaded model scores without PyTorch; the
network's weights are saved too (pickle-free, in `state.npz`).
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
    whole catalogue); `horizon` how many following items each position learns to predict; `loss_share` the
    share of positions (drawn per batch) that enter the loss, to trade signal for speed; `exclude_seen` takes
    a position's earlier items out of its softmax (full softmax only); `refit_epochs` epochs on the whole
    data after early stopping; `profile_weight` the long-term profile's weight in the user vector (None:
    chosen on validation from `PROFILE_GRID`); `threads` torch's threads (see `recstack.models._torch.seeded`)."""

    dim: int = Field(default=64, ge=8)
    max_len: int = Field(default=50, ge=2)
    layers: int = Field(default=1, ge=1)
    heads: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=2e-2, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    batch_size: int = Field(default=32, ge=1)
    epochs: int = Field(default=200, ge=1)
    patience: int = Field(default=6, ge=1)
    time_budget_s: float = Field(default=100.0, gt=0.0)
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    validation_users: int = Field(default=5_000, ge=1)
    seed: int = 42
    negatives: int = Field(default=0, ge=0)
    horizon: int = Field(default=5, ge=1)
    loss_share: float = Field(default=1.0, gt=0.0, le=1.0)
    exclude_seen: bool = True
    refit_epochs: int = Field(default=0, ge=0)
    profile_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    threads: int = Field(default=2, ge=1)


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


def _chunks(sequences: list[np.ndarray], length: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Training windows: every sequence cut from its end into windows of `length` inputs, each input
    position's targets the `horizon` items after it in the whole sequence (shifted by one, 0 pads)."""
    inputs, targets = [], []
    steps = np.arange(1, horizon + 1)
    for seq in sequences:
        padded = np.concatenate([seq + 1, np.zeros(horizon, dtype=np.int64)])
        for end in range(len(seq) - 1, 0, -length):
            start = max(0, end - length)
            inputs.append(seq[start:end])
            window = np.zeros((length, horizon), dtype=np.int64)
            window[length - (end - start) :] = padded[np.arange(start, end)[:, None] + steps[None, :]]
            targets.append(window)
    return _padded(inputs, length), np.stack(targets) if targets else np.zeros((0, length, horizon), np.int64)


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
        """Bytes a fit needs at the default config: the user and item vectors, the training windows with their
        `horizon` targets, and one batch's logits (positions × items) with the seen-item mask, the log-softmax
        and their gradients."""
        cfg = SASRecConfig()
        logits = 4 * cfg.batch_size * cfg.max_len * n_items * 4
        return int(logits + 8 * (2 + cfg.horizon) * n_interactions + 4 * cfg.dim * (n_users + 8 * n_items))

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        torch = _torch.seeded(cfg.seed, cfg.threads)
        n_items = len(data.items)
        sequences = user_sequences(data)
        held, counts = _torch.held_out(sequences, cfg.validation_fraction, cfg.validation_users, cfg.seed)
        cut = dict(zip(held, counts, strict=True))
        train_seqs = [s[: len(s) - cut.get(u, 0)] for u, s in enumerate(sequences)]
        inputs, targets = _chunks(train_seqs, cfg.max_len, cfg.horizon)
        val_seen = [train_seqs[u] for u in held]
        val_inputs = _padded(val_seen, cfg.max_len)
        val_targets = [sequences[u][len(train_seqs[u]) :] for u in held]

        network = _network(n_items, cfg)
        optimiser = torch.optim.Adam(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        clock = _torch.TrainingClock(cfg.time_budget_s, cfg.patience, reserve_epochs=cfg.refit_epochs if held else 0)
        generator = torch.Generator().manual_seed(cfg.seed)
        windows = torch.from_numpy(inputs), torch.from_numpy(targets)
        best = _torch.export_state(network)
        for epoch in range(cfg.epochs):
            loss = self._epoch(network, optimiser, windows, generator, clock.deadline)
            metric = self._validate(network, val_inputs, val_targets, val_seen) if held else -float(epoch)
            improved, go_on = clock.record(metric)
            if improved:
                best = _torch.export_state(network)
            logger.debug("sasrec epoch %d: loss %.4f, validation NDCG@10 %.4f", epoch, loss, metric)
            if self.progress is not None:
                self.progress(epoch + 1, cfg.epochs, metric)
            if not go_on or time.perf_counter() > clock.deadline:
                break
        _torch.import_state(network, best)
        self.epochs_ = clock.best_epoch + 1
        self.validation_ndcg_ = clock.best
        self.profile_weight_ = self._profile_weight(network, val_seen, val_targets)
        if held and cfg.refit_epochs:
            full = tuple(torch.from_numpy(a) for a in _chunks(sequences, cfg.max_len, cfg.horizon))
            for epoch in range(cfg.refit_epochs):
                loss = self._epoch(network, optimiser, full, generator, clock.deadline + 0.1 * cfg.time_budget_s)
                logger.debug("sasrec refit epoch %d on the validation data too: loss %.4f", epoch, loss)
        self._encode(network, sequences)

    def _epoch(
        self, network: Any, optimiser: Any, windows: tuple[Any, Any], generator: Any, deadline: float
    ) -> float:
        """One pass over the training windows (inputs, targets) in random order, cut short at `deadline`
        (`time.perf_counter()`); the last batch's loss."""
        torch = _torch.require_torch()
        cfg = self.config
        x_all, y_all = windows
        network.train()
        loss = torch.zeros(())
        for batch in torch.randperm(len(x_all), generator=generator).split(cfg.batch_size):
            if time.perf_counter() > deadline:
                logger.info("sasrec: time budget of %.0f s reached within an epoch", cfg.time_budget_s)
                break
            x, y = x_all[batch], y_all[batch]
            keep = y[:, :, 0] > 0
            if cfg.loss_share < 1.0:
                keep &= torch.rand(keep.shape, generator=generator) < cfg.loss_share
            hidden = network(x)[keep]
            exclude = None
            if cfg.exclude_seen:
                causal = torch.tril(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool))
                exclude = torch.where(causal[None], x[:, None, :], 0)[keep] - 1
            loss = _torch.next_item_loss(
                hidden, network.item_matrix(), y[keep] - 1, cfg.negatives, generator, exclude=exclude
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
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

    def _validate(self, network: Any, inputs: np.ndarray, targets: list[np.ndarray], seen: list[np.ndarray]) -> float:
        scores = self._final_states(network, inputs) @ self._items_of(network).T
        return _torch.validation_ndcg(scores, seen, targets)

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
