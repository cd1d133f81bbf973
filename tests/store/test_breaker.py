"""CircuitBreaker on a fixed clock: closed, open, half-open."""

from __future__ import annotations

from tokensvc.store.breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    """Three failures in a row open the breaker: calls are refused."""
    breaker = CircuitBreaker(threshold=3, cooldown=1.0, clock=FakeClock())
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert (False, "open") == (breaker.allow(), breaker.state)


def test_breaker_success_resets_the_failure_count() -> None:
    """A success between failures keeps the breaker closed."""
    breaker = CircuitBreaker(threshold=3, cooldown=1.0, clock=FakeClock())
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert "closed" == breaker.state


def test_breaker_half_open_allows_one_probe_after_cooldown() -> None:
    """After the cooldown exactly one probe is let through; others wait."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    assert [True, False] == [breaker.allow(), breaker.allow()]


def test_breaker_probe_success_closes_and_failure_reopens() -> None:
    """The probe's outcome decides: success closes, failure reopens for another cooldown."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    breaker.allow()
    breaker.failure()
    reopened = (breaker.state, breaker.allow())
    clock.now += 1.0
    breaker.allow()
    breaker.success()
    assert (("open", False), "closed") == (reopened, breaker.state)


def test_breaker_abandoned_probe_is_replaced_after_cooldown() -> None:
    """A probe that never reports (cancelled caller) does not wedge the breaker half-open."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    breaker.allow()  # probe started, never reports
    clock.now += 1.0
    assert breaker.allow()
