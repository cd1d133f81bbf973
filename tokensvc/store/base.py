"""Value types of shared state and the ``Store`` protocol every backend implements.

The bottom of ``tokensvc.store``: this module imports nothing from tokensvc. A Store raises
``tokensvc.errors.StoreError`` for every failure and nothing else; whether a failure fails
open is decided by ``tokensvc.store.shared.SharedState``, never by a backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

#: The reason prefix of a status-feed lease (as ``tokensvc.store.entries.FEED_PREFIX``; this
#: module imports nothing from tokensvc).
FEED_PREFIX = "statusfeed:"

#: What a rate-limit sync sends per counter: (name, delta, ttl in milliseconds).
Delta = tuple[str, int, int]


@dataclass(frozen=True)
class Drain:
    edge: str
    until: float  # unix seconds; a drain always expires
    reason: str = ""


class DrainRecord(NamedTuple):
    """A live drain as the status feed reads it (operator's or feed lease)."""

    until: float  # unix seconds
    reason: str


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

    _split: list[tuple[float, frozenset[str], frozenset[str]]] = field(
        default_factory=list, compare=False, repr=False
    )

    def drained(self, now: float) -> frozenset[str]:
        return frozenset(e for e, d in self.drains.items() if d.until > now)

    def drain_sets(self, now: float) -> tuple[frozenset[str], frozenset[str]]:
        """(operator drains, feed drains) in force at ``now``. Computed once per snapshot and
        again only when a drain has expired since: the request path calls this every time."""
        if self._split:
            valid_until, operator, feed = self._split[0]
            if now < valid_until:
                return operator, feed
        live = [d for d in self.drains.values() if d.until > now]
        operator = frozenset(d.edge for d in live if not d.reason.startswith(FEED_PREFIX))
        feed = frozenset(d.edge for d in live if d.reason.startswith(FEED_PREFIX))
        valid_until = min((d.until for d in live), default=float("inf"))
        self._split[:] = [(valid_until, operator, feed)]
        return operator, feed

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
