"""MemoryStore specifics (the shared contract is in test_store.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from tokensvc.store.memory import MemoryStore


async def test_every_subscriber_is_notified() -> None:
    """Two open subscriptions each see a change: one consuming it does not hide it from the
    other."""
    store = MemoryStore()
    first, second = store.changes(), store.changes()
    assert isinstance(first, AsyncGenerator) and isinstance(second, AsyncGenerator)
    await anext(first)
    await anext(second)
    await store.undrain("dublin")
    async with asyncio.timeout(2):
        await anext(first)
        await anext(second)
    await first.aclose()
    await second.aclose()
    assert set() == store._subscribers


def test_memory_store_is_local() -> None:
    """The in-memory store is not shared with other pods (no rate-limit sync)."""
    store = MemoryStore()
    assert ("memory", False, 0) == (store.name, store.remote, store.failovers)
