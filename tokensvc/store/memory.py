"""MemoryStore: the in-process Store (the embedded default, one pod, nothing shared).

Expired drains, blocks, counters and JWKS documents are dropped lazily. Change notifications
reach every open ``changes()`` subscription (each has its own event), so a subscriber never
misses a change another one consumed.

It is also the status feed's ``LeaseStore`` for one process (with in-memory state each
process polls for itself: the lock only orders the runners of one process), with the same
rules as the Redis scripts (``tokensvc.store.leases`` and ``entries.holds_after``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence

from tokensvc.store.base import Block, Delta, Drain, DrainRecord, Snapshot
from tokensvc.store.entries import HOLD_SECONDS, Entry, holds_after
from tokensvc.store.leases import lease_may_write, lease_releasable

#: Past this many counters, expired ones are dropped before counting (bounds memory).
MAX_COUNTERS = 100_000


class MemoryStore:
    """In-process store; implements ``tokensvc.store.base.Store``."""

    name = "memory"
    remote = False
    failovers = 0

    def __init__(self) -> None:
        self._drains: dict[str, Drain] = {}
        self._blocks: dict[tuple[str, str], Block] = {}
        self._counters: dict[str, tuple[float, int]] = {}  # name -> (expires at, total)
        self._jwks: dict[str, tuple[float, bytes]] = {}
        self._subscribers: set[asyncio.Event] = set()
        self._pins: dict[str, Entry] = {}
        self._holds: dict[str, Entry] = {}
        self._lock: tuple[str, float] | None = None  # (holder, expires at)

    async def ping(self) -> None:
        return None

    async def snapshot(self) -> Snapshot:
        now = time.time()
        self._drains = {e: d for e, d in self._drains.items() if d.until > now}
        self._blocks = {k: b for k, b in self._blocks.items() if b.until is None or b.until > now}
        return Snapshot(dict(self._drains), dict(self._blocks), now)

    async def drain(self, edge: str, seconds: float, reason: str) -> None:
        self._drains[edge] = Drain(edge, time.time() + seconds, reason)
        self._notify()

    async def undrain(self, edge: str) -> None:
        now = time.time()
        stored = self._drains.pop(edge, None)
        if holds_after(None if stored is None else _entry(stored), Entry.tombstone(now)):
            self._holds[edge] = Entry(now, now + HOLD_SECONDS, "undrain hold")
        self._notify()

    async def pin(self, edge: str, seconds: float, reason: str) -> None:
        now = time.time()
        self._pins[edge] = Entry(now, now + seconds, reason)

    async def unpin(self, edge: str) -> None:
        self._pins.pop(edge, None)

    # -- the status feed's LeaseStore (tokensvc.statusfeed.runner) -------------------------

    async def drain_records(self) -> Mapping[str, DrainRecord]:
        now = time.time()
        return {e: DrainRecord(d.until, d.reason) for e, d in self._drains.items() if d.until > now}

    async def write_lease(self, edge: str, reason: str, until: float) -> bool:
        stored = self._drains.get(edge)
        current = None if stored is None else _entry(stored)
        if not lease_may_write(current, self._holds.get(edge), self._pins.get(edge), time.time()):
            return False
        self._drains[edge] = Drain(edge, until, reason)
        self._notify()
        return True

    async def release_lease(self, edge: str, reason: str) -> None:
        stored = self._drains.get(edge)
        if lease_releasable(None if stored is None else _entry(stored), reason):
            del self._drains[edge]
            self._notify()

    async def pins(self) -> Mapping[str, float]:
        now = time.time()
        return {e: p.until for e, p in self._pins.items() if p.live(now) and p.until is not None}

    async def undrain_holds(self) -> frozenset[str]:
        now = time.time()
        return frozenset(e for e, h in self._holds.items() if h.live(now))

    async def end_undrain_hold(self, edge: str) -> None:
        self._holds.pop(edge, None)

    async def acquire_poller_lock(self, holder: str, seconds: float) -> bool:
        now = time.time()
        if self._lock is None or self._lock[1] <= now or self._lock[0] == holder:
            self._lock = (holder, now + seconds)
            return True
        return False

    async def block(self, client: str, identity: str, seconds: float | None, reason: str) -> None:
        until = None if seconds is None else time.time() + seconds
        self._blocks[(client, identity)] = Block(client, identity, until, reason)
        self._notify()

    async def unblock(self, client: str, identity: str) -> None:
        self._blocks.pop((client, identity), None)
        self._notify()

    async def add_counts(self, deltas: Sequence[Delta]) -> list[int]:
        now = time.time()
        if len(self._counters) > MAX_COUNTERS:
            self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        totals = []
        for name, delta, ttl_ms in deltas:
            expires, total = self._counters.get(name, (0.0, 0))
            if expires <= now:
                expires, total = now + ttl_ms / 1000.0, 0
            total += delta
            self._counters[name] = (expires, total)
            totals.append(total)
        return totals

    async def jwks_get(self, url: str) -> bytes | None:
        entry = self._jwks.get(url)
        if entry is None or entry[0] < time.time():
            return None
        return entry[1]

    async def jwks_put(self, url: str, document: bytes, seconds: float) -> None:
        self._jwks[url] = (time.time() + seconds, document)

    async def changes(self) -> AsyncIterator[None]:
        changed = asyncio.Event()
        self._subscribers.add(changed)
        try:
            yield None  # subscribed
            while True:
                await changed.wait()
                changed.clear()
                yield None
        finally:
            self._subscribers.discard(changed)

    async def close(self) -> None:
        return None

    def _notify(self) -> None:
        for changed in self._subscribers:
            changed.set()


def _entry(drain: Drain) -> Entry:
    """A stored drain as an Entry, for the shared rules (memory keeps no versions)."""
    return Entry(0.0, drain.until, drain.reason)
