"""MemoryStore: the in-process Store (the embedded default, one pod, nothing shared).

Expired drains, blocks, counters and JWKS documents are dropped lazily. Change notifications
reach every open ``changes()`` subscription (each has its own event), so a subscriber never
misses a change another one consumed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from tokensvc.store.base import Block, Delta, Drain, Snapshot

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
        self._drains.pop(edge, None)
        self._notify()

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
