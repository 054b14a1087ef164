"""What the PyTorch models share: the lazy import, threads and seeds, the training loop's budget, and the
pickle-free round trip of a `state_dict` through the model's `state.npz`.

PyTorch is the optional extra `recstack[deep]`; importing a deep model's module works without it, and only
`fit`/`load` raise `MissingExtra` naming the extra, so the catalogue lists the models on every install.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recstack.errors import MissingExtra

if TYPE_CHECKING:
    import torch

__all__ = [
    "EpochProgress",
    "TrainingClock",
    "export_state",
    "held_out",
    "import_state",
    "next_item_loss",
    "require_torch",
    "seeded",
    "validation_gains",
    "validation_ndcg",
]

logger = logging.getLogger(__name__)

STATE_PREFIX: Final = "torch."

EpochProgress = Callable[[int, int, float], None]
"""`progress(epoch, max_epochs, validation_ndcg)`: called after each epoch (the CLI drives a bar with it)."""


def require_torch() -> Any:
    """The `torch` module, or `MissingExtra` telling the user to install `recstack[deep]`."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtra("torch", "deep") from exc
    return torch


def seeded(seed: int, threads: int) -> Any:
    """Seed torch and set its intra-op threads (never more than the cores this process may use); returns
    `torch`. The encoders are small (64-wide), where splitting each matrix costs more in synchronisation than
    it gains (on the 2-core CI machine 10 passes of one encoder layer took 0.65 s on one thread, 2.8 s on
    two); a full softmax over the catalogue is one large product per batch, which two threads run 1.5×
    faster on an idle 2-core machine (3,200 positions × 6,618 items: 0.49 s on one, 0.32 s on two), but on a
    shared one two threads wait on each other: at load average 8, 32 SASRec batches took 49.9 s on two
    threads and 13.6 s on one (the encoder alone 13.9 s against 1.2 s)."""
    torch = require_torch()
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, min(threads, available)))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch


@dataclass
class TrainingClock:
    """Early stopping on a validation metric within a wall-clock budget.

    `record(metric)` after each epoch returns whether to go on: it stops once `patience` epochs pass without
    a better metric, or when the next epoch would likely overrun `budget_s` (judged by the slowest epoch so far),
    keeping room for `reserve_epochs` more after the stop (a refit on the validation data).
    """

    budget_s: float
    patience: int
    reserve_epochs: int = 0
    started: float = field(default_factory=time.perf_counter)
    best: float = -np.inf
    best_epoch: int = -1
    epochs: int = 0
    _last: float = field(default_factory=time.perf_counter)
    _slowest: float = 0.0

    @property
    def deadline(self) -> float:
        """The `time.perf_counter()` by which the fit must end: a loop that checks it between batches keeps
        the budget even when one epoch on a loaded machine takes longer than the whole budget."""
        return self.started + self.budget_s

    def record(self, metric: float) -> tuple[bool, bool]:
        """(improved, go_on) after one more epoch with validation `metric`."""
        now = time.perf_counter()
        self._slowest = max(self._slowest, now - self._last)
        self._last = now
        improved = metric > self.best
        if improved:
            self.best, self.best_epoch = metric, self.epochs
        self.epochs += 1
        stale = self.epochs - 1 - self.best_epoch >= self.patience
        out_of_time = now - self.started + self._slowest * (1 + self.reserve_epochs) > self.budget_s
        if out_of_time and not stale:
            logger.info("stopping after %d epochs: time budget of %.0f s reached", self.epochs, self.budget_s)
        return improved, not (stale or out_of_time)


def next_item_loss(
    hidden: Any, items: Any, targets: Any, negatives: int, generator: Any, exclude: Any | None = None
) -> Any:
    """Softmax cross-entropy of each row of `hidden` against its `targets` among `items`' vectors.

    `targets` is one item per row, or a matrix of several per row (padded with -1): the mean cross-entropy
    of every (row, target) pair, each target scored against the same softmax, as in a "dense all-action"
    loss that asks each position for all of the next few items rather than only the next one.

    With `negatives = 0` the softmax runs over the whole catalogue; otherwise over the target and
    `negatives` items drawn uniformly, shared by the batch (sampled softmax; a drawn item equal to the row's
    target is masked out). Shared samples keep a CPU epoch on a 10k-item catalogue at seconds, not minutes.

    `exclude` (full softmax only): per row, items (padded with -1) taken out of that row's softmax unless
    they are among its targets: the items the user already has, which a recommendation leaves out anyway.
    """
    torch = require_torch()
    targets = targets[:, None] if targets.dim() == 1 else targets
    valid = targets >= 0
    picked = targets.clamp(min=0)
    if negatives <= 0 or negatives >= items.shape[0]:
        logits = hidden @ items.T
        if exclude is not None:
            # -inf written in place (the product's backward needs its inputs, not its output) at each row's
            # excluded items that are not among its targets: no (rows × items) mask is built.
            rows = torch.arange(exclude.shape[0])[:, None].expand_as(exclude)
            drop = (exclude >= 0) & ~(exclude[:, :, None] == torch.where(valid, picked, -1)[:, None, :]).any(2)
            logits.index_put_((rows[drop], exclude[drop]), torch.tensor(-torch.inf))
        log_p = logits.gather(1, picked) - torch.logsumexp(logits, dim=1, keepdim=True)
    else:
        drawn = torch.randint(0, items.shape[0], (negatives,), generator=generator)
        positive = (hidden[:, None, :] * items[picked]).sum(-1)
        negative = hidden @ items[drawn].T
        same = drawn[None, None, :] == picked[:, :, None]
        others = negative[:, None, :].expand(-1, picked.shape[1], -1).masked_fill(same, -torch.inf)
        log_p = positive - torch.logsumexp(torch.cat([positive[..., None], others], dim=2), dim=2)
    return -torch.where(valid, log_p, 0.0).sum() / valid.sum().clamp(min=1)


def export_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The module's `state_dict` as numpy arrays, keyed for `state.npz` (saved with pickle disabled)."""
    return {STATE_PREFIX + k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def import_state(module: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load what `export_state` wrote back into a freshly built module (strict: every weight must be there)."""
    torch = require_torch()
    weights = {
        k[len(STATE_PREFIX) :]: torch.from_numpy(np.asarray(v)) for k, v in state.items() if k.startswith(STATE_PREFIX)
    }
    module.load_state_dict(weights, strict=True)


def validation_ndcg(scores: np.ndarray, seen_rows: list[np.ndarray], targets: list[np.ndarray], k: int = 10) -> float:
    """Mean NDCG@k (binary gains) of each user's held-out items `targets`, the user's earlier items
    (`seen_rows`) excluded from the ranking; rows of `scores` are users, columns items."""
    gains = validation_gains(scores, seen_rows, targets, k)
    return float(gains.mean()) if len(gains) else 0.0


def validation_gains(
    scores: np.ndarray, seen_rows: list[np.ndarray], targets: list[np.ndarray], k: int = 10
) -> np.ndarray:
    """Each user's NDCG@k as in `validation_ndcg`, so a caller can tell a better epoch from the metric's own
    noise (their standard error)."""
    if not len(targets):
        return np.zeros(0)
    scores = scores.copy()
    for row, seen in enumerate(seen_rows):
        scores[row, seen] = -np.inf
    top = (
        np.argpartition(-scores, k, axis=1)[:, :k]
        if scores.shape[1] > k
        else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    )
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = []
    for row, wanted in enumerate(targets):
        hits = np.isin(order[row], wanted)
        ideal = discounts[: min(len(wanted), k)].sum()
        gains.append(float((discounts[: hits.size] * hits).sum() / ideal) if ideal > 0 else 0.0)
    return np.asarray(gains)


def held_out(sequences: list[np.ndarray], fraction: float, limit: int, seed: int) -> tuple[list[int], list[int]]:
    """Validation users (at most `limit`, drawn with `seed`) and how many latest items each holds out:
    `fraction` of the user's sequence, at least one, and only users with three items or more."""
    users = [u for u, s in enumerate(sequences) if len(s) >= 3]
    if len(users) > limit:
        users = sorted(np.random.default_rng(seed).choice(users, limit, replace=False).tolist())
    counts = [max(1, min(len(sequences[u]) - 2, round(fraction * len(sequences[u])))) for u in users]
    return users, counts
