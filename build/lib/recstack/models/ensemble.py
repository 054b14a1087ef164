"""Blend several models' scores into one ranking: a per-user normalised weighted sum, or reciprocal-rank fusion.

Members are ordinary Recommenders named by catalogue name (or `module:Class`) and keywords. With no fixed
`weights`, `fit` carves a per-user validation split out of the training interactions, fits every member on
the fitting part, and searches the blend weights (Optuna, seeded) that maximise NDCG@k on the held-out part;
then it refits every member on all the training data. The test data a caller holds back is never seen.

Normalisation is what makes scores from different models addable: each member's scores for one user are
standardised over the catalogue (zero mean, unit deviation), so a weight means the same thing whatever the
scale of EASE's regression outputs or ALS's inner products.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recstack.errors import ConfigurationError, MissingExtra
from recstack.models import catalog
from recstack.models.base import Recommender, RecommenderConfig, TrainingData, Trial
from recstack.processing.matrix import Vocabulary

__all__ = [
    "Ensemble",
    "EnsembleConfig",
    "MemberSpec",
    "MemberView",
    "normalised",
    "rank_fusion",
]

logger = logging.getLogger(__name__)


class MemberSpec(BaseModel):
    """One member: a catalogue name (or `module:Class`) and its constructor keywords."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    params: dict[str, Any] = Field(default_factory=dict)

    def create(self) -> Recommender[Any]:
        return catalog.create(self.model, **self.params)


def _default_members() -> list[MemberSpec]:
    return [MemberSpec(model="ease"), MemberSpec(model="rp3beta"), MemberSpec(model="item_knn")]


class EnsembleConfig(RecommenderConfig):
    """`method`: `score` (weighted sum of per-user standardised scores) or `rrf` (Σ w / (`rrf_k` + rank)).
    `weights`: one per member, or None to learn them on a validation split (`validation_ratio` of each
    user's rows kept for fitting, `weight_trials` Optuna trials, NDCG@`k` over at most
    `max_validation_users` sampled users, which bounds the dense users×items blocks scored)."""

    members: list[MemberSpec] = Field(default_factory=_default_members, min_length=1)
    method: Literal["score", "rrf"] = "score"
    weights: list[float] | None = None
    rrf_k: float = Field(default=60.0, gt=0.0)
    validation_ratio: float = Field(default=0.75, gt=0.0, lt=1.0)
    weight_trials: int = Field(default=40, ge=1)
    k: int = Field(default=10, ge=1)
    max_validation_users: int = Field(default=4000, ge=10)
    seed: int = 42

    @model_validator(mode="after")
    def _weights_match_members(self) -> EnsembleConfig:
        if self.weights is not None and len(self.weights) != len(self.members):
            raise ValueError(f"{len(self.weights)} weights for {len(self.members)} members")
        return self


class MemberView:
    """A fitted member seen through another vocabulary: `scores(user_idx)` gives dense scores over the
    outer item order for outer user indices, items or users the member does not know scoring lowest."""

    def __init__(self, model: Recommender[Any], users: Vocabulary, items: Vocabulary) -> None:
        self.model = model
        self.user_map = model.users.index(users.ids)
        self.item_map = model.items.index(items.ids)
        self.n_items = len(items)

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        inner = self.user_map[np.asarray(user_idx)]
        known_users = inner >= 0
        known_items = self.item_map >= 0
        out = np.full((len(inner), self.n_items), np.nan, dtype=np.float32)
        if known_users.any():
            raw = self.model.score(inner[known_users])
            out[np.ix_(np.flatnonzero(known_users), np.flatnonzero(known_items))] = raw[:, self.item_map[known_items]]
        return out


def normalised(scores: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Each row standardised over its finite, non-excluded entries; the rest get the row's minimum.

    Excluded entries (the user's training items) are left out of the mean and deviation because a model
    scores them very high, which would otherwise squash every other item into a narrow band.
    """
    values = scores.astype(np.float64, copy=True)
    valid = np.isfinite(values)
    if exclude is not None:
        valid &= ~exclude
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    masked = np.where(valid, values, 0.0)
    mean = masked.sum(axis=1, keepdims=True) / count
    var = (np.where(valid, values - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count
    z = (values - mean) / np.sqrt(np.maximum(var, 1e-24))
    floor = np.where(valid, z, np.inf).min(axis=1, keepdims=True)
    floor = np.where(np.isfinite(floor), floor, 0.0)
    return np.where(np.isfinite(values), z, floor).astype(np.float32)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every entry within its row (1 = highest; NaN ranks last), as float32."""
    clean = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-clean, axis=1, kind="stable")
    out = np.empty(scores.shape, dtype=np.float32)
    np.put_along_axis(out, order, np.arange(1, scores.shape[1] + 1, dtype=np.float32)[None, :], axis=1)
    return out


def rank_fusion(rank_blocks: list[np.ndarray], weights: np.ndarray, rrf_k: float) -> np.ndarray:
    """Reciprocal-rank fusion: Σ_m w_m / (rrf_k + rank_m)."""
    return sum((w / (rrf_k + r) for w, r in zip(weights, rank_blocks, strict=True)), np.zeros_like(rank_blocks[0]))


class Ensemble(Recommender[EnsembleConfig]):
    """Weighted blend of member models; `weights_` are the ones used (given or learned)."""

    name: ClassVar[str] = "ensemble"
    config_type: ClassVar[type[EnsembleConfig]] = EnsembleConfig

    members_: list[Recommender[Any]]
    views_: list[MemberView]
    weights_: np.ndarray

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        frame = data.interactions[[c for c in data.interactions.columns if c not in ("user_idx", "item_idx")]]
        if cfg.weights is not None:
            self.weights_ = np.asarray(cfg.weights, dtype=np.float64)
        else:
            self.weights_ = self._learn_weights(frame, data)
        self.members_ = [spec.create().fit(frame, items=_items_frame(data)) for spec in cfg.members]
        self.views_ = [MemberView(m, data.users, data.items) for m in self.members_]

    def _learn_weights(self, frame: pd.DataFrame, data: TrainingData) -> np.ndarray:
        from recstack.evaluation.metrics import ndcg
        from recstack.evaluation.splits import stratified_by_user

        cfg = self.config
        fit_part, held_out = stratified_by_user(frame, ratio=cfg.validation_ratio, seed=cfg.seed)
        members = [spec.create().fit(fit_part, items=_items_frame(data)) for spec in cfg.members]
        held_users = pd.unique(held_out["user_id"])
        if len(held_users) > cfg.max_validation_users:
            held_users = np.random.default_rng(cfg.seed).choice(held_users, cfg.max_validation_users, replace=False)
            held_out = held_out.loc[held_out["user_id"].isin(held_users)]
        users = Vocabulary.from_ids(held_users)
        user_idx = np.arange(len(users))
        views = [MemberView(m, users, data.items) for m in members]
        seen = _seen(fit_part, users, data.items)
        blocks = [normalised(v.scores(user_idx), seen) for v in views]
        rank_blocks = [ranks(np.where(seen, -np.inf, b)) for b in blocks] if cfg.method == "rrf" else []

        def quality(weights: np.ndarray) -> float:
            if cfg.method == "rrf":
                blend = rank_fusion(rank_blocks, weights, cfg.rrf_k)
            else:
                blend = sum((w * b for w, b in zip(weights, blocks, strict=True)), np.zeros_like(blocks[0]))
            blend = np.where(seen, -np.inf, blend)
            top = np.argsort(-blend, axis=1)[:, : cfg.k]
            recs = pd.DataFrame(
                {
                    "user_id": np.repeat(users.ids, top.shape[1]),
                    "item_id": data.items.ids_of(top.ravel()),
                    "rank": np.tile(np.arange(1, top.shape[1] + 1), len(users)),
                }
            )
            return ndcg(recs, held_out, cfg.k)

        if len(blocks) == 1:
            return np.ones(1)
        try:
            import optuna
        except ImportError as exc:
            raise MissingExtra("optuna", "models") from exc
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
        study.enqueue_trial({f"w{i}": 1.0 for i in range(len(blocks))})

        def objective(trial: optuna.Trial) -> float:
            return quality(np.array([trial.suggest_float(f"w{i}", 0.0, 1.0) for i in range(len(blocks))]))

        study.optimize(objective, n_trials=cfg.weight_trials)
        best = np.array([study.best_params[f"w{i}"] for i in range(len(blocks))])
        logger.info("ensemble weights %s reach validation NDCG@%d %.4f", best.round(3), cfg.k, study.best_value)
        return best

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        exclude = self.seen_[np.asarray(user_idx)].toarray() if self.seen_ is not None else None
        blocks = [normalised(v.scores(user_idx), exclude) for v in self.views_]
        if self.config.method == "rrf":
            masked = [b if exclude is None else np.where(exclude, -np.inf, b) for b in blocks]
            return rank_fusion([ranks(b) for b in masked], self.weights_, self.config.rrf_k).astype(np.float32)
        blend = sum((w * b for w, b in zip(self.weights_, blocks, strict=True)), np.zeros_like(blocks[0]))
        return np.asarray(blend, dtype=np.float32)

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        for member in self.members_:
            try:
                inner = member.items.index(self.items.ids_of(item_idx))
                view = np.full((len(item_idx), len(self.items)), -np.inf, dtype=np.float32)
                cols = member.items.index(self.items.ids)
                known = cols >= 0
                sims = member._item_similarity(np.maximum(inner, 0))
                view[:, known] = sims[:, cols[known]]
                view[inner < 0] = -np.inf
                return view
            except ConfigurationError:
                continue
        raise ConfigurationError("no ensemble member supports similar_items")

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {"method": trial.suggest_categorical("method", ["score", "rrf"])}

    def _state(self) -> dict[str, Any]:
        return {"weights": self.weights_}

    def _restore(self, state: dict[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)

    def _save_parts(self, directory: Path) -> None:
        for i, member in enumerate(self.members_):
            member.save(directory / f"member_{i}")

    def _load_parts(self, directory: Path) -> None:
        self.members_ = [Recommender.load(directory / f"member_{i}") for i in range(len(self.config.members))]
        self.views_ = [MemberView(m, self.users, self.items) for m in self.members_]


def _items_frame(data: TrainingData) -> pd.DataFrame | None:
    if data.item_features is None:
        return None
    return data.item_features.reset_index()


def _seen(frame: pd.DataFrame, users: Vocabulary, items: Vocabulary) -> np.ndarray:
    """Dense users×items mask of the pairs in `frame` (for the validation users only, so it stays small)."""
    out = np.zeros((len(users), len(items)), dtype=bool)
    rows = users.index(frame["user_id"])
    cols = items.index(frame["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    out[rows[keep], cols[keep]] = True
    return out
