"""`auto`'s optional learned ranker: LightGBM LambdaRank over the validation pools (`blend.FoldPools`),
kept only if it beats the blend on validation users it was not trained on.

Off by default (`rerank=False`): on MovieLens it beat the blend on held-back validation users (+0.007
NDCG@10) yet lost 0.005–0.012 on the test split, because members refitted on all the training data score
differently from the validation-fold members the ranker learned from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recstack.errors import MissingExtra
from recstack.models.auto.blend import FoldPools, ndcg_of
from recstack.models.auto.run import AutoRun

__all__ = ["RankerOutcome", "booster", "train_ranker"]


@dataclass(frozen=True)
class RankerOutcome:
    """The trained ranker as LightGBM model text (empty when the blend won), and the numbers behind the
    decision: NDCG@k of the blend and of the ranker on the held-back users, and the trees kept."""

    model: str
    held_blend_ndcg: float
    held_rerank_ndcg: float
    trees: int

    @property
    def kept(self) -> bool:
        return bool(self.model)


def train_ranker(
    run: AutoRun, pools: FoldPools, blend: np.ndarray, names: list[str], rng: np.random.Generator
) -> RankerOutcome:
    """A LambdaRank ranker over the pools of four fifths of the validation users, early-stopped and judged
    on the rest against the blend (`blend`: users × pool scores); it must win by `rerank_margin`."""
    try:
        import lightgbm as lgb
    except ImportError as exc:
        raise MissingExtra("lightgbm", "models") from exc
    cfg = run.config
    label_rows, features, n_relevant = pools.labels, pools.features, pools.n_relevant
    n_users, size = label_rows.shape
    held = np.zeros(n_users, dtype=bool)
    held[rng.permutation(n_users)[: max(1, n_users // 5)]] = True
    train_rows = np.repeat(~held, size)
    label = label_rows.ravel()
    ranker = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=100,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        lambdarank_truncation_level=cfg.k + 10,
        random_state=cfg.seed,
        n_jobs=0,
        verbose=-1,
    )
    run.step(f"training the LambdaRank ranker on {int(train_rows.sum())} pairs")
    ranker.fit(
        pd.DataFrame(features[train_rows], columns=names),
        label[train_rows],
        group=np.full(int((~held).sum()), size),
        eval_X=(pd.DataFrame(features[~train_rows], columns=names),),
        eval_y=(label[~train_rows],),
        eval_group=[np.full(int(held.sum()), size)],
        eval_at=[cfg.k],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )
    predicted = np.asarray(ranker.predict(pd.DataFrame(features[~train_rows], columns=names))).reshape(-1, size)
    ranked = ndcg_of(predicted, label_rows[held], n_relevant[held], cfg.k)
    baseline = ndcg_of(blend[held], label_rows[held], n_relevant[held], cfg.k)
    run.step(f"ranker NDCG@{cfg.k} {ranked:.4f} vs blend {baseline:.4f} on held-back users")
    trees = int(ranker.best_iteration_ or ranker.n_estimators)
    # The ranker must earn its place: a tie or a hair's gain on a few hundred users is noise.
    text = "" if ranked <= baseline + cfg.rerank_margin else str(
        ranker.booster_.model_to_string(num_iteration=ranker.best_iteration_)
    )
    return RankerOutcome(text, baseline, ranked, trees)


def booster(model_text: str) -> Any:
    """A LightGBM booster from the text `train_ranker` kept."""
    try:
        import lightgbm as lgb
    except ImportError as exc:
        raise MissingExtra("lightgbm", "models") from exc
    return lgb.Booster(model_str=model_text)
