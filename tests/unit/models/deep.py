"""What the deep-model tests share: PyTorch present, or the test fails in CI and skips elsewhere."""

from __future__ import annotations

import importlib.util

from conftest import unavailable


def require_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        unavailable("torch", "not installed: pip install -e '.[deep]'")
