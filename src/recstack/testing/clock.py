"""A clock the test moves by hand, for the caches, the tuner and anything else that takes an injectable clock:
time-dependent behaviour is tested exactly, without sleeping and without races on a loaded machine."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """A monotonic clock that only moves when `advance` is called: expiry tests without sleeping or races."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
