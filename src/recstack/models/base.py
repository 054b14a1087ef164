"""The one Recommender interface every algorithm implements.

A model is a plain object (handbook, convention 2): constructor keywords with defaults form a small typed
config (a pydantic model that round-trips JSON and is saved with the model), `fit` returns the model, and
nothing in it reads files, settings or the network except `save`/`load`.

The base class owns everything that is the same for every algorithm, so an algorithm only implements
`_fit(data)` (from a ready users×items matrix) and `score(user_idx)` (dense scores):

- turning raw interactions into weights (`recstack.processing.weighting`) and into a CSR matrix with id
  vocabularies (`recstack.processing.matrix`);
- top-k selection with seen-item exclusion and item filters, batched over users so memory stays bounded
  whatever the number of users;
- persistence: `model.json` (class, config, weighting, format) plus npz arrays, never pickle.

External ids (str) are used at this interface; indices only inside. `score` is the hook an ensemble or a
learned ranker builds on; `item_embeddings`/`user_embeddings` feed an ANN index.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Generic, Protocol, Self, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from recstack.errors import ConfigurationError
from recstack.models import _persistence
from recstack.models._topk import BLOCK_CELLS, ranked_frame, top_k
from recstack.processing.matrix import Vocabulary, id_array, interaction_matrix, seen_matrix
from recstack.processing.weighting import WeightingConfig, clip_negative, infer, row_weights

__all__ = [
    "ItemFilter",
    "Recommender",
    "RecommenderConfig",
    "TrainingData",
    "Trial",
    "top_k",
]

logger = logging.getLogger(__name__)

RECOMMEND_COLUMNS: Final = ("user_id", "item_id", "rank", "score")
SIMILAR_COLUMNS: Final = ("item_id", "similar_item_id", "rank", "score")

ItemFilter = Collection[str] | Callable[[np.ndarray], np.ndarray]
"""Which items may be recommended: a collection of allowed item ids, or a function that receives every item
id (object array, the model's item order) and returns a boolean mask of the same length (True = allowed)."""


class Trial(Protocol):
    """The part of `optuna.trial.Trial` a search space uses (so optuna stays an optional import)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class RecommenderConfig(BaseModel):
    """Hyperparameters common to every model; each algorithm's config extends it.

    `weighting=None` means "infer from the data at fit time"; the weighting actually used is saved with the
    model either way (`Recommender.weighting_`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weighting: WeightingConfig | None = None


C = TypeVar("C", bound=RecommenderConfig)


@dataclass(frozen=True)
class TrainingData:
    """What `fit` hands an algorithm's `_fit`, all aligned to the two vocabularies.

    - `matrix`: users×items CSR (float32) of summed interaction strengths; non-negative when the model
      declares `non_negative`.
    - `interactions`: the training rows with `user_idx`, `item_idx` (int64) and `weight` (float64, the row's
      strength) added, in the caller's row order; `timestamp` is there when the caller sent it.
    - `item_features` / `user_features`: the metadata frames indexed by external id in vocabulary order (a
      row of NaN for an item the catalogue does not describe), or None when not given.
    """

    matrix: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary
    interactions: pd.DataFrame
    item_features: pd.DataFrame | None
    user_features: pd.DataFrame | None


class Recommender(ABC, Generic[C]):
    """Base of every model. Subclasses set `name`, `config_type`, and implement `_fit` and `score`.

    Class-level switches an algorithm may flip:
    - `non_negative` (default True): the training matrix drops pairs with a non-positive total.
    - `catalog_items` (default False): items in the `items` frame without interactions join the item
      vocabulary (content-based models can recommend them; collaborative ones cannot score them).
    - `needs_item_features` (default False): `fit` without an `items` frame is a `ConfigurationError`.

    What a model declares about itself, read by `auto` to screen candidates and by serving (never a list of
    model names):
    - `needs_timestamps` (default False): the model learns from the order or time of events and cannot run
      on interactions without a `timestamp` column.
    - `forecasts` (default False): the model is trained to predict each user's next interactions (its
      training target is what came after a cut in time), so a search that validates on a random share of
      interactions leaves it out.
    - `subsumes` (default empty): catalogue names of models this one generalises where it applies (a
      sequence-aware EASE with sequence weight 0 is EASE), so a search need not try both.
    - `reason` (default `collaborative`): what serving says an item was recommended for when `explain`
      gives nothing more specific (`content` for the text models).
    - `needs_extra` (default None): the optional extra (`pip install recstack[…]`) its library comes from.
    - `memory_estimate(n_users, n_items, n_interactions)`: bytes at peak while fitting.
    """

    name: ClassVar[str] = ""
    config_type: ClassVar[type[RecommenderConfig]] = RecommenderConfig
    non_negative: ClassVar[bool] = True
    catalog_items: ClassVar[bool] = False
    needs_item_features: ClassVar[bool] = False
    needs_timestamps: ClassVar[bool] = False
    forecasts: ClassVar[bool] = False
    subsumes: ClassVar[frozenset[str]] = frozenset()
    reason: ClassVar[str] = "collaborative"
    needs_extra: ClassVar[str | None] = None
    block_cells: ClassVar[int] = BLOCK_CELLS

    config: C

    def __init__(self, config: C | None = None, /, **params: Any) -> None:
        """`Model(l2=300.0)` or `Model(config)`; unknown or invalid keywords are a `ConfigurationError`."""
        if config is not None and params:
            raise ConfigurationError(f"{type(self).__name__}: pass a config or keywords, not both")
        try:
            self.config = config if config is not None else self.config_type(**params)  # type: ignore[assignment]
        except ValidationError as exc:
            raise ConfigurationError(f"{type(self).__name__}: invalid parameters: {exc}") from exc
        self.users_: Vocabulary | None = None
        self.items_: Vocabulary | None = None
        self.seen_: sp.csr_matrix | None = None
        self.weighting_: WeightingConfig | None = None
        self.fit_seconds_: float | None = None

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_interactions: int) -> int:
        """Bytes this model needs at peak while fitting data of that size, roughly (for screening, not
        accounting). Default: a sparse model, a few copies of the interactions and a factor row per user and
        item."""
        return int(64 * n_interactions + 8 * 128 * (n_users + n_items))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if k != "weighting")
        return f"{type(self).__name__}({params})"

    @property
    def params(self) -> dict[str, Any]:
        """The config as JSON-ready keywords: `type(model)(**model.params)` is an unfitted twin."""
        return self.config.model_dump(mode="json")

    @property
    def is_fitted(self) -> bool:
        return self.items_ is not None

    @property
    def users(self) -> Vocabulary:
        """The user vocabulary of the training data (indices of `score` rows)."""
        self._require_fitted()
        assert self.users_ is not None
        return self.users_

    @property
    def items(self) -> Vocabulary:
        """The item vocabulary (the column order of `score` and of `item_embeddings`)."""
        self._require_fitted()
        assert self.items_ is not None
        return self.items_

    def _require_fitted(self) -> None:
        if self.items_ is None:
            raise ConfigurationError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    # ---- training -------------------------------------------------------------------------------------

    def fit(
        self, interactions: pd.DataFrame, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None
    ) -> Self:
        """Train on `interactions` (columns `user_id`, `item_id`; optional `event_type`, `value`, `timestamp`
        in epoch ms); returns self.

        A `weight` column, when present, is taken as each row's final strength (the caller weighted
        already); otherwise `config.weighting` (or the preset `infer` picks) computes it. `items` and `users`
        are metadata frames keyed by `item_id` / `user_id`. Refitting replaces all learned state.
        """
        started = time.perf_counter()
        data = self._training_data(interactions, items, users)
        self._fit(data)
        self.users_, self.items_ = data.users, data.items
        self.seen_ = seen_matrix(data.interactions, data.users, data.items)
        self.fit_seconds_ = time.perf_counter() - started
        logger.info(
            "fitted %s on %d users × %d items (%d pairs) in %.2f s",
            type(self).__name__,
            len(data.users),
            len(data.items),
            data.matrix.nnz,
            self.fit_seconds_,
        )
        return self

    def _training_data(
        self, interactions: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None
    ) -> TrainingData:
        missing = [c for c in ("user_id", "item_id") if c not in interactions]
        if missing:
            raise ConfigurationError(f"interactions lack column(s) {missing}")
        if interactions.empty:
            raise ConfigurationError("cannot fit on an empty interactions frame")
        if self.needs_item_features and items is None:
            raise ConfigurationError(f"{type(self).__name__} needs an items frame (titles, categories, tags)")
        frame = interactions.copy()
        frame["user_id"] = frame["user_id"].astype(str).to_numpy(dtype=object)
        frame["item_id"] = frame["item_id"].astype(str).to_numpy(dtype=object)
        if "weight" in frame:
            frame["weight"] = pd.to_numeric(frame["weight"], errors="coerce").fillna(0.0).astype(np.float64)
            self.weighting_ = self.config.weighting
        else:
            self.weighting_ = self.config.weighting or infer(frame, items)
            frame["weight"] = row_weights(frame, self.weighting_, items)
        user_vocab = Vocabulary.from_ids(frame["user_id"])
        item_columns = [frame["item_id"]]
        if self.catalog_items and items is not None:
            item_columns.append(items["item_id"])
        item_vocab = Vocabulary.from_ids(*item_columns)
        frame["user_idx"] = user_vocab.index(frame["user_id"])
        frame["item_idx"] = item_vocab.index(frame["item_id"])
        matrix = interaction_matrix(frame, user_vocab, item_vocab, "weight")
        cap = self.weighting_.max_weight if self.weighting_ is not None else None
        if cap is not None:
            matrix.data = np.minimum(matrix.data, cap)
        if self.non_negative:
            matrix = clip_negative(matrix)
        return TrainingData(
            matrix=matrix,
            users=user_vocab,
            items=item_vocab,
            interactions=frame,
            item_features=self._align(items, "item_id", item_vocab),
            user_features=self._align(users, "user_id", user_vocab),
        )

    @staticmethod
    def _align(frame: pd.DataFrame | None, key: str, vocab: Vocabulary) -> pd.DataFrame | None:
        if frame is None:
            return None
        if key not in frame:
            raise ConfigurationError(f"metadata frame lacks column {key!r}")
        keyed = frame.assign(**{key: frame[key].astype(str)}).drop_duplicates(key, keep="last")
        return keyed.set_index(key).reindex(pd.Index(vocab.ids, name=key))

    @abstractmethod
    def _fit(self, data: TrainingData) -> None:
        """Learn from `data`; called by `fit` before the vocabularies are stored on the model."""

    # ---- scoring --------------------------------------------------------------------------------------

    @abstractmethod
    def score(self, user_idx: np.ndarray) -> np.ndarray:
        """Dense scores (len(user_idx) × n_items, float32, higher = better) for known user indices.

        Seen items are not excluded here: that is `recommend`'s job, so an ensemble or a learned ranker can
        see the raw scores. Column order is `self.items`.
        """

    def explain(self, user_idx: int, item_idx: np.ndarray) -> list[str] | None:
        """One reason per item of a known user's recommendations, for the API (e.g. `collaborative`,
        `because you watched <title>`); None leaves the reason to the serving layer."""
        return None

    def ranking_features(self, user_idx: int, item_idx: np.ndarray) -> tuple[list[str], np.ndarray] | None:
        """The features a learned ranker scored these items of a known user with (names, len × n float32),
        for the impression log; None for a model without a ranker."""
        return None

    def item_embeddings(self) -> np.ndarray | None:
        """Item vectors (n_items × d, float32) whose inner products with `user_embeddings` give `score`,
        or None for models without a vector space (neighbourhood, content-sparse, popularity)."""
        return None

    def user_embeddings(self) -> np.ndarray | None:
        """User vectors (n_users × d, float32) matching `item_embeddings`, or None."""
        return None

    def _item_similarity(self, item_idx: np.ndarray) -> np.ndarray:
        """Dense similarities (len(item_idx) × n_items) behind `similar_items`; default: embedding cosine."""
        vectors = self.item_embeddings()
        if vectors is None:
            raise ConfigurationError(f"{type(self).__name__} does not support similar_items")
        norms = np.linalg.norm(vectors, axis=1)
        normed = vectors / np.where(norms > 0, norms, 1.0)[:, None]
        return (normed[item_idx] @ normed.T).astype(np.float32)

    def _allowed(self, filter: ItemFilter | None) -> np.ndarray | None:
        if filter is None:
            return None
        ids = self.items.ids
        if callable(filter):
            mask = np.asarray(filter(ids), dtype=bool)
            if mask.shape != ids.shape:
                raise ConfigurationError(f"item filter returned shape {mask.shape}, expected {ids.shape}")
            return mask
        allowed = np.zeros(len(ids), dtype=bool)
        index = self.items.index(id_array(filter))
        allowed[index[index >= 0]] = True
        return allowed

    def recommend(
        self,
        user_ids: Iterable[str] | str,
        k: int = 10,
        exclude_seen: bool = True,
        filter: ItemFilter | None = None,
    ) -> pd.DataFrame:
        """The top-`k` items for each user, as a frame `user_id, item_id, rank, score`.

        Users come out in the order asked, ranks are 1-based, scores descending. A user the model has
        never seen gets no rows (cold start is the caller's choice of fallback, e.g. `Popularity`).
        `exclude_seen` drops every item the user interacted with in training, whatever its weight;
        `filter` restricts the candidates (see `ItemFilter`). A user may get fewer than `k` rows when fewer
        items remain.
        """
        self._require_fitted()
        assert self.users_ is not None and self.seen_ is not None
        ids = id_array(user_ids)
        index = self.users_.index(ids)
        known = index >= 0
        if not known.all():
            logger.debug("recommend: %d unknown user(s) get no recommendations", int((~known).sum()))
        return ranked_frame(
            ids[known],
            index[known],
            self.items.ids,
            k,
            self.score,
            RECOMMEND_COLUMNS,
            exclude=self.seen_ if exclude_seen else None,
            allowed=self._allowed(filter),
            block_cells=self.block_cells,
        )

    def similar_items(
        self, item_ids: Iterable[str] | str, k: int = 10, filter: ItemFilter | None = None
    ) -> pd.DataFrame:
        """The `k` items most similar to each given item, as `item_id, similar_item_id, rank, score`.

        An item is never its own neighbour; unknown items get no rows; `filter` as in `recommend`.
        """
        self._require_fitted()
        ids = id_array(item_ids)
        index = self.items.index(ids)
        known = index >= 0
        return ranked_frame(
            ids[known],
            index[known],
            self.items.ids,
            k,
            self._item_similarity,
            SIMILAR_COLUMNS,
            allowed=self._allowed(filter),
            exclude_self=True,
            block_cells=self.block_cells,
        )

    # ---- tuning ---------------------------------------------------------------------------------------

    @classmethod
    def search_space(cls, trial: Trial) -> dict[str, Any]:
        """Keywords for `cls(**params)` suggested by an Optuna trial; empty when nothing is worth tuning."""
        return {}

    # ---- persistence ----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        """The learned arrays `score` needs (dense or sparse), saved to `state.npz`."""
        return {}

    def _restore(self, state: dict[str, Any]) -> None:
        """Inverse of `_state`: set the learned arrays from what `load` read back."""

    def _save_parts(self, directory: Path) -> None:
        """Write what does not fit in `state.npz` (a composite model's members) under `directory`."""

    def _load_parts(self, directory: Path) -> None:
        """Inverse of `_save_parts`, called by `load` after `_restore`."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted model into directory `path` (created if needed) and return it.

        Plain JSON and npz only, nothing pickled; the layout is described in `recstack.models._persistence`.
        """
        self._require_fitted()
        assert self.users_ is not None and self.items_ is not None and self.seen_ is not None
        cls = type(self)
        meta = {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "name": cls.name,
            "config": self.config.model_dump(mode="json"),
            "weighting": self.weighting_.model_dump(mode="json") if self.weighting_ is not None else None,
            "fit_seconds": self.fit_seconds_,
        }
        directory = Path(path)
        saved = _persistence.SavedModel(meta, self.users_, self.items_, self.seen_, self._state())
        _persistence.write(directory, saved)
        self._save_parts(directory)
        return directory

    @classmethod
    def load(cls, path: str | Path) -> Recommender[Any]:
        """Read a model written by `save`. Called on `Recommender` it returns whatever class was saved; on a
        subclass it also checks the saved model is one. Arrays are read with pickle disabled."""
        directory = Path(path)
        saved = _persistence.read(directory)
        target = _resolve_class(saved.meta["class"])
        if not issubclass(target, cls):
            raise ConfigurationError(f"{directory} holds a {target.__name__}, not a {cls.__name__}")
        config: Any = target.config_type.model_validate(saved.meta["config"])
        model = target(config)
        if saved.meta.get("weighting") is not None:
            model.weighting_ = WeightingConfig.model_validate(saved.meta["weighting"])
        model.fit_seconds_ = saved.meta.get("fit_seconds")
        model.users_, model.items_, model.seen_ = saved.users, saved.items, saved.seen
        model._restore(saved.state)
        model._load_parts(directory)
        return model


def _resolve_class(path: str) -> type[Recommender[Any]]:
    """`module:Class` → the class (through the catalogue, which also checks it is a Recommender)."""
    from recstack.models.catalog import resolve

    return resolve(path)
