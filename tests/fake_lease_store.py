"""An in-memory LeaseStore for the status-feed tests, expiring records by an injected clock.

``down = True`` makes every method raise ``StoreError``, as the real store does when Redis is
unreachable. Several runners sharing one instance stand for the pods of one region.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tokensvc.errors import StoreError
from tokensvc.statusfeed.decide import REASON_PREFIX
from tokensvc.statusfeed.runner import DrainRecord


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryLeaseStore:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.drains: dict[str, DrainRecord] = {}
        self.pinned: dict[str, float] = {}
        self.holds: set[str] = set()
        self.lock: tuple[str, float] | None = None
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError("store down")

    # -- the operator's side (what `tokensvc edges ...` would write) -------------------------
    def operator_drain(self, edge: str, seconds: float = 3600) -> None:
        self.drains[edge] = DrainRecord(self.clock() + seconds, "operator: maintenance")

    def operator_undrain(self, edge: str) -> None:
        record = self.drains.pop(edge, None)
        if record is not None and record.reason.startswith(REASON_PREFIX):
            self.holds.add(edge)

    def live(self) -> dict[str, DrainRecord]:
        now = self.clock()
        return {e: r for e, r in self.drains.items() if r.until > now}

    def drained(self) -> frozenset[str]:
        return frozenset(self.live())

    # -- LeaseStore ------------------------------------------------------------------------
    async def drain_records(self) -> Mapping[str, DrainRecord]:
        self._check()
        return self.live()

    async def write_lease(self, edge: str, reason: str, until: float) -> bool:
        self._check()
        current = self.live().get(edge)
        if current is not None and not current.reason.startswith(REASON_PREFIX):
            return False
        self.drains[edge] = DrainRecord(until, reason)
        return True

    async def release_lease(self, edge: str, reason: str) -> None:
        self._check()
        current = self.drains.get(edge)
        if current is not None and current.reason == reason:
            del self.drains[edge]

    async def pins(self) -> Mapping[str, float]:
        self._check()
        now = self.clock()
        return {e: until for e, until in self.pinned.items() if until > now}

    async def undrain_holds(self) -> frozenset[str]:
        self._check()
        return frozenset(self.holds)

    async def end_undrain_hold(self, edge: str) -> None:
        self._check()
        self.holds.discard(edge)

    async def acquire_poller_lock(self, holder: str, seconds: float) -> bool:
        self._check()
        now = self.clock()
        if self.lock is None or self.lock[1] <= now or self.lock[0] == holder:
            self.lock = (holder, now + seconds)
            return True
        return False
