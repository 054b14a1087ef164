"""Serving's fallback reason for an item is the model's own declaration, not a list of model names."""

from __future__ import annotations

from typing import ClassVar

from recstack.models.ease import EASE
from recstack.models.tfidf import TfidfRecommender
from recstack.serving.recommender_service import ServingModel
from recstack.testing.recommender import make_platform


class Editorial(EASE):
    """EASE under another name that declares its own reason."""

    name: ClassVar[str] = "editorial"
    reason: ClassVar[str] = "editors' pick"


def test_the_reason_is_what_the_model_declares() -> None:
    platform = make_platform()
    reasons = {
        cls.name: ServingModel.build(cls().fit(platform.train, items=platform.items), 1).reason
        for cls in (EASE, TfidfRecommender, Editorial)
    }
    assert reasons == {"ease": "collaborative", "tfidf": "content", "editorial": "editors' pick"}
