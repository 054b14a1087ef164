"""Short model names → classes, resolved lazily so optional libraries load only when a model is used.

A name is either a short name from `MODELS` or a dotted path `package.module:Class`, so a third-party model
is used the same way as a built-in one (`create("mypkg.models:MyModel", …)`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from recstack.errors import ConfigurationError

if TYPE_CHECKING:
    from recstack.models.base import Recommender

__all__ = ["MODELS", "create", "names", "resolve"]

MODELS: Final[dict[str, str]] = {
    "popularity": "recstack.models.popularity:Popularity",
    "item_knn": "recstack.models.item_knn:ItemKNN",
    "ease": "recstack.models.ease:EASE",
    "als": "recstack.models.als:ALS",
    "bpr": "recstack.models.bpr:BPR",
    "pure_svd": "recstack.models.svd:PureSVD",
    "svd": "recstack.models.svd:SVD",
    "tfidf": "recstack.models.tfidf:TfidfRecommender",
    "item2vec": "recstack.models.item2vec:Item2Vec",
    "text2vec": "recstack.models.text2vec:Text2Vec",
    "rp3beta": "recstack.models.rp3beta:RP3beta",
    "sequence_knn": "recstack.models.sequence_knn:SequenceKNN",
    "sequence_ease": "recstack.models.sequence_ease:SequenceEASE",
    "sasrec": "recstack.models.sequential:SASRec",
    "two_tower": "recstack.models.two_tower:TwoTower",
    "ensemble": "recstack.models.ensemble:Ensemble",
    "hybrid": "recstack.models.hybrid:HybridRecommender",
    "auto": "recstack.models.auto:AutoRecommender",
}


def names() -> list[str]:
    """The built-in model names, in catalogue order."""
    return list(MODELS)


def resolve(name: str) -> type[Recommender[Any]]:
    """The class for a short name or a `module:Class` path; `ConfigurationError` when there is none.

    A missing optional library surfaces as `MissingExtra`, which names the extra to install.
    """
    from recstack.models.base import Recommender

    path = MODELS.get(name, name)
    module_name, sep, qualname = path.partition(":")
    if not sep:
        choices = ", ".join(MODELS)
        raise ConfigurationError(f"unknown model {name!r}; choose one of {choices}, or give module:Class")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import model {path!r}: {exc}") from exc
    if not (isinstance(target, type) and issubclass(target, Recommender)):
        raise ConfigurationError(f"{path!r} is not a Recommender")
    return target


def create(name: str, **params: Any) -> Recommender[Any]:
    """An unfitted model of the named kind, configured by keyword parameters."""
    return resolve(name)(**params)
