"""``sync`` after long absences and over feed leases, on two real valkey-servers: a tombstone
outlives every entry it cancels (blocks included), and a feed lease written over an operator's
tombstone does not hide that tombstone from a merge."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis_servers import Node
from tokensvc.ops import Ops, Region
from tokensvc.secret import Secret
from tokensvc.store.admin import RegionAdmin
from tokensvc.store.entries import BLOCKS, DRAINS, Entry, block_field
from tokensvc.store.redis import RedisStore
from tokensvc.store.urls import Timeouts

DAY = 86400.0
LEASE = "statusfeed:dublin00001:major_outage"
FIELD = block_field("acme", "mallory")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def two_regions(us: Node, eu: Node, clock: Clock) -> Ops:
    regions = [Region("us-east", Secret(us.url)), Region("eu-west", Secret(eu.url))]
    return Ops(regions, timeouts=Timeouts(call=0.5), region_timeout=1.0, clock=clock)


async def stored(node: Node, kind: str) -> dict[str, Entry]:
    admin = RegionAdmin(node.url)
    try:
        return await admin.entries(kind)
    finally:
        await admin.close()


async def unblock_missed_by(ops: Ops, eu: Node) -> None:
    eu.pause()
    try:
        await ops.unblock("acme", "mallory")
    finally:
        eu.resume()


async def test_unblock_missed_for_months_still_wins_at_sync(
    node_factory: Callable[[], Node],
) -> None:
    """A region that missed the unblock of a 365-day block and stayed away for 60 days (while
    the others synced and pruned) is unblocked by the next sync, not the others re-blocked."""
    us, eu = node_factory(), node_factory()
    clock = Clock(1_700_000_000.0)
    ops = two_regions(us, eu, clock)
    await ops.block("acme", "mallory", 365 * DAY, "fraud")
    clock.now += 1
    await unblock_missed_by(ops, eu)
    clock.now += 60 * DAY
    eu.pause()
    try:
        await ops.sync(BLOCKS)  # prunes what has outlived its retention in us-east
    finally:
        eu.resume()
    await ops.sync(BLOCKS)
    shown = await ops.show(BLOCKS)
    assert [{}, {}] == [r.entries for r in shown]


async def test_unblock_of_a_permanent_block_is_never_forgotten(
    node_factory: Callable[[], Node],
) -> None:
    """The unblock of a permanent block is kept (retained) past every retention, so a region
    that missed it for two years is still unblocked by sync."""
    us, eu = node_factory(), node_factory()
    clock = Clock(1_700_000_000.0)
    ops = two_regions(us, eu, clock)
    await ops.block("acme", "mallory", None, "fraud")
    clock.now += 1
    await unblock_missed_by(ops, eu)
    clock.now += 730 * DAY
    eu.pause()
    try:
        await ops.sync(BLOCKS)
    finally:
        eu.resume()
    await ops.sync(BLOCKS)
    shown = await ops.show(BLOCKS)
    kept = (await stored(us, BLOCKS)).get(FIELD)
    assert ([{}, {}], True) == ([r.entries for r in shown], kept is not None and kept.deleted)


async def test_lease_over_an_undrain_does_not_bring_the_drain_back(
    node_factory: Callable[[], Node],
) -> None:
    """A lease written over an operator's undrain keeps that undrain for merges: a region that
    missed the undrain gets it at sync, the lease's region does not get the old drain back,
    and releasing the lease puts the undrain's tombstone back."""
    us, eu = node_factory(), node_factory()
    clock = Clock(time.time())
    ops = two_regions(us, eu, clock)
    await ops.drain("dublin", 3600, "maintenance")
    clock.now += 1
    eu.pause()
    try:
        await ops.undrain("dublin")
    finally:
        eu.resume()
    tomb = (await stored(us, DRAINS))["dublin"]
    feed = RedisStore(us.url)
    try:
        leased = await feed.write_lease("dublin", LEASE, clock.now + 120)
        await ops.sync(DRAINS)
        us_after, eu_after = await stored(us, DRAINS), await stored(eu, DRAINS)
        await feed.release_lease("dublin", LEASE)
    finally:
        await feed.close()
    released = await stored(us, DRAINS)
    assert (True, LEASE, tomb, tomb) == (
        leased,
        us_after["dublin"].reason,
        eu_after.get("dublin"),
        released.get("dublin"),
    )
