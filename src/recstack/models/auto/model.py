"""`AutoRecommender`: the fit that runs `auto`'s stages in order, and the scoring and persistence of what
it chose. The stages live beside it: `search` (screen, weighting, tuning, partners), `blend` (fold pools,
forward selection) and `ranker` (the optional LambdaRank layer)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from recstack.models import catalog
from recstack.models._rerank import ActivityStats, build_pool, feature_names
from recstack.models.auto import blend as blending
from recstack.models.auto import ranker as ranking
from recstack.models.auto import search
from recstack.models.auto.run import AutoConfig, AutoRun, ProgressCallback
from recstack.models.base import Recommender, TrainingData, Trial
from recstack.models.ensemble import MemberView, _items_frame, normalised

__all__ = ["AutoRecommender"]


class AutoRecommender(Recommender[AutoConfig]):
    """Tuned members plus a learned ranker (or their blend). `report_` says what was chosen and why."""

    name: ClassVar[str] = "auto"
    config_type: ClassVar[type[AutoConfig]] = AutoConfig

    members_: list[Recommender[Any]]
    views_: list[MemberView]
    weights_: np.ndarray
    stats_: ActivityStats
    ranker_: str
    report_: dict[str, Any]
    progress: ProgressCallback | None = None

    # ---- fit ------------------------------------------------------------------------------------------

    def _fit(self, data: TrainingData) -> None:
        cfg = self.config
        frame = data.interactions[[c for c in data.interactions.columns if c not in ("user_idx", "item_idx")]]
        if self.config.weighting is None and self.weighting_ is not None:
            # `weight` here is auto's own inferred reading, not the caller's; passed on, it would override
            # every member's `weighting` and make the weighting search a no-op.
            frame = frame.drop(columns="weight")
        items_frame = _items_frame(data)
        run = AutoRun.start(cfg, frame, self.progress)
        fit_part, _ = run.split(frame, cfg.tuning_ratio)
        candidates = search.screen(run, cfg.candidates, fit_part, items_frame)
        run.step(f"{run.protocol} validation; candidates {candidates}")
        run.fixed = dict(search.choose_weighting(run, candidates[0] if candidates else cfg.candidates[0], frame,
                                                 items_frame))
        tuned = search.tune_candidates(run, candidates, frame, items_frame)
        best = max(score for _, score in tuned.values())
        kept = [name for name, (_, score) in tuned.items() if score >= cfg.keep_within * best]
        partners = search.tune_partners(run, kept, tuned, frame, data.items, items_frame)
        specs = [(name, partners.get(name, tuned[name])[0]) for name in kept]
        self.report_ = {
            "validation_protocol": run.protocol,
            "candidates": candidates,
            "tuning": {name: {"params": p, "validation_ndcg": round(s, 5)} for name, (p, s) in tuned.items()},
            "partner_tuning": {
                name: {"params": p, "validation_blend_ndcg": round(s, 5)} for name, (p, s) in partners.items()
            },
            "members": kept,
            "weighting": {key: value.model_dump(mode="json") for key, value in run.fixed.items()},
        }
        self.weights_ = np.ones(len(specs))
        self.ranker_ = ""
        if len(specs) > 1 and run.left() > 0.3 * cfg.time_budget_s:
            self._learn(run, specs, frame, data, items_frame)
            used = self.weights_ > 0 if not self.ranker_ else np.ones(len(specs), dtype=bool)
            specs = [spec for spec, keep in zip(specs, used, strict=True) if keep]
            self.weights_ = self.weights_[used]
            self.report_["members"] = kept = [name for name, _ in specs]
        elif len(specs) > 1:
            # No time left to learn weights: the best member alone beats an unweighted blend.
            specs = [max(specs, key=lambda spec: tuned[spec[0]][1])]
            self.weights_ = np.ones(1)
            self.report_["members"] = kept = [specs[0][0]]
        run.step("refitting the members on all training data")
        self.members_ = [
            catalog.create(name, **params, **run.fixed).fit(frame, items=items_frame) for name, params in specs
        ]
        self.views_ = [MemberView(m, data.users, data.items) for m in self.members_]
        self.stats_ = ActivityStats.from_interactions(frame, data.users, data.items)
        self.report_["mode"] = "rerank" if self.ranker_ else "blend"
        self.report_["seconds"] = round(time.perf_counter() - run.started, 2)
        run.step(f"done: {self.report_['mode']} over {kept}")

    def _learn(
        self,
        run: AutoRun,
        specs: list[tuple[str, dict[str, Any]]],
        frame: pd.DataFrame,
        data: TrainingData,
        items_frame: pd.DataFrame | None,
    ) -> None:
        """Blend weights from the fold pools, then (with `rerank`) the ranker on the same pools."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        pools = blending.pool_folds(run, specs, self.weights_, frame, data.items, items_frame, rng)
        z = blending.member_scores(pools, len(specs))
        self.weights_, blend_ndcg = blending.forward_selection(
            z, pools.labels, pools.n_relevant, cfg.k, cfg.blend_min_gain
        )
        self.report_["validation"] = {
            "folds": pools.folds,
            "weights": [round(float(w), 3) for w in self.weights_],
            "blend_ndcg": round(blend_ndcg, 5),
        }
        run.step(f"blend weights {np.round(self.weights_, 2).tolist()}: validation NDCG@{cfg.k} {blend_ndcg:.4f}")
        if cfg.rerank and run.left() > 0.3 * cfg.time_budget_s:
            names = feature_names(len(specs), pools.has_time)
            blend = sum((w * zj for w, zj in zip(self.weights_, z, strict=True)), np.zeros_like(z[0]))
            outcome = ranking.train_ranker(run, pools, blend, names, rng)
            self.report_["validation"].update(
                {
                    "held_blend_ndcg": round(outcome.held_blend_ndcg, 5),
                    "held_rerank_ndcg": round(outcome.held_rerank_ndcg, 5),
                    "trees": outcome.trees,
                    "ranker_kept": outcome.kept,
                }
            )
            self.ranker_ = outcome.model

    # ---- scoring --------------------------------------------------------------------------------------

    def blend_scores(self, user_idx: np.ndarray) -> np.ndarray:
        """The members' weighted per-user standardised scores (what `score` is without a ranker)."""
        rows = np.asarray(user_idx)
        seen = self._seen_rows(rows)
        blocks = [normalised(v.scores(rows), seen) for v in self.views_]
        return np.asarray(sum((w * b for w, b in zip(self.weights_, blocks, strict=True))), dtype=np.float64)

    def _seen_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.seen_ is None:
            return np.zeros((len(rows), len(self.items)), bool)
        return np.asarray(self.seen_[rows].toarray(), dtype=bool)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        rows = np.asarray(user_idx)
        out = self.blend_scores(rows)
        if not self.ranker_:
            return out.astype(np.float32)
        pool = build_pool(self.views_, self.weights_, rows, self._seen_rows(rows), self.stats_, self.config.pool_size)
        predicted = self._booster().predict(pool.features).reshape(pool.items.shape)
        # Items outside the pool rank after every pooled item, in blend order.
        out = out - (np.abs(out).max() + np.abs(predicted).max() + 1.0) * 2.0
        out[np.arange(len(rows))[:, None], pool.items] = predicted
        return out.astype(np.float32)

    def _booster(self) -> Any:
        with _BOOSTER_LOCK:
            cached = getattr(self, "_booster_cache", None)
            if cached is None:
                cached = ranking.booster(self.ranker_)
                self._booster_cache = cached
        return cached

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        member = self.members_[0]
        view = np.full((len(item_idx), len(self.items)), -np.inf, dtype=np.float32)
        inner = member.items.index(self.items.ids_of(item_idx))
        cols = member.items.index(self.items.ids)
        known = cols >= 0
        sims = member._item_similarity(np.maximum(inner, 0))
        view[:, known] = sims[:, cols[known]]
        view[inner < 0] = -np.inf
        return view

    def explain(self, user_idx: int, item_idx: np.ndarray) -> list[str] | None:
        """The lead member's reasons when it gives any (a hybrid lead names each item's source)."""
        lead = self.members_[0]
        users, items = self._lead_positions()
        inner = int(users[user_idx])
        if inner < 0:
            return None
        inner_items = items[np.asarray(item_idx, dtype=np.int64)]
        if (inner_items < 0).any():
            return None
        return lead.explain(inner, inner_items)

    def _lead_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """The lead member's user and item index of each of this model's (-1: unknown to it), made once:
        serving asks `explain` on every request, where two vocabulary lookups cost more than the rest."""
        cached: tuple[Recommender[Any], np.ndarray, np.ndarray] | None = getattr(self, "_lead_cache", None)
        lead = self.members_[0]
        if cached is None or cached[0] is not lead:
            cached = (lead, lead.users.index(self.users.ids), lead.items.index(self.items.ids))
            self._lead_cache = cached
        return cached[1], cached[2]

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        return {"pool_size": trial.suggest_int("pool_size", 50, 300, log=True)}

    # ---- persistence ----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "weights": self.weights_,
            "ranker": np.asarray(self.ranker_),
            "report": np.asarray(json.dumps(self.report_)),
            "n_members": np.asarray(len(self.members_)),
            **self.stats_.state("stats_"),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)
        self.ranker_ = str(state["ranker"])
        self.report_ = json.loads(str(state["report"]))
        self.stats_ = ActivityStats.from_state(state, "stats_")
        self._n_members = int(state["n_members"])

    def _save_parts(self, directory: Path) -> None:
        for i, member in enumerate(self.members_):
            member.save(directory / f"member_{i}")

    def _load_parts(self, directory: Path) -> None:
        self.members_ = [Recommender.load(directory / f"member_{i}") for i in range(self._n_members)]
        self.views_ = [MemberView(m, self.users, self.items) for m in self.members_]


_BOOSTER_LOCK = threading.Lock()
