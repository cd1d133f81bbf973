"""CircuitBreaker: stop calling a failing backend for a while, then probe it.

    closed     calls go through; ``threshold`` consecutive failures open the breaker
    open       no calls for ``cooldown`` seconds
    half-open  one probe at a time: its success closes the breaker, its failure reopens it;
               a probe that never reports (its caller was cancelled) is replaced by a new one
               after another ``cooldown``

The clock is injectable (``time.monotonic`` by default), so tests drive it with a fixed one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """See the module docstring. Not thread-safe: one event loop uses it."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self._since = 0.0  # when it opened, or when the current probe started

    def allow(self) -> bool:
        if self.state == self.CLOSED:
            return True
        now = self._clock()
        if now - self._since < self.cooldown:
            return False
        self.state, self._since = self.HALF_OPEN, now
        return True

    def success(self) -> None:
        self.state, self.failures = self.CLOSED, 0

    def failure(self) -> None:
        self.failures += 1
        if self.state == self.HALF_OPEN or self.failures >= self.threshold:
            self.state, self._since = self.OPEN, self._clock()

    @property
    def closed(self) -> bool:
        return self.state == self.CLOSED
