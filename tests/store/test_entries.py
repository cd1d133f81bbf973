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
    BLOCKS,
    DRAINS,
    HOLDS,
    PREFIX,
    TOMBSTONE_SECONDS,
    Entry,
    block_field,
    decode_hash,
    holds_after,
    parse_block_field,
    retention,
)

LEASE = "statusfeed:c1:major_outage"


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
#: Versions that tie, differ by a microsecond, and differ by seconds; records and tombstones,
#: retained or not; a permanent record; leases with and without an operator entry under them.
VERSIONS = [NOW - 10.0, NOW, NOW + 0.000001]
OPERATOR = [
    Entry(at, at + 60, "r", deleted, retained)
    for at in VERSIONS
    for deleted in (False, True)
    for retained in (False, True)
] + [Entry(NOW, None, "forever")]
UNDER = [
    Entry.tombstone(NOW),
    Entry(NOW - 10.0, None, "forever"),
    Entry(NOW, NOW + 60, "r", True, True),
]
CANDIDATES = OPERATOR + [
    Entry(at, at + until, "statusfeed:c1:major_outage", under=under)
    for at in VERSIONS
    for until in (-5, 60)
    for under in (None, *UNDER)
]


async def test_lua_apply_implements_written_over(redis_node: Node, admin: RegionAdmin) -> None:
    """For every (stored, new) pair of entries, and for nothing or garbage stored, APPLY_LUA
    writes exactly when ``Entry.written_over`` says so, and stores what it says (retained
    when the entry replaces what lasts forever)."""
    raw = redis_node.client()
    stored_cases: list[Entry | str | None] = [None, "garbage", *CANDIDATES]
    expected, actual = [], []
    for n, (stored, new) in enumerate(itertools.product(stored_cases, CANDIDATES)):
        field = f"case{n}"
        if isinstance(stored, Entry):
            raw.hset(PREFIX + DRAINS, field, stored.to_json())
        elif stored is not None:
            raw.hset(PREFIX + DRAINS, field, stored)
        written = new.written_over(stored if isinstance(stored, Entry) else None)
        hold = written is not None and holds_after(
            stored if isinstance(stored, Entry) else None, new
        )
        wrote = await admin.apply(DRAINS, field, new)
        now_stored = Entry.from_json(raw.hget(PREFIX + DRAINS, field) or b"")
        expected.append((written is not None, stored if written is None else written, hold))
        actual.append((wrote, now_stored, raw.hexists(PREFIX + HOLDS, field)))
    assert expected == actual


def test_written_over_retains_what_replaces_a_permanent_entry() -> None:
    """A newer entry over a permanent block, over a retained entry, or over a lease whose
    operator entry is permanent, is written retained; over a block with an expiry it is not."""
    forever, limited = Entry(10.0, None, "b"), Entry(10.0, 100.0, "b")
    lease = Entry(12.0, 50.0, "statusfeed:c1:major_outage", under=forever)
    tomb = Entry.tombstone(20.0, BLOCKS)
    assert [True, True, True, False] == [
        w is not None and w.retained
        for w in (
            tomb.written_over(forever),
            Entry(30.0, 40.0).written_over(Entry.tombstone(20.0).written_over(forever)),
            tomb.written_over(lease),
            tomb.written_over(limited),
        )
    ]


def test_block_tombstones_outlive_every_block() -> None:
    """An unblock's tombstone is kept longer than the longest block with an expiry (365 days);
    a drain's, longer than the longest drain (7 days)."""
    day = 86400.0
    assert (True, True) == (
        Entry.tombstone(0.0, BLOCKS).until == retention(BLOCKS) > 365 * day,
        Entry.tombstone(0.0, DRAINS).until == retention(DRAINS) > 7 * day,
    )


def test_operator_entry_beats_a_lease_as_it_would_its_under() -> None:
    """Over a lease, an operator entry wins only if it would win over the operator entry
    under the lease (as if the lease had never been written)."""
    tomb = Entry.tombstone(20.0)
    lease = Entry(30.0, 90.0, "statusfeed:c1:major_outage", under=tomb)
    assert (False, False, True) == (
        Entry(10.0, 100.0, "old drain").wins_over(lease),
        tomb.wins_over(lease),
        Entry(25.0, 100.0, "new drain").wins_over(lease),
    )


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
        "retained-old": Entry(now - keep - 10, now - keep, deleted=True, retained=True),
        "lease-over-old": Entry(
            now - keep - 5, now - keep, LEASE, under=Entry.tombstone(now - keep - 9)
        ),
        "lease-over-recent": Entry(now - keep - 5, now - keep, LEASE, under=Entry.tombstone(now)),
        "lease-over-retained": Entry(
            now - keep - 5,
            now - keep,
            LEASE,
            under=Entry(now - keep - 9, now - keep, retained=True),
        ),
    }
    raw = redis_node.client()
    for field, entry in cases.items():
        raw.hset(PREFIX + DRAINS, field, entry.to_json())
    expected_gone = {f for f, e in cases.items() if e.prunable(now, keep)}
    removed = await admin.prune([DRAINS], now)
    remaining = set(await admin.entries(DRAINS))
    assert (len(expected_gone), set(cases) - expected_gone) == (removed, remaining)
    assert {"expired-old", "tombstone-old", "edge-of-retention", "lease-over-old"} == expected_gone
