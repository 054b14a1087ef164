"""A two-tower retrieval model: a user tower over the user's history, an item tower over id and content.

The item tower adds an item's id embedding to a TF-IDF-weighted bag of its content tokens (title words,
category and tag tokens from `recstack.models._text`), so items with few interactions borrow from their
description. The user tower averages the embeddings of the items in the user's history and passes them
through a small MLP. Training is a full softmax over the catalogue: each example is one of a user's items
as the target and the rest of the history as input (the target is taken out of the bag, so the model learns
to predict an item from the others, not to copy it). Early stopping holds out each user's latest interactions
(by time when timestamps are given). The item vectors are `item_embeddings` — what serving puts in Faiss — and
`score` is the inner product with the user vectors.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recstack.models import _torch
from recstack.models._text import item_documents
from recstack.models.base import Recommender, RecommenderConfig, TrainingData, Trial
from recstack.models.sequential import user_sequences

__all__ = ["TwoTower", "TwoTowerConfig", "content_matrix"]

logger = logging.getLogger(__name__)


class TwoTowerConfig(RecommenderConfig):
    """`dim` the width of both towers' output; `content` whether the item tower reads item text; the rest
    as in `SASRecConfig`."""

    dim: int = Field(default=64, ge=8)
    content: bool = True
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=2e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    batch_size: int = Field(default=256, ge=1)
    epochs: int = Field(default=100, ge=1)
    patience: int = Field(default=4, ge=1)
    time_budget_s: float = Field(default=100.0, gt=0.0)
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    validation_users: int = Field(default=5_000, ge=1)
    seed: int = 42
    negatives: int = Field(default=256, ge=0)
    threads: int = Field(default=1, ge=1)


def content_matrix(data: TrainingData) -> sp.csr_matrix:
    """Items × tokens TF-IDF (rows L1-normalised) from the items frame; an empty matrix without one."""
    docs = item_documents(data.item_features, len(data.items))
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for row, doc in enumerate(docs):
        for token in doc:
            rows.append(row)
            cols.append(vocab.setdefault(token, len(vocab)))
    counts = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(docs), max(len(vocab), 1)), dtype=np.float32
    )
    counts.sum_duplicates()
    df = np.diff(sp.csc_matrix(counts).indptr)
    idf = np.log((1.0 + len(docs)) / (1.0 + df)).astype(np.float32) + 1.0
    weighted = sp.csr_matrix(counts @ sp.diags(idf))
    norms = np.asarray(weighted.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weighted, dtype=np.float32)


def _network(n_items: int, n_tokens: int, cfg: TwoTowerConfig) -> Any:
    torch = _torch.require_torch()
    nn = torch.nn

    class Network(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.item_ids = nn.Embedding(n_items, cfg.dim)
            self.tokens = nn.EmbeddingBag(n_tokens, cfg.dim, mode="sum")
            self.history = nn.EmbeddingBag(n_items, cfg.dim, mode="sum")
            self.user_mlp = nn.Sequential(
                nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, 2 * cfg.dim), nn.GELU(), nn.Linear(2 * cfg.dim, cfg.dim)
            )
            for table in (self.item_ids, self.tokens, self.history):
                nn.init.normal_(table.weight, std=cfg.dim**-0.5)

        def items(self, content: tuple[Any, Any, Any] | None) -> Any:
            vectors = self.item_ids.weight
            if content is not None:
                tokens, offsets, weights = content
                vectors = vectors + self.tokens(tokens, offsets, per_sample_weights=weights)
            return vectors

        def users(self, items: Any, offsets: Any, counts: Any, minus: Any | None = None) -> Any:
            bag = self.history(items, offsets)
            if minus is not None:
                bag = bag - self.history.weight[minus]
            mean = bag / counts.clamp(min=1.0)[:, None]
            return mean + self.user_mlp(mean)

    return Network()


class TwoTower(Recommender[TwoTowerConfig]):
    """Two-tower retrieval with content-aware item vectors (for Faiss) and history-based user vectors."""

    name: ClassVar[str] = "two_tower"
    config_type: ClassVar[type[TwoTowerConfig]] = TwoTowerConfig
    needs_timestamps: ClassVar[bool] = False
    needs_extra: ClassVar[str | None] = "deep"

    progress: _torch.EpochProgress | None = None
    """Set by the caller before `fit` to follow training epoch by epoch."""
    epochs_: int = 0
    validation_ndcg_: float = float("nan")
    user_vectors_: np.ndarray
    item_vectors_: np.ndarray
    content_: sp.csr_matrix
    weights_: dict[str, np.ndarray]

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_interactions: int) -> int:
        """Bytes a fit needs at the default config: one batch's logits and gradient, vectors and tables."""
        cfg = TwoTowerConfig()
        return int(2 * cfg.batch_size * n_items * 4 + 24 * n_interactions + 16 * cfg.dim * (n_users + 2 * n_items))

    def _content(self, torch: Any) -> tuple[Any, Any, Any] | None:
        if not self.config.content or self.content_.nnz == 0:
            return None
        c = self.content_
        return (
            torch.from_numpy(c.indices.astype(np.int64)),
            torch.from_numpy(c.indptr[:-1].astype(np.int64)),
            torch.from_numpy(c.data.astype(np.float32)),
        )

    @staticmethod
    def _bags(torch: Any, histories: list[np.ndarray]) -> tuple[Any, Any, Any]:
        counts = np.array([len(h) for h in histories], dtype=np.float32)
        offsets = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.int64)
        flat = np.concatenate(histories).astype(np.int64) if histories else np.zeros(0, np.int64)
        return torch.from_numpy(flat), torch.from_numpy(offsets), torch.from_numpy(counts)

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        torch = _torch.seeded(cfg.seed, cfg.threads)
        self.content_ = content_matrix(data)
        sequences = user_sequences(data)
        held, counts = _torch.held_out(sequences, cfg.validation_fraction, cfg.validation_users, cfg.seed)
        cut = dict(zip(held, counts, strict=True))
        train = [s[: len(s) - cut.get(u, 0)] for u, s in enumerate(sequences)]
        pair_users = np.repeat(np.arange(len(train)), [len(s) for s in train])
        pair_items = np.concatenate(train)
        single = np.array([len(s) for s in train])[pair_users] > 1
        pair_users, pair_items = pair_users[single], pair_items[single]

        network = _network(len(data.items), self.content_.shape[1], cfg)
        optimiser = torch.optim.Adam(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        content = self._content(torch)
        clock = _torch.TrainingClock(cfg.time_budget_s, cfg.patience)
        generator = torch.Generator().manual_seed(cfg.seed)
        best = _torch.export_state(network)
        for epoch in range(cfg.epochs):
            network.train()
            for batch in torch.randperm(len(pair_users), generator=generator).split(cfg.batch_size):
                users, targets = pair_users[batch.numpy()], pair_items[batch.numpy()]
                bag, offsets, counts = self._bags(torch, [train[u] for u in users])
                target = torch.from_numpy(targets.astype(np.int64))
                user_vectors = network.users(bag, offsets, counts - 1.0, minus=target)
                loss = _torch.next_item_loss(user_vectors, network.items(content), target, cfg.negatives, generator)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            metric = self._validate(
                network, content, [train[u] for u in held], [sequences[u][len(train[u]) :] for u in held]
            )
            improved, go_on = clock.record(metric)
            if improved:
                best = _torch.export_state(network)
            logger.debug("two_tower epoch %d: loss %.4f, validation NDCG@10 %.4f", epoch, float(loss.detach()), metric)
            if self.progress is not None:
                self.progress(epoch + 1, cfg.epochs, metric)
            if not go_on:
                break
        _torch.import_state(network, best)
        self.epochs_, self.validation_ndcg_ = clock.best_epoch + 1, clock.best
        self.user_vectors_, self.item_vectors_ = self._vectors(network, content, sequences)
        self.weights_ = _torch.export_state(network)

    def _vectors(self, network: Any, content: Any, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = _torch.require_torch()
        network.eval()
        with torch.no_grad():
            items = network.items(content).numpy().astype(np.float32)
            users = [
                network.users(*self._bags(torch, histories[start : start + 1024])).numpy()
                for start in range(0, len(histories), 1024)
            ]
        return (
            np.concatenate(users).astype(np.float32) if users else np.zeros((0, self.config.dim), np.float32)
        ), items

    def _validate(self, network: Any, content: Any, histories: list[np.ndarray], targets: list[np.ndarray]) -> float:
        if not histories:
            return 0.0
        users, items = self._vectors(network, content, histories)
        return _torch.validation_ndcg(users @ items.T, histories, targets)

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
            "content": trial.suggest_categorical("content", [True, False]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "learning_rate": trial.suggest_float("learning_rate", 5e-4, 5e-3, log=True),
        }

    def _state(self) -> dict[str, Any]:
        return {
            "user_vectors": self.user_vectors_,
            "item_vectors": self.item_vectors_,
            "content": self.content_,
            **self.weights_,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.user_vectors_ = np.asarray(state["user_vectors"], dtype=np.float32)
        self.item_vectors_ = np.asarray(state["item_vectors"], dtype=np.float32)
        self.content_ = sp.csr_matrix(state["content"])
        self.weights_ = {k: v for k, v in state.items() if k.startswith(_torch.STATE_PREFIX)}
