"""Ranking features of the items users were shown, for training a ranker on what was shown and not taken.

Computed by the feedback loop from the store's impressions table, never by the server. A model's
`ranking_features` are a function of the model version and the (user, item) pair alone: the hybrid scores
a user's candidates with features as of just after their newest event in its own training data, whatever
the time of the request. So the version that served an answer, loaded again here, gives exactly the
features its ranker scored the answer with (point in time by construction), and the serving process,
whose writer thread shares the GIL with the requests, does none of the work — computed there for every
answer it had cost more than the request itself.

The lake's `impressions/` folder keeps a watermark (`_features_watermark.json`; dataset reads skip names
starting with `_`): the served time up to which features were written, so each pass reads only what is new.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from recstack.errors import RecstackError
from recstack.models.base import Recommender
from recstack.models.catalog import resolve
from recstack.storage.impressions import IMPRESSION_COLUMNS

if TYPE_CHECKING:
    from recstack.registry import Registry
    from recstack.storage.lake import Lake
    from recstack.storage.store import Store

__all__ = ["catch_up", "features_of", "has_ranking_features", "watermark", "write_impression_features"]

logger = logging.getLogger(__name__)

WATERMARK: Final = "_features_watermark.json"
LAG_MS: Final = 60_000
"""Impressions younger than this wait for the next pass: the serving writer may still hold them."""
FIRST_WINDOW_MS: Final = 86_400_000
"""Without a watermark, a first pass goes back this far rather than through every impression ever served."""


def has_ranking_features(model_class: type[Recommender[Any]]) -> bool:
    """Whether the class has a learned ranker whose features are worth logging (overrides the base)."""
    return model_class.ranking_features is not Recommender.ranking_features


def features_of(impressions: pd.DataFrame, model: Recommender[Any]) -> pd.DataFrame | None:
    """The impressions one model version served, with `feature_names` and `features` (float32, NaN for an
    item that was not among the user's candidates) per row; users the model does not know are left out, as
    the answers they got were not ranked by it. None when the model has no ranking features."""
    names: list[str] | None = None
    parts: list[pd.DataFrame] = []
    user_idx = model.users.index(impressions["user_id"].astype(str).to_numpy())
    known = impressions.loc[user_idx >= 0].assign(_uidx=user_idx[user_idx >= 0])
    for uidx, rows in known.groupby("_uidx", sort=False):
        # One call per user for all the items they were shown: features depend on (model, user, item) only.
        shown = pd.unique(rows["item_id"].astype(str).to_numpy())
        found = model.ranking_features(int(uidx), model.items.index(shown))
        if found is None:
            return None
        names, matrix = found
        at = pd.Index(shown).get_indexer(rows["item_id"].astype(str).to_numpy())
        parts.append(rows.drop(columns="_uidx").assign(
            features=[np.asarray(r, dtype=np.float32) for r in matrix[at]]
        ))
    if not parts:
        return pd.DataFrame(columns=[*IMPRESSION_COLUMNS, "feature_names", "features"])
    out = pd.concat(parts, ignore_index=True)
    named = pd.Series([names] * len(out), index=out.index, dtype=object)
    out.insert(len(IMPRESSION_COLUMNS), "feature_names", named)
    return out


def write_impression_features(
    store: Store,
    lake: Lake,
    load: Callable[[int], Recommender[Any] | None],
    start_ms: int,
    end_ms: int,
    model_versions: Iterable[int] | None = None,
) -> int:
    """Features of the impressions served in [start_ms, end_ms) (by `model_versions` only, when given) by
    versions `load` returns a model for (None: skip the version), appended to the lake one file per day;
    returns the rows written."""
    frame = store.read_impressions(start_ms, end_ms, model_versions)
    frame = frame.loc[frame["model_version"].notna()]
    written = 0
    for version, rows in frame.groupby("model_version", sort=True):
        model = load(int(version))
        found = features_of(rows, model) if model is not None else None
        if found is None or found.empty:
            continue
        days = pd.to_datetime(found["served_at"], unit="ms", utc=True).dt.strftime("%Y-%m-%d").to_numpy()
        for _, day in found.groupby(days, sort=True):
            lake.write_impression_features(day.reset_index(drop=True))
        written += len(found)
    return written


def catch_up(store: Store, lake: Lake, registry: Registry, now_ms: int) -> int:
    """One pass of the loop: features of the impressions served since the watermark, up to `LAG_MS` before
    `now_ms`, by the registered versions whose kind has a ranker (no other version is loaded, nor its
    impressions read); then the watermark moves. Returns the rows written."""
    start = watermark(lake)
    start = now_ms - FIRST_WINDOW_MS if start is None else start
    end = now_ms - LAG_MS
    if end <= start:
        return 0
    ranked = [v.version for v in registry.versions() if _ranks(v.model_kind)]
    written = 0
    if ranked:
        loaded: dict[int, Recommender[Any] | None] = {}

        def load(version: int) -> Recommender[Any] | None:
            if version not in loaded:
                loaded[version] = registry.load(version)
            return loaded[version]

        written = write_impression_features(store, lake, load, start, end, ranked)
    _set_watermark(lake, end)
    if written:
        logger.info("impression features: %d rows served in [%d, %d) written to the lake", written, start, end)
    return written


def _ranks(kind: str) -> bool:
    try:
        return has_ranking_features(resolve(kind))
    except RecstackError:  # a kind this installation cannot load: its impressions get no features
        return False


def watermark(lake: Lake) -> int | None:
    """The served time (epoch ms) before which impression features were written, None before any pass."""
    path = f"{lake.root}/impressions/{WATERMARK}"
    if not lake.fs.exists(path):
        return None
    with lake.fs.open(path, "rb") as handle:
        return int(json.loads(handle.read())["served_before_ms"])


def _set_watermark(lake: Lake, served_before_ms: int) -> None:
    folder = f"{lake.root}/impressions"
    lake.fs.makedirs(folder, exist_ok=True)
    with lake.fs.open(f"{folder}/{WATERMARK}", "wb") as handle:
        handle.write(json.dumps({"served_before_ms": int(served_before_ms)}).encode())
