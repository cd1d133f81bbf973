"""The value types of tokensvc.store.base."""

from __future__ import annotations

from tokensvc.store.base import Block, Drain, Snapshot


def test_snapshot_ignores_expired_drains_and_blocks() -> None:
    """Expired drains and blocks no longer apply; a block without expiry always does."""
    now = 1000.0
    snapshot = Snapshot(
        drains={"dublin": Drain("dublin", now + 5), "tokyo": Drain("tokyo", now - 1)},
        blocks={("c", "a"): Block("c", "a", None), ("c", "b"): Block("c", "b", now - 1)},
    )
    assert (frozenset({"dublin"}), True, False) == (
        snapshot.drained(now),
        snapshot.is_blocked("c", "a", now),
        snapshot.is_blocked("c", "b", now),
    )
