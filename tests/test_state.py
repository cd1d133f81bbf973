"""Pure logic of tokensvc.state and tokensvc.redis_store (no servers): breaker, snapshot,
memory store, SharedState's fail-open rules, URL parsing, the merge rule."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from tokensvc.errors import ConfigError, StoreError
from tokensvc.ratelimit import Delta
from tokensvc.redis_store import Entry, RedisStore, parse_url
from tokensvc.secret import Secret
from tokensvc.settings import Settings
from tokensvc.state import (
    Block,
    CircuitBreaker,
    Drain,
    MemoryStore,
    SharedState,
    Snapshot,
    build_shared_state,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    """Three failures in a row open the breaker: calls are refused."""
    breaker = CircuitBreaker(threshold=3, cooldown=1.0, clock=FakeClock())
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert (False, "open") == (breaker.allow(), breaker.state)


def test_breaker_success_resets_the_failure_count() -> None:
    """A success between failures keeps the breaker closed."""
    breaker = CircuitBreaker(threshold=3, cooldown=1.0, clock=FakeClock())
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert "closed" == breaker.state


def test_breaker_half_open_allows_one_probe_after_cooldown() -> None:
    """After the cooldown exactly one probe is let through; others wait."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    assert [True, False] == [breaker.allow(), breaker.allow()]


def test_breaker_probe_success_closes_and_failure_reopens() -> None:
    """The probe's outcome decides: success closes, failure reopens for another cooldown."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    breaker.allow()
    breaker.failure()
    reopened = (breaker.state, breaker.allow())
    clock.now += 1.0
    breaker.allow()
    breaker.success()
    assert (("open", False), "closed") == (reopened, breaker.state)


def test_breaker_abandoned_probe_is_replaced_after_cooldown() -> None:
    """A probe that never reports (cancelled caller) does not wedge the breaker half-open."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    breaker.allow()  # probe started, never reports
    clock.now += 1.0
    assert breaker.allow()


def test_snapshot_ignores_expired_drains_and_blocks() -> None:
    """Expired drains and blocks no longer apply; a block without expiry always does."""
    now = 1000.0
    snapshot = Snapshot(
        drains={"dublin": Drain("dublin", now + 5), "tokyo": Drain("tokyo", now - 1)},
        blocks={("c", "a"): Block("c", "a", None), ("c", "b"): Block("c", "b", now - 1)},
    )
    assert (frozenset({"dublin"}), True, False) == (
        snapshot.drained(now), snapshot.is_blocked("c", "a", now),
        snapshot.is_blocked("c", "b", now),
    )


async def test_shared_state_denies_past_the_limit_with_retry_after() -> None:
    """The (limit+1)-th check in a window is refused with a Retry-After of at least 1 s."""
    shared = SharedState(MemoryStore())
    decisions = [shared.check("rl:c:id:a", 2, 60) for _ in range(3)]
    assert [True, True, False] == [d.allowed for d in decisions]
    assert 1 <= decisions[-1].retry_after <= 60


async def test_memory_backend_has_nothing_to_sync() -> None:
    """On the in-memory store the local count is exact: no sync task, no dirty counters, and
    decisions count as shared (there is no other pod to share with)."""
    shared = SharedState(MemoryStore(), sync_interval=0.001)
    await shared.start()
    try:
        decisions = [shared.check("k", 100, 60) for _ in range(10)]
        await asyncio.sleep(0.01)
    finally:
        await shared.stop()
    assert (0, 0, True) == (shared.rates.dirty, shared.stats.syncs,
                            all(d.shared for d in decisions))


async def test_shared_state_refresh_follows_memory_store_changes() -> None:
    """A drain written to the store is in the snapshot after a change notification."""
    store = MemoryStore()
    shared = SharedState(store, refresh_interval=60)
    await shared.start()
    try:
        await store.drain("dublin", 60, "test")
        await _eventually(lambda: "dublin" in shared.snapshot.drained(time.time()))
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
    first failed sync decisions say they were counted per pod."""
    store = StallingStore("hang")
    shared = SharedState(store, sync_timeout=0.02, breaker_threshold=3, breaker_cooldown=10)
    started = time.perf_counter()
    decisions = []
    for _ in range(20):
        decisions.append(shared.check("k", 100, 60))
        await shared.sync()
    elapsed = time.perf_counter() - started
    assert (3, [True] * 20, [True] + [False] * 19) == (
        store.calls, [d.allowed for d in decisions], [d.shared for d in decisions]
    )
    assert elapsed < 3 * 0.02 + 0.2
    assert (True, 19, 20) == (shared.degraded, shared.stats.local_hits,
                              shared.stats.sync_failures)


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
        failed, still_down, recovered, shared.check("k", 10, 60).shared, shared.degraded
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
        ok, shared.snapshot.drained(time.time()), shared.health()["status"]
    )


async def test_jwks_get_never_raises() -> None:
    """jwks_get answers None when the store fails."""
    shared = SharedState(StallingStore("fail"))
    assert None is await shared.jwks_get("https://idp.example.com/jwks")


async def test_operation_hook_sees_outcomes() -> None:
    """The metrics hook receives each operation's name and outcome."""
    seen: list[tuple[str, str]] = []
    shared = SharedState(StallingStore("fail"), breaker_threshold=1, breaker_cooldown=10,
                         on_operation=lambda op, _s, outcome: seen.append((op, outcome)))
    shared.check("k", 1, 60)
    await shared.sync()
    await shared.sync()
    assert [("rate_sync", "error"), ("rate_sync", "open")] == seen


def test_build_shared_state_without_url_is_memory() -> None:
    """No TOKENSVC_REDIS_URL: in-memory state."""
    assert "memory" == build_shared_state(Settings()).backend


def test_build_shared_state_with_url_is_redis_and_budget_from_settings() -> None:
    """A Redis URL gives a Redis-backed state (no connection is made yet) with the budget and
    the default rate-limit sync interval (100 ms)."""
    shared = build_shared_state(
        Settings(redis_url=Secret("redis://127.0.0.1:1/0"), redis_budget_ms=15)
    )
    assert ("redis", 0.015, 0.1, True) == (
        shared.backend, shared.budget, shared.sync_interval, shared.remote
    )


@pytest.mark.parametrize(
    ("url", "sentinel", "hosts", "service", "db"),
    [
        ("redis://h", False, (("h", 6379),), None, 0),
        ("rediss://:pw@h:6380/2", False, (("h", 6380),), None, 2),
        ("redis+sentinel://a:1,b,c:3/svc", True, (("a", 1), ("b", 26379), ("c", 3)), "svc", 0),
        ("redis+sentinel://u:p@[::1]:5/svc/4", True, (("::1", 5),), "svc", 4),
    ],
)
def test_parse_url_forms(
    url: str, sentinel: bool, hosts: tuple[tuple[str, int], ...], service: str | None, db: int
) -> None:
    """Each documented URL form parses to its hosts, Sentinel service and database."""
    endpoint, _ = parse_url(url)
    assert (sentinel, hosts, service, db) == (
        endpoint.sentinel, endpoint.hosts, endpoint.service, endpoint.db
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://h",
        "redis+sentinel://a:1,b:2",
        "redis://a,b",
        "redis://h:99999",
        "redis://:hunter2@h/x",
        "redis://h?ssl_ca_certs=/x",
        "rediss://h?bogus=1",
    ],
)
def test_parse_url_rejects_bad_urls_without_echoing_them(url: str) -> None:
    """A malformed URL is a ConfigError at construction; the message never contains the URL
    (nor its password)."""
    with pytest.raises(ConfigError) as info:
        RedisStore(url)
    assert "hunter2" not in str(info.value) and url not in str(info.value)


def test_parse_url_takes_password_from_userinfo() -> None:
    """The URL's password is returned apart, and the endpoint's repr has none."""
    endpoint, password = parse_url("redis://user:s%40cret@h:1/0")
    assert ("s@cret", "user") == (password, endpoint.username)
    assert "cret" not in repr(endpoint)


def test_tls_options_apply_to_rediss() -> None:
    """rediss:// query options become TLS settings."""
    endpoint, _ = parse_url("rediss://h?ssl_ca_certs=/ca.pem&ssl_check_hostname=false")
    assert (True, (("ssl_ca_certs", "/ca.pem"), ("ssl_check_hostname", False))) == (
        endpoint.tls, endpoint.tls_options
    )


def test_merge_rule_later_write_wins_and_tombstone_wins_ties() -> None:
    """Last writer wins on `at`; at equal `at` the tombstone wins."""
    old, new = Entry(10.0, 100.0), Entry(20.0, 50.0)
    tomb = Entry.tombstone(20.0)
    assert (True, False, True, False) == (
        new.wins_over(old), old.wins_over(new), tomb.wins_over(new), new.wins_over(tomb)
    )


def test_entry_json_round_trip() -> None:
    """Entries survive their stored JSON form."""
    entry = Entry(1732700000.123456, None, "incident 42")
    assert entry == Entry.from_json(entry.to_json())


async def _eventually(check: object, within: float = 2.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    for _ in range(int(within / 0.01)):
        if check() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.01)
