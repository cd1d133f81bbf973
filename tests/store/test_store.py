"""The Store contract, one body per behaviour run on both backends: MemoryStore and RedisStore
on a real valkey-server (the ``store`` fixture)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from tokensvc.store.base import Store


async def test_store_drains_expire_and_undrain(store: Store) -> None:
    """A drain is in the snapshot until it expires or is undrained."""
    await store.drain("dublin", 60, "maintenance")
    await store.drain("tokyo", 0.2, "short")
    await store.drain("sydney", 60, "")
    await store.undrain("sydney")
    await asyncio.sleep(0.3)
    snapshot = await store.snapshot()
    assert (frozenset({"dublin"}), "maintenance") == (
        snapshot.drained(time.time()),
        snapshot.drains["dublin"].reason,
    )


async def test_store_blocks_and_unblocks(store: Store) -> None:
    """Blocks apply per (client, identity), with or without expiry; unblock removes them."""
    await store.block("acme", "alice", None, "abuse")
    await store.block("acme", "bob", 60, "")
    await store.block("acme", "carol", 60, "")
    await store.unblock("acme", "carol")
    snapshot = await store.snapshot()
    now = time.time()
    assert [True, True, False, False] == [
        snapshot.is_blocked("acme", "alice", now),
        snapshot.is_blocked("acme", "bob", now),
        snapshot.is_blocked("acme", "carol", now),
        snapshot.is_blocked("other", "alice", now),
    ]


async def test_store_adds_counts_in_one_call(store: Store) -> None:
    """add_counts adds each delta to its counter and returns the totals, in order; an expired
    counter starts again from zero."""
    first = await store.add_counts(
        [("a:60:0", 3, 60_000), ("b:60:0", 1, 60_000), ("short:1:0", 5, 100)]
    )
    await asyncio.sleep(0.2)
    second = await store.add_counts(
        [("b:60:0", 2, 60_000), ("a:60:0", 1, 60_000), ("short:1:0", 1, 100)]
    )
    assert ([3, 1, 5], [3, 4, 1]) == (first, second)


async def test_store_jwks_round_trip(store: Store) -> None:
    """A JWKS document put is got back, byte for byte; an unknown URL gives None."""
    doc = b'{"keys":[{"kty":"RSA","kid":"k1"}]}'
    await store.jwks_put("https://idp.example.com/.well-known/jwks.json", doc, 60)
    assert (doc, None) == (
        await store.jwks_get("https://idp.example.com/.well-known/jwks.json"),
        await store.jwks_get("https://other.example.com/jwks"),
    )


async def test_store_notifies_changes(store: Store) -> None:
    """The first item of a subscription says "subscribed"; a drain written after it produces
    one more item (a change notification), on both stores alike."""
    changes = store.changes()
    assert isinstance(changes, AsyncGenerator)  # both stores implement it as a generator
    try:
        async with asyncio.timeout(2):
            await anext(changes)  # subscribed
        waiter = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.05)
        pending_before_write = not waiter.done()
        await store.drain("dublin", 60, "")
        async with asyncio.timeout(2):
            await waiter
    finally:
        await changes.aclose()
    assert (True, True) == (pending_before_write, waiter.done())


async def test_store_counts_nothing_as_a_failover_in_normal_use(store: Store) -> None:
    """Writes to a healthy store notice no primary change."""
    await store.drain("dublin", 60, "")
    await store.add_counts([("k:60:0", 1, 60_000)])
    assert 0 == store.failovers
