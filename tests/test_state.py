"""Pure logic of tokensvc.state and tokensvc.redis_store (no servers): breaker, snapshot,
memory store, SharedState's fail-open rules, URL parsing, the merge rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tokensvc.errors import ConfigError, StoreError
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


async def test_memory_store_counts_hits_per_window() -> None:
    """Hits on one key count up within a window; another key counts separately."""
    store = MemoryStore()
    counts = [(await store.hit("k", 60))[0] for _ in range(3)]
    other, reset = await store.hit("other", 60)
    assert ([1, 2, 3], 1) == (counts, other)
    assert 0 < reset <= 60


async def test_shared_state_denies_past_the_limit_with_retry_after() -> None:
    """The (limit+1)-th hit in a window is refused with a Retry-After of at least 1 s."""
    shared = SharedState(MemoryStore())
    decisions = [await shared.hit("rl:c:id:a", 2, 60) for _ in range(3)]
    assert [True, True, False] == [d.allowed for d in decisions]
    assert 1 <= decisions[-1].retry_after <= 60


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

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.calls = 0

    async def _misbehave(self) -> None:
        self.calls += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        raise StoreError("down")

    async def hit(self, key: str, window: int) -> tuple[int, float]:
        await self._misbehave()
        raise AssertionError("unreachable")

    async def snapshot(self) -> Snapshot:
        await self._misbehave()
        raise AssertionError("unreachable")

    async def jwks_get(self, url: str) -> bytes | None:
        await self._misbehave()
        return None

    async def changes(self) -> AsyncIterator[None]:
        await self._misbehave()
        yield None


async def test_hanging_store_costs_at_most_the_budget_then_nothing() -> None:
    """With a hanging store, each of the first hits waits only the budget, then the breaker
    stops calling it: 20 hits make 3 calls and every hit is allowed (counted locally)."""
    store = StallingStore("hang")
    shared = SharedState(store, budget=0.02, breaker_threshold=3, breaker_cooldown=10)
    started = time.perf_counter()
    decisions = [await shared.hit("k", 100, 60) for _ in range(20)]
    elapsed = time.perf_counter() - started
    assert (3, [True] * 20, [False] * 20) == (
        store.calls, [d.allowed for d in decisions], [d.shared for d in decisions]
    )
    assert elapsed < 3 * 0.02 + 0.2
    assert shared.degraded


async def test_failing_store_rate_limits_locally() -> None:
    """When the store fails, limits still apply, per pod: the 4th hit of 3/window is refused."""
    shared = SharedState(StallingStore("fail"))
    decisions = [await shared.hit("k", 3, 60) for _ in range(4)]
    assert [True, True, True, False] == [d.allowed for d in decisions]


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
    await shared.hit("k", 1, 60)
    await shared.hit("k", 1, 60)
    assert [("hit", "error"), ("hit", "open")] == seen


def test_build_shared_state_without_url_is_memory() -> None:
    """No TOKENSVC_REDIS_URL: in-memory state."""
    assert "memory" == build_shared_state(Settings()).backend


def test_build_shared_state_with_url_is_redis_and_budget_from_settings() -> None:
    """A Redis URL gives a Redis-backed state (no connection is made yet) with the budget."""
    shared = build_shared_state(
        Settings(redis_url=Secret("redis://127.0.0.1:1/0"), redis_budget_ms=15)
    )
    assert ("redis", 0.015) == (shared.backend, shared.budget)


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
