"""The champion decision's evaluation protocol: hold out part of the interactions, decide which held-out
pairs count as hits, and score a model's top-k on them.

`recstack train`, `recstack evaluate` and the feedback loop all score through here, so their numbers share
one relevance rule and one set of metric options. Three hold-outs: a per-user stratified random share
(`user`), each user's newest share (`user-temporal`) and the globally newest share (`temporal`).
`Holdout.for_data` picks the one `recstack train` and the loop decide on, as `auto` picks its validation:
each user's newest interactions when every interaction has a timestamp (a recommender in production
predicts what comes next), a random share otherwise. `evaluation_split` is `recstack evaluate --split`.
`question_of` says which question a split asks, so a model that chooses itself on a validation split of
its training data (`auto`, and any tuning) is validated the way it will be judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from recstack.errors import ConfigurationError
from recstack.evaluation import splits as _splits
from recstack.evaluation.splits import Split, has_timestamps, stratified_by_user, temporal, temporal_by_user
from recstack.models.base import Recommender

__all__ = [
    "Evaluation",
    "Holdout",
    "HoldoutKind",
    "SplitKind",
    "evaluate_holdout",
    "evaluation_split",
    "item_categories",
    "question_of",
    "relevant_pairs",
    "score_recommendations",
    "told_question",
]

HoldoutKind = Literal["user", "user-temporal", "temporal"]
SplitKind = Literal["auto", "user", "user-temporal", "item", "temporal", "leave-last"]
Question = Literal["random", "temporal"]
"""What a split asks: recover a random share of what users did (`random`), or what they do next (`temporal`)."""

_QUESTIONS: dict[str, Question] = {
    "user": "random", "item": "random", "user-temporal": "temporal", "temporal": "temporal", "leave-last": "temporal",
}


def question_of(kind: str) -> Question:
    """The question a resolved split kind asks (`auto` must be resolved first, see `evaluation_split`)."""
    try:
        return _QUESTIONS[kind]
    except KeyError:
        raise ConfigurationError(f"unknown split {kind!r}") from None


def told_question(model_cls: type[Recommender[Any]], params: dict[str, Any], question: Question) -> dict[str, Any]:
    """`params` with `validation=question` for a model that validates itself and was not told otherwise.

    Selecting models on temporal validation and judging them on a random share (or the reverse) measures
    the mismatch, not the models: on MovieLens-100K `auto` validated temporally scores 0.28 NDCG@10 on a
    random split and 0.50 when validated at random. Production (`recstack train`, the loop) asks "what next?"
    and `auto`'s own default already answers it from the data.
    """
    if "validation" in model_cls.config_type.model_fields and "validation" not in params:
        return {**params, "validation": question}
    return params


@dataclass(frozen=True)
class Holdout:
    """Which interactions are held out: `share` of them (0 < share < 1), per user at random with `seed`
    (`user`), each user's newest (`user-temporal`) or the newest of all (`temporal`; every held-out event is
    at or after every training event)."""

    kind: HoldoutKind = "user"
    share: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0:
            raise ConfigurationError(f"hold-out share must be strictly between 0 and 1, got {self.share}")

    @classmethod
    def for_data(cls, interactions: pd.DataFrame, share: float = 0.2, seed: int = 42) -> Holdout:
        """Each user's newest `share` when every interaction has a timestamp, else a random `share` per user."""
        return cls("user-temporal" if has_timestamps(interactions) else "user", share, seed)

    def split(self, interactions: pd.DataFrame) -> Split:
        if self.kind == "user":
            return stratified_by_user(interactions, ratio=1 - self.share, seed=self.seed)
        if self.kind == "user-temporal":
            return temporal_by_user(interactions, ratio=1 - self.share)
        return temporal(interactions, quantile=1 - self.share)

    def describe(self) -> str:
        """The split as the run parameter `split` records it."""
        if self.kind == "user":
            return f"stratified_by_user(ratio={1 - self.share}, seed={self.seed})"
        if self.kind == "user-temporal":
            return f"temporal_by_user(ratio={1 - self.share})"
        return f"temporal(quantile={1 - self.share})"


@dataclass(frozen=True)
class Evaluation:
    """Metrics of a model fitted on the training part and scored on the held-out part."""

    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    test_users: int


def evaluation_split(
    interactions: pd.DataFrame, kind: SplitKind, ratio: float, seed: int = 42, leave_out: int = 1
) -> tuple[HoldoutKind | Literal["item", "leave-last"], Split]:
    """The train/test split `recstack evaluate --split kind` names, and the kind it resolved to.

    `ratio` is the training share (for `temporal`, the time quantile); `auto` is `user-temporal` with a
    timestamp on every interaction and `user` otherwise. An empty part is a `ConfigurationError`.
    """
    resolved = Holdout.for_data(interactions, 1 - ratio, seed).kind if kind == "auto" else kind
    if resolved == "user":
        parts = _splits.stratified_by_user(interactions, ratio=ratio, seed=seed)
    elif resolved == "user-temporal":
        parts = _splits.temporal_by_user(interactions, ratio=ratio)
    elif resolved == "item":
        parts = _splits.stratified_by_item(interactions, ratio=ratio, seed=seed)
    elif resolved == "temporal":
        parts = _splits.temporal(interactions, quantile=ratio)
    elif resolved == "leave-last":
        parts = _splits.leave_last_out(interactions, n=leave_out)
    else:
        raise ConfigurationError(f"unknown split {kind!r}")
    if parts.train.empty or parts.test.empty:
        raise ConfigurationError(f"the {resolved} split left an empty part ({len(parts.train)}/{len(parts.test)} rows)")
    return resolved, parts


def relevant_pairs(train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame:
    """The held-out (user, item) pairs that count as hits: positive strength under the weighting inferred
    from the training part (a skip or a bounce is not a success; every rating is), and not already seen in
    training (a seen item is never recommended, so it could only lower every model's score alike)."""
    from recstack.processing.weighting import infer, weigh

    pairs = weigh(test, infer(train, items), items)
    pairs = pairs.loc[pairs["weight"] > 0, ["user_id", "item_id"]]
    seen = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    joined = pairs.merge(seen, on=["user_id", "item_id"], how="left", indicator=True)
    return joined.loc[joined["_merge"] == "left_only", ["user_id", "item_id"]].reset_index(drop=True)


def item_categories(items: pd.DataFrame | None) -> dict[str, list[str]] | None:
    """Item id → [category] for the diversity metric; None without categories."""
    if items is None or "category" not in items:
        return None
    known = items.loc[items["category"].notna(), ["item_id", "category"]]
    return {str(i): [str(c)] for i, c in zip(known["item_id"], known["category"], strict=True)} or None


def score_recommendations(
    model: Recommender[Any],
    train: pd.DataFrame,
    relevant: pd.DataFrame,
    items: pd.DataFrame | None,
    k: int = 10,
) -> dict[str, float]:
    """`model`'s top-k for every user with relevant pairs, scored against them.

    Items of `train` (each user's history before the hold-out) never count in the list, also when `model`
    was fitted on less than `train` (the loop's champion): serving filters a user's history at request time,
    so a model must not lose slots to items the user already consumed.
    """
    from recstack.evaluation.report import EvaluationOptions, evaluate_recommendations

    users = pd.unique(relevant["user_id"])
    recommendations = _unseen_top_k(model, users, train, k)
    options = EvaluationOptions(
        k=k, catalogue=list(pd.unique(train["item_id"].astype(str))), item_categories=item_categories(items)
    )
    return {name: float(v) for name, v in evaluate_recommendations(recommendations, relevant, train, options).items()}


def _unseen_top_k(model: Recommender[Any], users: np.ndarray, train: pd.DataFrame, k: int) -> pd.DataFrame:
    history = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    history = history.loc[history["user_id"].isin(set(users.tolist()))]
    known = model.users.index(history["user_id"].to_numpy(dtype=object))
    item_idx = model.items.index(history["item_id"].to_numpy(dtype=object))
    unseen_by_model = np.ones(len(history), dtype=bool)
    if model.seen_ is not None:
        ok = (known >= 0) & (item_idx >= 0)
        unseen_by_model[ok] = np.asarray(model.seen_[known[ok], item_idx[ok]]).ravel() == 0
    extra_rows = history.loc[unseen_by_model & (item_idx >= 0)]
    extra = int(extra_rows.groupby("user_id").size().max()) if not extra_rows.empty else 0
    recs = model.recommend(users, k=k + extra)
    if extra:
        marked = recs.merge(extra_rows.assign(_seen=True), on=["user_id", "item_id"], how="left")
        recs = marked.loc[marked["_seen"].isna()].drop(columns="_seen")
        recs = recs.assign(rank=recs.groupby("user_id", sort=False).cumcount() + 1)
    return recs.loc[recs["rank"] <= k].reset_index(drop=True)


def evaluate_holdout(
    make: Callable[[], Recommender[Any]],
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    holdout: Holdout,
    k: int = 10,
) -> Evaluation:
    """Fit `make()` on the training part of `holdout` and score its top-k on the held-out part."""
    split = holdout.split(interactions)
    relevant = relevant_pairs(split.train, split.test, items)
    if relevant.empty:
        raise ConfigurationError("no held-out interaction is a positive, unseen signal: too little data to evaluate")
    model = make().fit(split.train, items, users)
    metrics = score_recommendations(model, split.train, relevant, items, k)
    return Evaluation(
        metrics=metrics,
        train_rows=len(split.train),
        test_rows=len(relevant),
        test_users=int(relevant["user_id"].nunique()),
    )
