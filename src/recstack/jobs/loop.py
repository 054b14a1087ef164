"""The feedback loop: watch the champion online, retrain when enough has happened, promote only on a win.

Each run makes up to two decisions, online rule first:

1. Online (`check_online`): a champion on probation (promoted, not restored by a rollback, less than
   `rollback_window_s` ago) with at least `rollback_min_impressions` matured impressions (served at least
   `feedback_window_s` ago, so their feedback window has closed) is compared with the previous champion's
   impressions from its own time as champion. Its positive-feedback rate below the previous one's by more
   than `rollback_margin` (relative) rolls it back; otherwise it is kept. Not applicable → no decision.
2. Retrain (`check_retrain`): with at least one new event since the champion's snapshot and either
   `min_events` of them or a snapshot older than `max_age_s`, a new snapshot is written; the challenger
   (`model`, else the champion's own class and params) is fitted on everything but the hold-out (each
   user's newest `holdout` share of the snapshot, the rule `recstack train` and `auto` use too:
   `Holdout.for_data`), the champion's class and params on what the champion knew (its snapshot's events
   outside the hold-out), and both are scored on the same held-out events with the same relevance rule and
   the same history filter. The challenger wins when its champion metric exceeds
   the champion's by more than `margin` (relative); it is then refitted on the whole snapshot, registered
   and promoted. Otherwise the champion is kept and nothing is registered.

Every decision is logged as a run of the MLflow experiment `<model_name>-loop`; the decisions that concern a
version (promoted, replaced, kept, rolled back, restored) also go on that version's `LOOP_DECISION_TAG`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import pandas as pd

from recstack.errors import RecstackError
from recstack.evaluation.holdout import Evaluation, Holdout, relevant_pairs, score_recommendations
from recstack.jobs import impression_features
from recstack.jobs.training import (
    K,
    Progress,
    TrainingData,
    build_model,
    default_model,
    read_snapshot,
    register_model,
)
from recstack.models.base import Recommender
from recstack.registry import CHAMPION_VIA_TAG, PREVIOUS_CHAMPION, ModelVersion
from recstack.storage.impressions import PositiveRule

if TYPE_CHECKING:
    from recstack.registry import Registry
    from recstack.storage.lake import Lake, Snapshot
    from recstack.storage.store import Store

__all__ = [
    "LOOP_DECISION_TAG",
    "Decision",
    "DecisionKind",
    "LoopConfig",
    "check_online",
    "check_retrain",
    "run_forever",
    "run_once",
]

logger = logging.getLogger(__name__)

LOOP_DECISION_TAG: Final = "recstack.loop_decision"
"""Version tag: JSON `{"decision", "at", "summary"}` of the loop's last decision about the version."""

DecisionKind = Literal["promoted", "kept", "rolled_back", "not_triggered"]


@dataclass(frozen=True)
class LoopConfig:
    """The loop's thresholds (the `loop_*`, `feedback_window_s` and `rollback_*` settings), in plain values."""

    min_events: int = 1_000
    max_age_s: float | None = None
    model: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    holdout: float = 0.1
    margin: float = 0.0
    feedback_window_s: float = 3_600.0
    rollback_margin: float = 0.1
    rollback_min_impressions: int = 500
    rollback_window_s: float = 7 * 86_400.0
    positive: PositiveRule = field(default_factory=PositiveRule)
    k: int = K


@dataclass(frozen=True)
class Decision:
    """One decision: which `rule` made it, what it did, why, the champion after it, the other version it
    was about (the previous champion, or the registered challenger) and the numbers it rested on."""

    rule: Literal["online", "retrain"]
    kind: DecisionKind
    reason: str
    champion: int | None
    other: int | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None


def run_once(
    store: Store,
    lake: Lake,
    registry: Registry,
    config: LoopConfig,
    *,
    now_ms: int | None = None,
    progress: Progress | None = None,
) -> list[Decision]:
    """One pass: the online rule, then (unless it rolled back) the retrain rule; every decision is logged.
    Then the ranking features of what rankers served since the last pass go to the lake
    (`jobs.impression_features`; a failure there is logged and never stops the loop)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    decisions: list[Decision] = []
    online = check_online(store, registry, config, now)
    if online is not None:
        decisions.append(_logged(registry, online, now))
    if online is None or online.kind != "rolled_back":
        decisions.append(_logged(registry, check_retrain(store, lake, registry, config, now, progress), now))
    try:
        impression_features.catch_up(store, lake, registry, now)
    except Exception:
        logger.exception("impression features: pass failed; the next pass retries from the same watermark")
    return decisions


def run_forever(
    store: Store,
    lake: Lake,
    registry: Registry,
    config: LoopConfig,
    interval_s: float,
    *,
    stop: threading.Event | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    on_pass: Callable[[list[Decision] | None, float], None] | None = None,
) -> None:
    """`run_once` every `interval_s` until `stop` is set. A recstack error (a store or tracking server down)
    is logged and the next pass tries again; anything else propagates. `on_pass` hears each pass's
    decisions (None for a failed pass) and its seconds, for metrics."""
    stop = stop or threading.Event()
    while not stop.is_set():
        started = time.monotonic()
        decisions: list[Decision] | None = None
        try:
            decisions = run_once(store, lake, registry, config)
            for decision in decisions:
                if on_decision is not None:
                    on_decision(decision)
        except RecstackError as exc:
            logger.warning("feedback loop pass failed, retrying in %.0f s: %s", interval_s, exc)
        if on_pass is not None:
            on_pass(decisions, time.monotonic() - started)
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))


# ---- the online rule -----------------------------------------------------------------------------------


def check_online(store: Store, registry: Registry, config: LoopConfig, now_ms: int) -> Decision | None:
    """Roll back a champion on probation whose positive-feedback rate fell too far below the previous
    champion's; None when the rule does not apply (see the module docstring)."""
    champion = registry.champion()
    if champion is None:
        return None
    previous = _previous_champion(registry)
    since = champion.champion_since_ms
    if previous is None or since is None or champion.tags.get(CHAMPION_VIA_TAG) == "rollback":
        return None
    if now_ms - since > config.rollback_window_s * 1000:
        return None
    window_ms = int(config.feedback_window_s * 1000)
    matured = now_ms - window_ms
    new_n, new_pos = _rate(store, since, matured, window_ms, config.positive, champion.version)
    if new_n < config.rollback_min_impressions:
        logger.info("online rule: version %d has %d matured impressions of %d needed", champion.version, new_n,
                    config.rollback_min_impressions)
        return None
    old_n, old_pos = _rate(store, previous.champion_since_ms or 0, since, window_ms, config.positive, previous.version)
    if old_n < config.rollback_min_impressions:
        logger.info("online rule: previous champion %d has only %d impressions to compare", previous.version, old_n)
        return None
    new_rate, old_rate = new_pos / new_n, old_pos / old_n
    numbers = {
        "impressions": float(new_n), "positives": float(new_pos), "rate": new_rate,
        "previous_impressions": float(old_n), "previous_positives": float(old_pos), "previous_rate": old_rate,
        "relative_drop": (old_rate - new_rate) / old_rate if old_rate > 0 else 0.0,
    }
    compared = f"feedback rate {new_rate:.4f} ({new_n} impressions) vs {old_rate:.4f} of version {previous.version}"
    if old_rate > 0 and new_rate < old_rate * (1.0 - config.rollback_margin):
        restored = registry.rollback()
        return Decision("online", "rolled_back", f"{compared}: below by more than {config.rollback_margin:.0%}",
                        restored.version, champion.version, numbers)
    return Decision("online", "kept", f"{compared}: within {config.rollback_margin:.0%}", champion.version,
                    previous.version, numbers)


def _previous_champion(registry: Registry) -> ModelVersion | None:
    for version in registry.versions():
        if PREVIOUS_CHAMPION in version.aliases:
            return version
    return None


def _rate(
    store: Store, start_ms: int, end_ms: int, window_ms: int, rule: PositiveRule, version: int
) -> tuple[int, int]:
    if end_ms <= start_ms:
        return 0, 0
    frame = store.feedback_rates(start_ms, end_ms, window_ms, rule, [version])
    if frame.empty:
        return 0, 0
    return int(frame["impressions"].sum()), int(frame["positives"].sum())


# ---- the retrain rule ----------------------------------------------------------------------------------


def check_retrain(
    store: Store,
    lake: Lake,
    registry: Registry,
    config: LoopConfig,
    now_ms: int,
    progress: Progress | None = None,
) -> Decision:
    """Retrain when triggered and promote the challenger only when it wins the head-to-head (module docs)."""
    step = progress or (lambda message: None)
    champion = registry.champion()
    known = _snapshot_of(lake, champion)
    total = int(store.counts()["interactions"])
    new_events = total - known.interactions if known is not None else total
    age_s = (now_ms - known.created_at) / 1000 if known is not None else math.inf
    numbers: dict[str, float] = {"new_events": float(new_events), "snapshot_age_s": age_s}
    current = champion.version if champion else None
    old_enough = config.max_age_s is not None and age_s > config.max_age_s
    if new_events <= 0 or not (new_events >= config.min_events or old_enough):
        return Decision("retrain", "not_triggered", f"{new_events} new events (need {config.min_events})"
                        + (f", snapshot {age_s:.0f} s old" if known is not None else ""), current, None, numbers)
    step(f"snapshot of {total:,} interactions…")
    snapshot = lake.write_snapshot(store)
    data = read_snapshot(lake, snapshot)
    holdout = Holdout.for_data(data.interactions, config.holdout)
    split = holdout.split(data.interactions)
    relevant = relevant_pairs(split.train, split.test, data.items) if not split.train.empty else pd.DataFrame()
    if relevant.empty:
        return Decision("retrain", "kept", "no held-out event is a positive, unseen signal", current, None, numbers)
    metric = registry.champion_metric
    loaded = registry.load(champion) if champion is not None else None
    name, make = _challenger(config, loaded)
    step(f"fitting challenger {name} on events before the hold-out…")
    challenger = make().fit(split.train, data.items, data.users)
    ours = score_recommendations(challenger, split.train, relevant, data.items, config.k)
    numbers.update(train_rows=float(len(split.train)), test_pairs=float(len(relevant)),
                   test_users=float(relevant["user_id"].nunique()), challenger=ours.get(metric, math.nan))
    theirs: float | None = None
    if loaded is not None:
        step(f"fitting the champion's {type(loaded).name or type(loaded).__name__} on what it knew…")
        known_end = known.max_timestamp + 1 if known is not None and known.max_timestamp is not None else None
        stamps = split.train["timestamp"].to_numpy(np.int64)
        knew = split.train if known_end is None else split.train.loc[stamps < known_end]
        numbers["champion_train_rows"] = float(len(knew))
        theirs = _champion_score(loaded, knew, split.train, relevant, data, config.k, metric)
        numbers["champion"] = theirs
    value = ours.get(metric, math.nan)
    to_beat = "no champion" if theirs is None else f"{theirs:.4f} of version {current}"
    held = f"{holdout.kind} hold-out, newest {config.holdout:.0%}"
    compared = f"challenger {name} {metric} {value:.4f} vs {to_beat} ({held})"
    if theirs is not None and not (math.isfinite(value) and value > theirs * (1.0 + config.margin)):
        margin = f" by more than {config.margin:.0%}" if config.margin else ""
        return Decision("retrain", "kept", f"{compared}: does not win{margin}", current, None, numbers)
    step(f"refitting {name} on the whole snapshot and registering it…")
    evaluation = Evaluation(ours, len(split.train), len(relevant), int(relevant["user_id"].nunique()))
    version = _register(registry, name, make, data, holdout, evaluation, current, theirs)
    registry.promote(version.version, force=True)
    return Decision("retrain", "promoted", compared, version.version, current, numbers)


def _register(
    registry: Registry, name: str, make: Callable[[], Recommender[Any]], data: TrainingData, holdout: Holdout,
    evaluation: Evaluation, incumbent: int | None, incumbent_score: float | None,
) -> ModelVersion:
    """The winner refitted on the whole snapshot and registered with its head-to-head numbers."""
    fitted = make().fit(data.interactions, data.items, data.users)
    run_params = {
        "snapshot_id": data.snapshot_id, "split": holdout.describe(), "source": "loop",
        "interactions": len(data.interactions), "train_rows": evaluation.train_rows,
        "test_rows": evaluation.test_rows, "test_users": evaluation.test_users, "incumbent": incumbent,
        "incumbent_score": incumbent_score, "fit_seconds": round(fitted.fit_seconds_ or 0.0, 3),
    }
    tags = {"recstack.snapshot": data.snapshot_id} if data.snapshot_id else {}
    return register_model(registry, name, fitted, evaluation, run_params, tags)


def _snapshot_of(lake: Lake, champion: ModelVersion | None) -> Snapshot | None:
    if champion is None:
        return None
    wanted = champion.params.get("snapshot_id") or champion.tags.get("recstack.snapshot")
    return next((s for s in lake.list_snapshots() if s.snapshot_id == wanted), None)


def _challenger(config: LoopConfig, champion: Recommender[Any] | None) -> tuple[str, Callable[[], Recommender[Any]]]:
    """The challenger's name and factory: the configured model, else the champion's class and params."""
    if config.model or champion is None:
        name = config.model or default_model()
        return name, lambda: build_model(name, config.params)
    cls, params = type(champion), champion.params
    return cls.name or cls.__name__, lambda: cls(**params)


def _champion_score(
    champion: Recommender[Any], knew: pd.DataFrame, history: pd.DataFrame, relevant: pd.DataFrame,
    data: TrainingData, k: int, metric: str,
) -> float:
    """The champion's class and params refitted on `knew` (what it was trained on, before the hold-out),
    scored like the challenger: a champion that knew nothing scores 0."""
    if knew.empty:
        return 0.0
    twin = type(champion)(**champion.params).fit(knew, data.items, data.users)
    return score_recommendations(twin, history, relevant, data.items, k).get(metric, math.nan)


# ---- recording -----------------------------------------------------------------------------------------


def _logged(registry: Registry, decision: Decision, now_ms: int) -> Decision:
    params = {"rule": decision.rule, "decision": decision.kind, "reason": decision.reason,
              "champion": decision.champion, "other": decision.other}
    run_id = registry.log_decision(
        params, decision.numbers,
        tags={"mlflow.runName": f"{decision.rule}-{decision.kind}", "recstack.loop.decision": decision.kind},
    )
    for version, summary in _version_notes(decision):
        note = {"decision": summary[0], "at": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="seconds"),
                "summary": summary[1], "run_id": run_id}
        registry.set_tag(version, LOOP_DECISION_TAG, json.dumps(note))
    logger.info("loop %s decision: %s (%s)", decision.rule, decision.kind, decision.reason)
    return Decision(decision.rule, decision.kind, decision.reason, decision.champion, decision.other,
                    decision.numbers, run_id)


def _version_notes(decision: Decision) -> list[tuple[int, tuple[str, str]]]:
    if decision.kind == "promoted" and decision.champion is not None:
        notes = [(decision.champion, ("promoted", decision.reason))]
        if decision.other is not None:
            notes.append((decision.other, ("replaced", f"by version {decision.champion}: {decision.reason}")))
        return notes
    if decision.kind == "rolled_back" and decision.other is not None and decision.champion is not None:
        return [(decision.other, ("rolled back", decision.reason)),
                (decision.champion, ("restored", f"after version {decision.other}: {decision.reason}"))]
    if decision.kind == "kept" and decision.champion is not None:
        return [(decision.champion, ("kept", decision.reason))]
    return []
