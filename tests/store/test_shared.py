"""SharedState's rules: budgets, breakers, fail-open, local rate limits, refresh, sync.

Most run on a StallingStore (a MemoryStore that hangs or fails on demand, no Redis); the
exactness test runs on both backends (the ``pod`` fixture). Failure scenarios on real Redis
and Sentinel are in test_redis.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from support import eventually
from tokensvc.errors import StoreError
from tokensvc.store.base import Delta, Drain, Snapshot
from tokensvc.store.memory import MemoryStore
from tokensvc.store.shared import SharedState

#: A window length no test can straddle (windows are aligned to the clock).
LONG = 10**9


async def test_shared_state_denies_past_the_limit_with_retry_after() -> None:
    """The (limit+1)-th check in a window is refused with a Retry-After of at least 1 s."""
    shared = SharedState(MemoryStore())
    decisions = [shared.check("rl:c:id:a", 2, 60) for _ in range(3)]
    assert [True, True, False] == [d.allowed for d in decisions]
    assert 1 <= decisions[-1].retry_after <= 60


async def test_memory_backend_has_nothing_to_sync() -> None:
    """On the in-memory store the local count is exact: no sync task (no rate_sync operation
    is ever made), no dirty counters, and decisions count as shared (there is no other pod to
    share with)."""
    operations: list[str] = []
    shared = SharedState(
        MemoryStore(), sync_interval=0.001, on_operation=lambda op, _s, _o: operations.append(op)
    )
    await shared.start()
    try:
        decisions = [shared.check("k", 100, 60) for _ in range(10)]
        await asyncio.sleep(0.01)
    finally:
        await shared.stop()
    assert (0, True, True) == (
        shared.rates.dirty,
        "rate_sync" not in operations,
        all(d.shared for d in decisions),
    )
    assert "snapshot" in operations  # the hook does see this store's operations


async def test_shared_state_refresh_follows_memory_store_changes() -> None:
    """A drain written to the store is in the snapshot after a change notification."""
    store = MemoryStore()
    shared = SharedState(store, refresh_interval=60)
    await shared.start()
    try:
        await store.drain("dublin", 60, "test")
        await eventually(lambda: "dublin" in shared.snapshot.drained(time.time()), 2.0)
    finally:
        await shared.stop()
    assert frozenset({"dublin"}) == shared.snapshot.drained(time.time())


class StallingStore(MemoryStore):
    """A store whose calls hang (or fail) on demand: for SharedState's own rules, no Redis."""

    name = "stalling"
    remote = True

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.calls = 0

    async def _misbehave(self) -> None:
        self.calls += 1
        if self.mode == "ok":
            return
        if self.mode == "hang":
            await asyncio.sleep(3600)
        raise StoreError("down")

    async def add_counts(self, deltas: Sequence[Delta]) -> list[int]:
        await self._misbehave()
        return [0] * len(deltas)

    async def ping(self) -> None:
        await self._misbehave()

    async def snapshot(self) -> Snapshot:
        await self._misbehave()
        raise AssertionError("unreachable")

    async def jwks_get(self, url: str) -> bytes | None:
        await self._misbehave()
        return None

    async def changes(self) -> AsyncIterator[None]:
        await self._misbehave()
        yield None


async def test_hanging_store_costs_syncs_their_timeout_then_nothing() -> None:
    """With a hanging store, each of the first syncs waits only its timeout, then the breaker
    stops calling it: 20 check+sync rounds make 3 calls, every check is allowed, and after the
    first failed sync decisions say they were counted per pod; every sync reports failure."""
    store = StallingStore("hang")
    shared = SharedState(store, sync_timeout=0.02, breaker_threshold=3, breaker_cooldown=10)
    started = time.perf_counter()
    decisions, synced = [], []
    for _ in range(20):
        decisions.append(shared.check("k", 100, 60))
        synced.append(await shared.sync())
    elapsed = time.perf_counter() - started
    assert (3, [True] * 20, [True] + [False] * 19) == (
        store.calls,
        [d.allowed for d in decisions],
        [d.shared for d in decisions],
    )
    assert elapsed < 3 * 0.02 + 0.2
    assert (True, [False] * 20) == (shared.degraded, synced)


async def test_failing_store_rate_limits_locally() -> None:
    """When the store fails, limits still apply, per pod: the 4th check of 3/window is refused
    (failed syncs between checks lose no hits)."""
    shared = SharedState(StallingStore("fail"))
    decisions = []
    for _ in range(4):
        decisions.append(shared.check("k", 3, 60))
        await shared.sync()
    assert [True, True, True, False] == [d.allowed for d in decisions]


async def test_sync_probes_the_store_when_nothing_is_left_to_send() -> None:
    """After failed syncs whose hits were dropped (their window ended), a sync with nothing to
    send still probes the store, so decisions count as shared again once it answers."""
    store = StallingStore("fail")
    shared = SharedState(store, breaker_threshold=100)
    shared.rates._clock = lambda: 1_700_000_000.0
    shared.check("k", 10, 60)
    failed = await shared.sync()
    shared.rates._clock = lambda: 1_700_000_100.0  # the window has ended
    still_down = await shared.sync()  # the probe fails too
    store.mode = "ok"
    recovered = await shared.sync()
    assert (False, False, True, True, False) == (
        failed,
        still_down,
        recovered,
        shared.check("k", 10, 60).shared,
        shared.degraded,
    )


async def test_stop_during_a_hanging_sync_keeps_the_hits() -> None:
    """A sync cancelled mid-flight (shutdown) gives its hits back to pending."""
    shared = SharedState(StallingStore("hang"), sync_timeout=10)
    shared.check("k", 100, 60)
    task = asyncio.create_task(shared.sync())
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (1, 1) == (shared.rates.dirty, shared.rates.count("k", 60))


async def test_failed_refresh_keeps_the_last_snapshot_and_reports_degraded() -> None:
    """A failed refresh keeps serving the previous snapshot; health says degraded."""
    store = StallingStore("fail")
    shared = SharedState(store)
    shared.snapshot = Snapshot(drains={"dublin": Drain("dublin", time.time() + 60)})
    ok = await shared.refresh()
    assert (False, frozenset({"dublin"}), "degraded") == (
        ok,
        shared.snapshot.drained(time.time()),
        shared.health()["status"],
    )


async def test_jwks_get_never_raises() -> None:
    """jwks_get answers None when the store fails."""
    shared = SharedState(StallingStore("fail"))
    assert None is await shared.jwks_get("https://idp.example.com/jwks")


async def test_operation_hook_sees_outcomes() -> None:
    """The metrics hook receives each operation's name and outcome."""
    seen: list[tuple[str, str]] = []
    shared = SharedState(
        StallingStore("fail"),
        breaker_threshold=1,
        breaker_cooldown=10,
        on_operation=lambda op, _s, outcome: seen.append((op, outcome)),
    )
    shared.check("k", 1, 60)
    await shared.sync()
    await shared.sync()
    assert [("rate_sync", "error"), ("rate_sync", "open")] == seen


async def test_rate_limit_is_exact_within_one_pod(pod: SharedState) -> None:
    """7/window: exactly 7 of 10 checks are allowed, with syncs in between or not, and the
    refused ones carry a Retry-After."""
    decisions = [pod.check("rl:c:id:alice", 7, LONG) for _ in range(4)]
    await pod.sync()
    decisions += [pod.check("rl:c:id:alice", 7, LONG) for _ in range(6)]
    await pod.sync()
    assert [True] * 7 + [False] * 3 == [d.allowed for d in decisions]
    assert all(d.shared for d in decisions) and decisions[-1].retry_after >= 1


async def test_failovers_seen_is_the_stores_count() -> None:
    """SharedState reports the primary changes its store noticed (for the metric)."""
    store = StallingStore("ok")
    store.failovers = 2
    assert 2 == SharedState(store).failovers_seen
