"""Clocks: real time on benches, scaled time on emulated rigs, manual time in unit tests.

All times are in seconds. ``now()`` is simulated time since the clock started; ``sleep(s)`` waits for
``s`` seconds of simulated time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What every part of evhil that needs time asks for."""

    @property
    def scale(self) -> float:
        """Simulated seconds per real second (1.0 on a bench)."""
        ...

    def now(self) -> float:
        """Simulated time [s] since the clock started."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time."""
        ...


class ScaledClock:
    """Monotonic time multiplied by ``scale``; ``scale=1`` is real time."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"clock scale must be positive, got {scale}")
        self._scale = scale
        self._t0 = time.monotonic()

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self._scale

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self._scale)


class RealClock(ScaledClock):
    """Wall-clock time, for benches."""

    def __init__(self) -> None:
        super().__init__(1.0)


class ManualClock:
    """Time that moves only when ``advance()`` is called (unit tests, fast in-memory loops)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._changed = threading.Condition()

    @property
    def scale(self) -> float:
        return float("inf")

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._changed:
            self._now += seconds
            self._changed.notify_all()

    def sleep(self, seconds: float) -> None:
        deadline = self._now + seconds
        with self._changed:
            while self._now < deadline:
                if not self._changed.wait(timeout=5.0):
                    raise TimeoutError("ManualClock.sleep: nobody advanced the clock for 5 s")
