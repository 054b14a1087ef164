"""`auto`'s search: which candidates may run, which weighting they get, and their tuned parameters.

Everything here sees training interactions only, through the fit's `AutoRun` (budget, protocol). A
candidate is screened by what its class declares (`Recommender.needs_timestamps`, `needs_item_features`,
`subsumes`, `memory_estimate`), never by its name.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from recstack.errors import RecstackError
from recstack.evaluation.splits import has_timestamps
from recstack.evaluation.tuning import default_params, tune, tune_objective
from recstack.models import catalog
from recstack.models.auto.blend import ndcg_of
from recstack.models.auto.run import AutoRun
from recstack.models.base import Recommender
from recstack.models.ensemble import MemberView, _seen, normalised
from recstack.processing.matrix import Vocabulary
from recstack.processing.weighting import WeightingConfig, infer, variants

__all__ = ["Tuned", "choose_weighting", "describe", "screen", "tune_candidates", "tune_partners"]

logger = logging.getLogger(__name__)

Tuned = dict[str, tuple[dict[str, Any], float]]
"""Candidate name → (constructor keywords, validation NDCG@k)."""


def screen(run: AutoRun, names: list[str], fit_part: pd.DataFrame, items: pd.DataFrame | None) -> list[str]:
    """The candidates that can run on this data, by their declarations: a model that needs timestamps is
    dropped without them, one that `forecasts` unless the run validates temporally, one that needs item
    features without an items frame, one whose
    `memory_estimate` for the items with at least three users exceeds `memory_limit_mb`, and one that
    another applicable candidate `subsumes` (tuning the general one may pick the special case)."""
    timed = has_timestamps(fit_part)
    classes = {name: catalog.resolve(name) for name in names}
    n_users = int(fit_part["user_id"].nunique())
    users_per_item = fit_part.groupby("item_id")["user_id"].nunique()
    n_items = int((users_per_item >= 3).sum())
    kept: list[str] = []
    for name, cls in classes.items():
        if cls.needs_timestamps and not timed:
            logger.info("auto: skipping %s: it needs timestamps", name)
            continue
        if cls.forecasts and not run.temporal:
            logger.info("auto: skipping %s: it forecasts what comes next and validation is random", name)
            continue
        if cls.needs_item_features and items is None:
            logger.info("auto: skipping %s: it needs item features", name)
            continue
        needed_mb = cls.memory_estimate(n_users, n_items, len(fit_part)) / 2**20
        if needed_mb > run.config.memory_limit_mb:
            logger.info(
                "auto: skipping %s: %d items need ~%.0f MiB (limit %.0f)", name, n_items, needed_mb,
                run.config.memory_limit_mb,
            )
            continue
        kept.append(name)
    subsumed = set().union(*(classes[name].subsumes for name in kept)) if kept else set()
    return [name for name in kept if name not in subsumed]


def choose_weighting(
    run: AutoRun, lead: str, frame: pd.DataFrame, items: pd.DataFrame | None
) -> dict[str, WeightingConfig]:
    """The interaction weighting every member gets, as constructor keywords (empty: each infers it).

    Where the data's shape admits several readings (`recstack.processing.weighting.variants`: ratings
    binary or scaled, counts damped or not), the lead candidate with its default parameters is fitted
    with each on the tuning split and the best on validation NDCG is kept.
    """
    cfg = run.config
    options = variants(infer(frame, items))
    if len(options) == 1:
        return {}
    split = run.split(frame, cfg.tuning_ratio)
    scores: list[float] = []
    for option in options:
        if scores and run.left() < (1 - cfg.tuning_share) * cfg.time_budget_s:
            break
        scores.append(run.holdout_ndcg(lead, {"weighting": option}, split, items))
    chosen = options[int(np.argmax(scores))]
    run.step(f"weighting chosen on {lead}: {describe(chosen)} (validation NDCG {max(scores):.4f})")
    return {"weighting": chosen}


def _searchable(cls: type[Recommender[Any]]) -> bool:
    return cls.search_space.__func__ is not Recommender.search_space.__func__  # type: ignore[attr-defined]


def tune_candidates(run: AutoRun, candidates: list[str], frame: pd.DataFrame, items: pd.DataFrame | None) -> Tuned:
    """Each candidate tuned with Optuna in its share of `tuning_share` of the budget (a model without a
    search space is fitted once with its defaults), then confirmed on fresh splits (`confirm`)."""
    cfg = run.config
    tuned: Tuned = {}
    budget_end = run.started + cfg.tuning_share * cfg.time_budget_s
    for position, name in enumerate(candidates):
        share = (budget_end - time.perf_counter()) / (len(candidates) - position)
        run.step(f"tuning {name} ({share:.0f}s, {run.protocol} validation)")
        cls = catalog.resolve(name)
        try:
            if not _searchable(cls):
                score = run.holdout_ndcg(name, dict(run.fixed), run.split(frame, cfg.tuning_ratio), items)
                tuned[name] = ({}, score)
                logger.info("auto: %s validation NDCG@%d %.4f with its defaults", name, cfg.k, score)
                continue
            result = tune(
                cls,  # type: ignore[arg-type]
                frame,
                items=items,
                k=cfg.k,
                n_trials=cfg.max_trials,
                timeout_s=max(share, 1.0),
                seed=cfg.seed,
                validation_ratio=cfg.tuning_ratio,
                fixed=run.fixed,
                temporal=run.temporal,
            )
        except (RecstackError, MemoryError) as exc:
            logger.warning("auto: %s dropped: %s", name, exc)
            continue
        tuned[name] = confirm(run, name, result.best_params, result.best_value, frame, items)
        logger.info("auto: %s validation NDCG@%d %.4f with %s", name, cfg.k, tuned[name][1], tuned[name][0])
    if not tuned:
        raise RecstackError("auto: every candidate model failed on this data")
    return tuned


def confirm(
    run: AutoRun, name: str, params: dict[str, Any], score: float, frame: pd.DataFrame, items: pd.DataFrame | None
) -> tuple[dict[str, Any], float]:
    """Keep tuned parameters only if they also beat the model's defaults on fresh validation splits.

    The best of many trials on one split is partly that split's luck: on MovieLens-latest-small the
    tuned SequenceEASE won its tuning split by 0.002 NDCG@10, lost to the defaults on two other splits
    and lost 0.011 on the test split. `confirm_folds` more splits (seeds 2, 3, …) settle it; the result
    is the winner's mean over them; the tuned parameters must win by `confirm_margin` (relative), since
    the defaults were chosen on many data sets and a hair's gain on two splits is noise (on ML-100K
    protocol B a tuned SequenceEASE won by 0.07 % there and lost 0.002 on the test split). Skipped when
    the defaults won tuning or time is short.
    """
    cfg = run.config
    defaults = default_params(catalog.resolve(name))
    if cfg.confirm_folds == 0 or all(defaults.get(key) == value for key, value in params.items()):
        return params, score
    if run.left() < (1.0 - cfg.tuning_share) * cfg.time_budget_s:
        return params, score
    scores: dict[str, list[float]] = {"tuned": [], "defaults": []}
    for seed in range(2, 2 + cfg.confirm_folds):
        split = run.split(frame, cfg.tuning_ratio, seed=seed)
        for label, chosen in (("tuned", params), ("defaults", {})):
            scores[label].append(run.holdout_ndcg(name, {**chosen, **run.fixed}, split, items))
    tuned_mean, default_mean = float(np.mean(scores["tuned"])), float(np.mean(scores["defaults"]))
    run.step(f"{name}: tuned {tuned_mean:.4f} vs defaults {default_mean:.4f} on {cfg.confirm_folds} fresh splits")
    if tuned_mean > default_mean * (1.0 + cfg.confirm_margin):
        return params, tuned_mean
    return {}, default_mean


def tune_partners(
    run: AutoRun, kept: list[str], tuned: Tuned, frame: pd.DataFrame, item_vocab: Vocabulary,
    items: pd.DataFrame | None,
) -> Tuned:
    """Re-tune every member but the best one for what it adds to the best one, not for its own score.

    A model tuned alone is tuned to be good alone; in a blend it only has to fix the best model's
    mistakes (on MovieLens the ALS that helps EASE most has a high confidence weight and strong
    regularisation, not the standalone optimum). Each trial fits the partner on the tuning split and scores
    the blend of the two (per-user standardised scores, equal weights; the blend stage sets the real
    weights later), starting from the partner's standalone parameters. Skipped for a partner without a
    search space, when the validation users × items matrix would exceed `partner_cells`, or when
    `partner_share` of the budget is gone.
    """
    cfg = run.config
    if len(kept) < 2 or cfg.partner_share == 0:
        return {}
    lead = max(kept, key=lambda name: tuned[name][1])
    fit_part, held_out = run.split(frame, cfg.tuning_ratio)
    users = np.asarray(pd.unique(held_out["user_id"]), dtype=object)
    if len(users) > cfg.max_validation_users:
        users = np.random.default_rng(cfg.seed).choice(users, cfg.max_validation_users, replace=False)
    if len(users) * len(item_vocab) > cfg.partner_cells:
        return {}
    vocab = Vocabulary(np.sort(users.astype(str)))
    rows = np.arange(len(vocab))
    seen = _seen(fit_part, vocab, item_vocab)
    held = _seen(held_out, vocab, item_vocab)
    relevant, n_relevant = held.astype(np.float32), held.sum(axis=1)

    def standardised(name: str, params: dict[str, Any]) -> np.ndarray:
        model = catalog.create(name, **params, **run.fixed).fit(fit_part, items=items)
        return normalised(MemberView(model, vocab, item_vocab).scores(rows), seen).astype(np.float32)

    lead_z = standardised(lead, tuned[lead][0])

    def blended(name: str, params: dict[str, Any]) -> float:
        blend = np.where(seen, -np.inf, lead_z + standardised(name, params))
        return ndcg_of(blend, relevant, n_relevant, cfg.k)

    partners = [name for name in kept if name != lead and _searchable(catalog.resolve(name))]
    out: Tuned = {}
    # Never at the cost of the blend folds: they need the last 35 % of the budget.
    budget_end = time.perf_counter() + min(cfg.partner_share * cfg.time_budget_s, run.left() - 0.35 * cfg.time_budget_s)
    for position, name in enumerate(partners):
        share = (budget_end - time.perf_counter()) / (len(partners) - position)
        if share < 1.0:
            break
        run.step(f"tuning {name} as a partner of {lead} ({share:.0f}s)")
        model_cls: Any = catalog.resolve(name)
        result = tune_objective(
            model_cls.search_space,
            functools.partial(blended, name),
            start=[tuned[name][0] or default_params(model_cls)],
            n_trials=cfg.max_trials,
            timeout_s=share,
            seed=cfg.seed,
        )
        if result is not None:
            out[name] = result
            logger.info("auto: %s as a partner: blend NDCG@%d %.4f with %s", name, cfg.k, result[1], result[0])
    return out


def describe(config: WeightingConfig) -> str:
    """A weighting in words, for the progress messages."""
    kinds = set(config.value_kinds.values())
    if kinds == {"rating"}:
        if config.rating_mode == "scale":
            return f"ratings scaled to the power {config.rating_exponent:g}"
        return f"ratings {config.rating_mode}"
    if kinds == {"count"}:
        return f"counts ({config.count_transform})"
    return "events" if not kinds else ", ".join(sorted(kinds))
