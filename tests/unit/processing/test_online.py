"""The in-process online state passes the OnlineState contract; what only it promises."""

from __future__ import annotations

import pytest

from recstack.processing.online import MemoryOnlineState, OnlineState, open_online_state
from recstack.testing.online import Feed, OnlineStateContract


class TestMemoryOnlineState(OnlineStateContract):
    @pytest.fixture
    def online(self) -> OnlineState:
        return MemoryOnlineState(limit=20)

    @pytest.fixture
    def feed(self, online: OnlineState) -> Feed:
        return online.apply


def test_catalog_epoch_moves_on_change() -> None:
    online = MemoryOnlineState()
    before = online.catalog_epoch()
    online.catalog_changed(["i1"])
    assert online.catalog_epoch() > before


def test_open_by_url() -> None:
    assert isinstance(open_online_state("memory://", store=None, limit=3), MemoryOnlineState)  # type: ignore[arg-type]
