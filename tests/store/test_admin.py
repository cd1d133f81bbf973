"""RegionAdmin, the operator's API on one region's Redis, against a real valkey-server:
conditional writes, tombstones, pruning, primary lookup."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis_servers import Node
from tokensvc.store.admin import RegionAdmin
from tokensvc.store.entries import BLOCKS, DRAINS, TOMBSTONE_SECONDS, Entry, block_field
from tokensvc.store.redis import RedisStore


async def test_last_writer_wins_and_tombstones_are_kept(
    redis_node: Node, closing: Callable[[RegionAdmin], RegionAdmin]
) -> None:
    """An older entry does not override a newer one; an undrain leaves a tombstone that an
    older drain cannot overwrite."""
    store = closing(RegionAdmin(redis_node.url))
    now = time.time()
    written = [
        await store.apply(DRAINS, "dublin", Entry(now, now + 60, "new")),
        await store.apply(DRAINS, "dublin", Entry(now - 10, now + 600, "old")),
        await store.apply(DRAINS, "tokyo", Entry.tombstone(now)),
        await store.apply(DRAINS, "tokyo", Entry(now - 1, now + 60, "older drain")),
    ]
    entries = await store.entries(DRAINS)
    assert ([True, False, True, False], "new", True) == (
        written,
        entries["dublin"].reason,
        entries["tokyo"].deleted,
    )


async def test_prune_removes_expired_entries_only(
    redis_node: Node, closing: Callable[[RegionAdmin], RegionAdmin]
) -> None:
    """Prune deletes records and tombstones only once they are both expired and older than
    the tombstone retention; a recently expired record stays as a version marker."""
    store = closing(RegionAdmin(redis_node.url))
    now = time.time()
    await store.apply(DRAINS, "dublin", Entry(now - 100, now - 1))  # expired, recent: kept
    await store.apply(
        DRAINS, "frankfurt", Entry(now - TOMBSTONE_SECONDS - 10, now - TOMBSTONE_SECONDS)
    )  # old: gone
    await store.apply(DRAINS, "tokyo", Entry(now, now + 60))
    await store.apply(DRAINS, "sydney", Entry.tombstone(now - TOMBSTONE_SECONDS - 1))
    await store.apply(DRAINS, "ashburn", Entry.tombstone(now))
    removed = await store.prune([DRAINS])
    assert (2, {"dublin", "tokyo", "ashburn"}) == (removed, set(await store.entries(DRAINS)))


async def test_sync_does_not_resurrect_a_shortened_drain(
    redis_node: Node, closing: Callable[[RegionAdmin], RegionAdmin]
) -> None:
    """A long drain later shortened (the short one has expired) is not brought back by a merge
    with a region that only saw the long one: the expired record outranks it until pruned."""
    store = closing(RegionAdmin(redis_node.url))
    now = time.time()
    await store.apply(DRAINS, "dublin", Entry(now - 200, now - 100))  # shortened, expired
    await store.prune([DRAINS])
    written = await store.apply(DRAINS, "dublin", Entry(now - 300, now + 7 * 86400))  # stale
    reader = RedisStore(redis_node.url)
    try:
        drains = (await reader.snapshot()).drains
    finally:
        await reader.close()
    assert (0, {}) == (written, drains)


async def test_apply_many_counts_what_it_wrote(
    redis_node: Node, closing: Callable[[RegionAdmin], RegionAdmin]
) -> None:
    """apply_many writes each winning entry and counts them; the stored entries of both kinds
    read back, tombstones included."""
    admin = closing(RegionAdmin(redis_node.url))
    now = time.time()
    written = await admin.apply_many(
        DRAINS, {"dublin": Entry(now, now + 60), "tokyo": Entry.tombstone(now)}
    )
    again = await admin.apply_many(DRAINS, {"dublin": Entry(now - 1, now + 60)})
    await admin.apply(BLOCKS, block_field("acme", "eve"), Entry(now, None, "fraud"))
    entries = await admin.connection.read_entries()
    assert (2, 0, {"dublin", "tokyo"}, ["fraud"]) == (
        written,
        again,
        set(entries[DRAINS]),
        [e.reason for e in entries[BLOCKS].values()],
    )


async def test_single_endpoint_primary_is_its_host(
    redis_node: Node, closing: Callable[[RegionAdmin], RegionAdmin]
) -> None:
    """Without Sentinel, writes go to the URL's host; check_primary has nothing to ask."""
    admin = closing(RegionAdmin(redis_node.url))
    await admin.connection.check_primary()
    assert ("127.0.0.1", redis_node.port) == await admin.connection.primary_address()
