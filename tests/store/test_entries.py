"""Stored entries and the one merge rule: the Python rule (``Entry.wins_over``,
``Entry.prunable``) and its Lua twin (APPLY_LUA, PRUNE_LUA) give the same answers on the same
inputs, the Lua run on a real valkey-server."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator

import pytest

from redis_servers import Node
from tokensvc.store.admin import RegionAdmin
from tokensvc.store.entries import (
    DRAINS,
    HOLDS,
    PREFIX,
    TOMBSTONE_SECONDS,
    Entry,
    block_field,
    decode_hash,
    holds_after,
    parse_block_field,
)


def test_merge_rule_later_write_wins_and_tombstone_wins_ties() -> None:
    """Last writer wins on `at`; at equal `at` the tombstone wins."""
    old, new = Entry(10.0, 100.0), Entry(20.0, 50.0)
    tomb = Entry.tombstone(20.0)
    assert (True, False, True, False) == (
        new.wins_over(old),
        old.wins_over(new),
        tomb.wins_over(new),
        new.wins_over(tomb),
    )


def test_operator_entries_win_over_feed_leases_whatever_the_clocks() -> None:
    """An operator's drain or undrain replaces a feed lease even when the lease's `at` is
    later (a pod clock ahead); a lease never replaces an operator's entry by merge."""
    lease = Entry(100.0, 200.0, "statusfeed:c1:major_outage")
    drain, tomb = Entry(50.0, 150.0, "maintenance"), Entry.tombstone(50.0)
    assert (True, True, False, False) == (
        drain.wins_over(lease),
        tomb.wins_over(lease),
        lease.wins_over(drain),
        lease.wins_over(tomb),
    )


def test_undrain_of_a_live_lease_leaves_a_hold() -> None:
    """Only a tombstone over a lease live at the tombstone's `at` leaves an undrain hold."""
    lease = Entry(100.0, 200.0, "statusfeed:c1:major_outage")
    assert (True, False, False, False) == (
        holds_after(lease, Entry.tombstone(150.0)),
        holds_after(lease, Entry.tombstone(250.0)),
        holds_after(Entry(100.0, 200.0, "maintenance"), Entry.tombstone(150.0)),
        holds_after(lease, Entry(150.0, 300.0, "maintenance")),
    )


def test_entry_json_round_trip() -> None:
    """Entries survive their stored JSON form."""
    entry = Entry(1732700000.123456, None, "incident 42")
    assert entry == Entry.from_json(entry.to_json())


def test_block_field_round_trip() -> None:
    """A block's hash field gives back its client and identity, whatever they contain; a
    field that is not a pair of strings gives None."""
    assert [("acme", 'a,"b"[c]'), None, None] == [
        parse_block_field(block_field("acme", 'a,"b"[c]')),
        parse_block_field("[1, 2]"),
        parse_block_field("not json"),
    ]


def test_unreadable_stored_values_are_skipped() -> None:
    """decode_hash keeps the readable entries and drops the rest."""
    good = Entry(1.0, None)
    assert {"a": good} == decode_hash({b"a": good.to_json(), b"b": b"{", "c": '{"until": 1}'})


@pytest.fixture
async def admin(redis_node: Node) -> AsyncIterator[RegionAdmin]:
    region = RegionAdmin(redis_node.url)
    yield region
    await region.close()


NOW = time.time()
#: Versions that tie, differ by a microsecond, and differ by seconds; records and tombstones.
VERSIONS = [NOW - 10.0, NOW, NOW + 0.000001]
CANDIDATES = [Entry(at, at + 60, "r", deleted) for at in VERSIONS for deleted in (False, True)] + [
    Entry(at, at + until, "statusfeed:c1:major_outage") for at in VERSIONS for until in (-5, 60)
]


async def test_lua_apply_implements_wins_over(redis_node: Node, admin: RegionAdmin) -> None:
    """For every (stored, new) pair of entries, and for nothing or garbage stored, APPLY_LUA
    writes exactly when the Python rule says the new entry wins, and the stored value is
    then the winner."""
    raw = redis_node.client()
    stored_cases: list[Entry | str | None] = [None, "garbage", *CANDIDATES]
    expected, actual = [], []
    for n, (stored, new) in enumerate(itertools.product(stored_cases, CANDIDATES)):
        field = f"case{n}"
        if isinstance(stored, Entry):
            raw.hset(PREFIX + DRAINS, field, stored.to_json())
        elif stored is not None:
            raw.hset(PREFIX + DRAINS, field, stored)
        wins = not isinstance(stored, Entry) or new.wins_over(stored)
        hold = wins and holds_after(stored if isinstance(stored, Entry) else None, new)
        written = await admin.apply(DRAINS, field, new)
        now_stored = Entry.from_json(raw.hget(PREFIX + DRAINS, field) or b"")
        expected.append((wins, new if wins else stored, hold))
        actual.append((written, now_stored, raw.hexists(PREFIX + HOLDS, field)))
    assert expected == actual


async def test_lua_prune_implements_prunable(redis_node: Node, admin: RegionAdmin) -> None:
    """PRUNE_LUA deletes exactly the entries ``Entry.prunable`` names, and no others."""
    now, keep = time.time(), TOMBSTONE_SECONDS
    cases = {
        "live": Entry(now, now + 60),
        "expired-recent": Entry(now - 100, now - 1),
        "expired-old": Entry(now - keep - 10, now - keep),
        "old-but-live": Entry(now - keep - 10, now + 60),
        "forever-old": Entry(now - keep - 10, None),
        "tombstone-recent": Entry.tombstone(now),
        "tombstone-old": Entry.tombstone(now - keep - 1),
        "edge-of-retention": Entry(now - keep - 0.5, now - 0.5),
    }
    raw = redis_node.client()
    for field, entry in cases.items():
        raw.hset(PREFIX + DRAINS, field, entry.to_json())
    expected_gone = {f for f, e in cases.items() if e.prunable(now, keep)}
    removed = await admin.prune([DRAINS], now)
    remaining = set(await admin.entries(DRAINS))
    assert (len(expected_gone), set(cases) - expected_gone) == (removed, remaining)
    assert {"expired-old", "tombstone-old", "edge-of-retention"} == expected_gone
