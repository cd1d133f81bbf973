"""The status feed's rules on shared state: the Python rules (``lease_may_write``,
``lease_releasable``) and their Lua twins (LEASE_LUA, RELEASE_LUA) agree on every input, the
Lua run on a real valkey-server; and both stores implement ``LeaseStore`` the same way."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from redis_servers import Node
from tokensvc.store.entries import DRAINS, HOLDS, PINS, PREFIX, Entry
from tokensvc.store.leases import lease_may_write, lease_releasable, lease_written
from tokensvc.store.memory import MemoryStore
from tokensvc.store.redis import RedisStore

LEASE = "statusfeed:c1:major_outage"
NOW = time.time()
STORED: list[Entry | None] = [
    None,
    Entry(NOW - 10, NOW + 60, "maintenance"),  # live operator drain
    Entry(NOW - 10, NOW - 1, "maintenance"),  # expired operator drain
    Entry.tombstone(NOW - 10),  # operator undrain
    Entry(NOW + 5, NOW + 60, LEASE),  # live lease (writer clock ahead)
    Entry(NOW - 10, NOW - 1, "statusfeed:c2:partial_outage"),  # expired other lease
    Entry(NOW - 5, NOW - 1, LEASE, under=Entry.tombstone(NOW - 10)),  # expired, over an undrain
]
SIDE: list[Entry | None] = [  # a hold or a pin
    None,
    Entry(NOW - 10, NOW + 60, "x"),
    Entry(NOW - 10, NOW - 1, "x"),
    Entry.tombstone(NOW - 10),
]


@pytest.fixture
async def redis_store(redis_node: Node) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_node.url)
    yield store
    await store.close()


def _put(raw: object, key: str, field: str, entry: Entry | None) -> None:
    if entry is not None:
        raw.hset(PREFIX + key, field, entry.to_json())  # type: ignore[attr-defined]


async def test_lua_lease_write_implements_lease_may_write(
    redis_node: Node, redis_store: RedisStore
) -> None:
    """For every stored drain, hold and pin, LEASE_LUA writes exactly when the Python rule
    allows it, and stores what ``lease_written`` says: the lease, with the operator's entry
    it replaced under it."""
    raw = redis_node.client()
    expected, actual = [], []
    for n, (stored, hold, pin) in enumerate(itertools.product(STORED, SIDE, SIDE)):
        edge = f"e{n}"
        _put(raw, DRAINS, edge, stored)
        _put(raw, HOLDS, edge, hold)
        _put(raw, PINS, edge, pin)
        allowed = lease_may_write(stored, hold, pin, time.time())
        lease = Entry(0.0, NOW + 120, LEASE)
        written = await redis_store.write_lease(edge, LEASE, NOW + 120)
        now_stored = Entry.from_json(raw.hget(PREFIX + DRAINS, edge) or b"")
        expected.append((allowed, lease_written(stored, lease) if allowed else stored))
        assert now_stored is not None or not written, "a written lease is stored"
        actual.append(
            (written, replace(now_stored, at=0.0) if written and now_stored else now_stored)
        )
    assert expected == actual


async def test_lua_release_implements_lease_releasable(
    redis_node: Node, redis_store: RedisStore
) -> None:
    """RELEASE_LUA releases exactly when the stored record is the named lease, and puts back
    the operator's entry under it (``Entry.under``), or nothing."""
    raw = redis_node.client()
    expected, actual = [], []
    for n, (stored, reason) in enumerate(
        itertools.product(STORED, [LEASE, "maintenance", "statusfeed:c1:partial_outage"])
    ):
        edge = f"e{n}"
        _put(raw, DRAINS, edge, stored)
        remains = stored.under if stored and lease_releasable(stored, reason) else stored
        expected.append(remains)
        await redis_store.release_lease(edge, reason)
        actual.append(Entry.from_json(raw.hget(PREFIX + DRAINS, edge) or b""))
    assert expected == actual


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.valkey)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MemoryStore | RedisStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis_store = RedisStore(request.getfixturevalue("redis_node").url)
    yield redis_store
    await redis_store.close()


async def test_lease_is_a_drain_every_pod_sees(store: MemoryStore | RedisStore) -> None:
    """A written lease is a drain record with its reason, in the snapshot as a feed drain."""
    assert await store.write_lease("ashburn", LEASE, time.time() + 60)
    records = await store.drain_records()
    snapshot = await store.snapshot()
    assert (LEASE, (frozenset(), frozenset({"ashburn"}))) == (
        records["ashburn"].reason,
        snapshot.drain_sets(time.time()),
    )


async def test_operator_drain_blocks_lease_and_is_never_released(
    store: MemoryStore | RedisStore,
) -> None:
    """A live operator drain is neither overwritten nor released by the feed."""
    await store.drain("ashburn", 600, "maintenance")
    written = await store.write_lease("ashburn", LEASE, time.time() + 60)
    await store.release_lease("ashburn", LEASE)
    assert (False, "maintenance") == (written, (await store.drain_records())["ashburn"].reason)


async def test_operator_drain_replaces_a_lease(store: MemoryStore | RedisStore) -> None:
    """An operator's drain over a feed lease wins; the feed's release then leaves it."""
    await store.write_lease("ashburn", LEASE, time.time() + 60)
    await store.drain("ashburn", 600, "maintenance")
    await store.release_lease("ashburn", LEASE)
    assert "maintenance" == (await store.drain_records())["ashburn"].reason


async def test_undrain_of_a_lease_holds_until_ended(store: MemoryStore | RedisStore) -> None:
    """Undraining a live lease records a hold that stops new leases until the feed ends it."""
    await store.write_lease("ashburn", LEASE, time.time() + 60)
    await store.undrain("ashburn")
    held = await store.undrain_holds()
    blocked = await store.write_lease("ashburn", LEASE, time.time() + 60)
    await store.end_undrain_hold("ashburn")
    after = await store.write_lease("ashburn", LEASE, time.time() + 60)
    assert (frozenset({"ashburn"}), False, True) == (held, blocked, after)


async def test_undrain_of_an_operator_drain_holds_nothing(
    store: MemoryStore | RedisStore,
) -> None:
    """Only the undrain of a feed lease leaves a hold."""
    await store.drain("ashburn", 600, "maintenance")
    await store.undrain("ashburn")
    assert frozenset() == await store.undrain_holds()


async def test_pin_blocks_leases_until_unpinned(store: MemoryStore | RedisStore) -> None:
    """A live pin stops the feed from writing a lease; unpin lifts it."""
    await store.pin("ashburn", 600, "known false alarm")
    pins = set(await store.pins())
    blocked = await store.write_lease("ashburn", LEASE, time.time() + 60)
    await store.unpin("ashburn")
    after = await store.write_lease("ashburn", LEASE, time.time() + 60)
    assert ({"ashburn"}, False, True) == (pins, blocked, after)


async def test_poller_lock_one_holder_extended_by_it(store: MemoryStore | RedisStore) -> None:
    """The lock goes to the first asker; only its holder extends it; it frees on expiry."""
    first = await store.acquire_poller_lock("pod-a", 0.3)
    other = await store.acquire_poller_lock("pod-b", 0.3)
    again = await store.acquire_poller_lock("pod-a", 0.3)
    deadline = time.monotonic() + 3
    taken = False
    while not taken and time.monotonic() < deadline:
        taken = await store.acquire_poller_lock("pod-b", 0.3)
    assert (True, False, True, True) == (first, other, again, taken)
