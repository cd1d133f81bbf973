"""Value types of shared state and the ``Store`` protocol every backend implements.

The bottom of ``tokensvc.store``: this module imports nothing from tokensvc. A Store raises
``tokensvc.errors.StoreError`` for every failure and nothing else; whether a failure fails
open is decided by ``tokensvc.store.shared.SharedState``, never by a backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

#: What a rate-limit sync sends per counter: (name, delta, ttl in milliseconds).
Delta = tuple[str, int, int]


@dataclass(frozen=True)
class Drain:
    edge: str
    until: float  # unix seconds; a drain always expires
    reason: str = ""


@dataclass(frozen=True)
class Block:
    client: str
    identity: str
    until: float | None  # unix seconds, None = until unblocked
    reason: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Read-mostly state as of ``taken_at``; consulted on every request without I/O."""

    drains: dict[str, Drain] = field(default_factory=dict)
    blocks: dict[tuple[str, str], Block] = field(default_factory=dict)
    taken_at: float = 0.0

    def drained(self, now: float) -> frozenset[str]:
        return frozenset(e for e, d in self.drains.items() if d.until > now)

    def is_blocked(self, client: str, identity: str, now: float) -> bool:
        block = self.blocks.get((client, identity))
        return block is not None and (block.until is None or block.until > now)


class Store(Protocol):
    """A backend for shared state. Every method raises StoreError on failure, nothing else."""

    #: the backend's name, as /readyz and the logs show it ("memory", "redis")
    name: str
    #: True when other pods share this store (rate-limit counts are synced to it); False for
    #: the in-process store, whose counts the local RateCounter already holds exactly.
    remote: bool

    @property
    def failovers(self) -> int:
        """Primary changes the store has noticed (Sentinel failover, READONLY); 0 in memory."""
        ...

    async def ping(self) -> None: ...

    async def snapshot(self) -> Snapshot: ...

    async def drain(self, edge: str, seconds: float, reason: str) -> None: ...

    async def undrain(self, edge: str) -> None: ...

    async def block(
        self, client: str, identity: str, seconds: float | None, reason: str
    ) -> None: ...

    async def unblock(self, client: str, identity: str) -> None: ...

    async def add_counts(self, deltas: Sequence[Delta]) -> list[int]:
        """Add each ``(name, delta, ttl_ms)`` to its counter, creating it with that TTL, in one
        round trip; return the new totals, in order."""
        ...

    async def jwks_get(self, url: str) -> bytes | None: ...

    async def jwks_put(self, url: str, document: bytes, seconds: float) -> None: ...

    def changes(self) -> AsyncIterator[None]:
        """Yield once subscribed, then whenever drains or blocks may have changed (pub/sub).
        May end, or raise StoreError, at any time; the caller resubscribes."""
        ...

    async def close(self) -> None: ...
