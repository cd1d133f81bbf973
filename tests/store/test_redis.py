"""RedisStore and SharedState against real valkey-server processes: single server, Sentinel
failover (kill -9 and SIGSTOP), Redis down, read replicas, black holes. (The Store contract on
both backends is test_store.py; the operator's API is test_admin.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from redis_servers import BlackHole, Node, SentinelCluster, start_replica
from support import eventually, free_port
from tokensvc.errors import StoreError
from tokensvc.store.connection import RedisConnection
from tokensvc.store.redis import RedisStore
from tokensvc.store.shared import SharedState
from tokensvc.store.urls import Timeouts

BUDGET = 0.02  # the default TOKENSVC_REDIS_BUDGET_MS
#: A window length no test can straddle (windows are aligned to the clock; a 60 s window
#: could roll over in the middle of a test).
LONG = 10**9
#: Scheduling slack on a shared 2-core machine, on top of the budget, for latency asserts.
SLACK = 0.05


# -- helpers -------------------------------------------------------------------------------


@dataclass
class StreamResult:
    """What a steady stream of token-request-like operations saw."""

    sent: int = 0
    failed: int = 0  # operations that raised
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (started, seconds)
    shared: list[tuple[float, bool]] = field(default_factory=list)  # (started, counted shared)

    def p99(self, since: float = 0.0, until: float = float("inf")) -> float:
        values = sorted(s for t, s in self.latencies if since <= t <= until)
        return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0

    def max(self) -> float:
        return max((s for _, s in self.latencies), default=0.0)

    def first_shared_after(self, moment: float) -> float | None:
        """When the first operation after ``moment`` counted shared (syncs succeeding) started."""
        return next((t for t, ok in self.shared if t > moment and ok), None)

    def recovered_after(self, moment: float) -> float | None:
        """After ``moment``: when counting was shared again following a spell of per-pod
        counting (syncs failing), or None if that has not happened (yet)."""
        local = next((t for t, ok in self.shared if t > moment and not ok), None)
        return None if local is None else self.first_shared_after(local)


async def token_stream(
    shared: SharedState, stop: asyncio.Event, result: StreamResult, interval: float = 0.005
) -> None:
    """What the token path does per request: two rate-limit checks (local, synced in the
    background), then snapshot reads for drains and blocks. Runs until ``stop`` is set."""
    n = 0
    while not stop.is_set():
        n += 1
        started = time.monotonic()
        try:
            decisions = [
                shared.check(f"rl:c:id:user{n % 20}", 1_000_000, 60),
                shared.check(f"rl:c:ip:10.0.0.{n % 7}", 1_000_000, 60),
            ]
            shared.snapshot.drained(time.time())
            shared.snapshot.is_blocked("c", f"user{n % 20}", time.time())
            result.shared.append((started, all(d.shared for d in decisions)))
        except Exception:  # noqa: BLE001 - counting failures is the point
            result.failed += 1
        result.sent += 1
        result.latencies.append((started, time.monotonic() - started))
        await asyncio.sleep(interval)


def drained_now(shared: SharedState) -> frozenset[str]:
    return shared.snapshot.drained(time.time())


@pytest.fixture
async def shared_factory() -> AsyncIterator[Callable[..., SharedState]]:
    """Build SharedState instances (on RedisStore URLs) that are stopped at teardown."""
    made: list[SharedState] = []

    def make(url: str, **kwargs: object) -> SharedState:
        read_url = kwargs.pop("read_url", None)
        connection = RedisConnection(url, read_url=read_url if isinstance(read_url, str) else None)
        store = RedisStore(connection)
        state = SharedState(store, budget=BUDGET, refresh_interval=0.5, **kwargs)  # type: ignore[arg-type]
        made.append(state)
        return state

    yield make
    for state in made:
        await state.stop()


def record(name: str, **figures: float) -> None:
    """Print measured figures for the report (shown with ``pytest -s``)."""
    print(f"\n[figures] {name}: {json.dumps(figures)}")


# -- single server --------------------------------------------------------------------------


def counter_value(node: Node, key: str) -> int:
    """The Redis counter of ``key`` in the current LONG window (0 if absent)."""
    start = int(time.time()) // LONG * LONG
    raw = node.client().get(f"tokensvc:rl:{key}:{LONG}:{start}")
    return int(raw) if raw is not None else 0


async def test_single_server_pods_share_rate_limits(
    redis_node: Node, shared_factory: Callable[..., SharedState]
) -> None:
    """Two pods on one Redis share counters: with 10/window, pod A uses 6 and syncs; pod B,
    which learns the total at its first sync, is then allowed only 4 of 6."""
    pod_a, pod_b = shared_factory(redis_node.url), shared_factory(redis_node.url)
    used_by_a = [pod_a.check("rl:c:id:alice", 10, LONG).allowed for _ in range(6)]
    await pod_a.sync()
    decisions = [pod_b.check("rl:c:id:alice", 10, LONG)]  # the 7th: allowed, B knows no better
    await pod_b.sync()  # B learns the total: 7
    decisions += [pod_b.check("rl:c:id:alice", 10, LONG) for _ in range(5)]
    await pod_b.sync()
    assert ([True] * 6, [True] * 4 + [False] * 2) == (used_by_a, [d.allowed for d in decisions])
    assert (10, 10) == (
        counter_value(redis_node, "rl:c:id:alice"),
        pod_b.rates.count("rl:c:id:alice", LONG),
    )


async def test_over_admission_is_what_pods_admit_between_syncs(
    redis_node: Node, shared_factory: Callable[..., SharedState]
) -> None:
    """Pods that check before any sync each admit up to the limit (the documented bound); after
    one sync each, every pod refuses for the rest of the window."""
    pods = [shared_factory(redis_node.url) for _ in range(3)]
    burst = [sum(p.check("rl:c:ip:1.2.3.4", 5, LONG).allowed for _ in range(8)) for p in pods]
    for p in pods:
        await p.sync()
    after = [p.check("rl:c:ip:1.2.3.4", 5, LONG).allowed for p in pods]
    assert ([5, 5, 5], [False] * 3, 15) == (
        burst,
        after,
        counter_value(redis_node, "rl:c:ip:1.2.3.4"),
    )


async def test_a_sync_of_500_counters_is_one_command(
    redis_node: Node, shared_factory: Callable[..., SharedState]
) -> None:
    """A pod's sync sends every dirty counter in one EVALSHA: 500 keys cost one command on the
    server (measured with INFO: total_commands_processed and the evalsha call count)."""
    pod = shared_factory(redis_node.url)
    pod.check("warm-up", 10, LONG)
    await pod.sync()  # connects, loads the script
    for i in range(500):
        pod.check(f"rl:c:id:user{i}", 10, LONG)
        pod.check(f"rl:c:id:user{i}", 10, LONG)
    admin = redis_node.client()

    def totals() -> tuple[int, int, int]:
        """(commands processed, of which run inside scripts, EVALSHA calls): one INFO call."""
        info = admin.info("all")
        inner = sum(info.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("incrby", "pexpire"))
        return (int(info["total_commands_processed"]), inner, info["cmdstat_evalsha"]["calls"])

    idle = [totals(), totals()]
    info_cost = idle[1][0] - idle[0][0]  # what one INFO call adds to the count
    before = totals()
    ok = await pod.sync()
    after = totals()
    inside = after[1] - before[1]
    commands = after[0] - before[0] - inside - info_cost
    record(
        "rate_sync_500_keys",
        client_commands=commands,
        script_commands=inside,
        evalsha=after[2] - before[2],
    )
    assert (True, 1, 1, 1000, 2, 0) == (
        ok,
        commands,
        after[2] - before[2],
        inside,
        counter_value(redis_node, "rl:c:id:user499"),
        pod.rates.dirty,
    )


async def test_stop_sends_the_last_counts(
    redis_node: Node, shared_factory: Callable[..., SharedState]
) -> None:
    """Graceful shutdown: counts made since the last sync reach Redis when the pod stops."""
    pod = shared_factory(redis_node.url, sync_interval=60)
    await pod.start()
    for _ in range(3):
        pod.check("rl:c:id:bob", 10, LONG)
    await pod.stop()
    assert 3 == counter_value(redis_node, "rl:c:id:bob")


async def test_background_sync_shares_counts_within_an_interval(
    redis_node: Node, shared_factory: Callable[..., SharedState]
) -> None:
    """With the sync task running (100 ms), a pod's hits reach Redis without any request
    waiting for it."""
    pod = shared_factory(redis_node.url)
    await pod.start()
    for _ in range(4):
        pod.check("rl:c:id:carol", 10, LONG)
    took = await eventually(lambda: counter_value(redis_node, "rl:c:id:carol") == 4, 2.0)
    record("background_sync", seconds=round(took, 3))
    assert 0 == pod.rates.dirty


async def test_single_server_drains_and_blocks_reach_pods(
    redis_node: Node,
    shared_factory: Callable[..., SharedState],
    closing: Callable[[RedisStore], RedisStore],
) -> None:
    """A drain and a block written by an operator reach a running pod's snapshot quickly."""
    shared = shared_factory(redis_node.url)
    await shared.start()
    writer = closing(RedisStore(redis_node.url))
    await writer.drain("dublin", 60, "")
    await writer.block("acme", "mallory", None, "")
    took = await eventually(
        lambda: (
            "dublin" in drained_now(shared)
            and shared.snapshot.is_blocked("acme", "mallory", time.time())
        ),
        2.0,
    )
    record("single_server_propagation", seconds=round(took, 4))
    assert "ok" == shared.health()["status"]


async def test_single_server_jwks_cache_survives_a_pod_restart(
    redis_node: Node, shared_factory: Callable[..., SharedState]
) -> None:
    """A JWKS document cached by one pod is read by a new pod (the IdP may be down then)."""
    doc = b'{"keys":[]}'
    await shared_factory(redis_node.url).jwks_put("https://idp/jwks", doc, 300)
    assert doc == await shared_factory(redis_node.url).jwks_get("https://idp/jwks")


async def test_readonly_endpoint_drops_connections_and_recovers(
    node_factory: Callable[[], Node], closing: Callable[[RedisStore], RedisStore]
) -> None:
    """A write to a demoted primary (READONLY) fails as StoreError, counts a failover, and the
    next write after promotion succeeds on fresh connections."""
    other, node = node_factory(), node_factory()
    store = closing(RedisStore(node.url))
    await store.drain("dublin", 60, "")
    node.client().replicaof("127.0.0.1", other.port)
    with pytest.raises(StoreError, match="read-only"):
        await store.drain("tokyo", 60, "")
    node.client().replicaof("NO", "ONE")
    await store.drain("tokyo", 60, "")
    assert 1 == store.failovers


async def test_read_replica_serves_reads_and_change_notifications(
    node_factory: Callable[[], Node],
    shared_factory: Callable[..., SharedState],
    closing: Callable[[RedisStore], RedisStore],
) -> None:
    """With TOKENSVC_REDIS_READ_URL, drains published on the primary reach the pod through its
    replica, and reads keep working while the primary is down (writes degrade to local)."""
    primary = node_factory()
    replica = start_replica(primary.dir.parent, primary)
    try:
        shared = shared_factory(primary.url, read_url=replica.url)
        await shared.start()
        await closing(RedisStore(primary.url)).drain("dublin", 60, "")
        took = await eventually(lambda: "dublin" in drained_now(shared), 2.0)
        primary.kill()
        refreshed = await shared.refresh()
        shared.check("rl:c:id:a", 10, 60)
        await shared.sync()  # fails: the primary is gone
        decision = shared.check("rl:c:id:a", 10, 60)
        assert (True, frozenset({"dublin"}), True, False) == (
            refreshed,
            drained_now(shared),
            decision.allowed,
            decision.shared,
        )
        record("read_replica_propagation", seconds=round(took, 4))
    finally:
        replica.stop()


# -- Redis down -----------------------------------------------------------------------------


async def test_redis_down_for_the_whole_test(
    shared_factory: Callable[..., SharedState],
) -> None:
    """Nothing listening: start is quick, every request is served within the budget, limits
    are counted per pod (the 6th of 5/window is refused), a burst of 10,000 checks makes no
    store call at all, health says degraded."""
    operations: list[str] = []
    shared = shared_factory(
        f"redis://127.0.0.1:{free_port()}/0",
        on_operation=lambda op, _s, outcome: operations.append(outcome),
    )
    started = time.monotonic()
    await shared.start()
    start_seconds = time.monotonic() - started
    stop, result = asyncio.Event(), StreamResult()
    task = asyncio.create_task(token_stream(shared, stop, result))
    await asyncio.sleep(1.0)
    stop.set()
    await task
    limited = [shared.check("rl:c:id:alice", 5, LONG) for _ in range(6)]
    before_burst = len(operations)  # every store call, attempted or refused by a breaker
    burst_started = time.perf_counter()
    burst = [shared.check(f"rl:c:id:u{i % 100}", 1_000_000, LONG) for i in range(10_000)]
    burst_seconds = time.perf_counter() - burst_started
    record("check_burst_redis_down", checks=10_000, seconds=round(burst_seconds, 4))
    assert before_burst == len(operations)
    assert "ok" not in operations and "error" in operations
    assert (True, False) == (all(d.allowed for d in burst), any(d.shared for d in burst))
    assert burst_seconds < 1.0
    assert (0, "degraded") == (result.failed, shared.health()["status"])
    assert [True] * 5 + [False] == [d.allowed for d in limited]
    assert not any(d.shared for d in limited)
    assert start_seconds < 1.5
    assert result.p99() < BUDGET + SLACK


async def test_redis_down_then_back_catches_up(
    redis_node: Node,
    shared_factory: Callable[..., SharedState],
    closing: Callable[[RedisStore], RedisStore],
) -> None:
    """Redis killed while requests flow: no request fails, limits go local; when it is back,
    a drain written there is seen, counting is shared again, the hits counted during the
    outage reach Redis, and health is ok."""
    shared = shared_factory(redis_node.url)
    await shared.start()
    stop, result = asyncio.Event(), StreamResult()
    task = asyncio.create_task(token_stream(shared, stop, result))
    await asyncio.sleep(0.3)
    killed = time.monotonic()
    await asyncio.to_thread(redis_node.kill)
    await asyncio.sleep(1.5)
    degraded_while_down = shared.degraded
    for _ in range(7):
        shared.check("rl:c:id:outage", 100, LONG)
    await asyncio.to_thread(redis_node.restart)
    back = time.monotonic()
    await closing(RedisStore(redis_node.url)).drain("dublin", 60, "written while pods degraded")
    caught_up = await eventually(
        lambda: "dublin" in drained_now(shared) and not shared.degraded, 4.0
    )
    await asyncio.sleep(1.2)  # past a breaker cooldown: counting must be shared again
    stop.set()
    await task
    shared_again = result.recovered_after(killed)
    assert (0, True, 7) == (
        result.failed,
        degraded_while_down,
        counter_value(redis_node, "rl:c:id:outage"),
    )
    assert shared_again is not None
    assert result.p99(killed) < BUDGET + SLACK
    record(
        "down_then_back",
        sent=result.sent,
        failed=result.failed,
        p99_ms=round(result.p99(killed) * 1000, 2),
        caught_up_s=round(caught_up, 3),
        shared_again_s=round(shared_again - back, 3),
    )


# -- Sentinel -------------------------------------------------------------------------------


async def test_sentinel_kill_primary_zero_failed_requests(
    sentinel_cluster: SentinelCluster,
    shared_factory: Callable[..., SharedState],
    closing: Callable[[RedisStore], RedisStore],
) -> None:
    """kill -9 of the primary under a steady stream: no operation fails or hangs, the new
    primary is used afterwards, and a drain written after the failover reaches the pod."""
    shared = shared_factory(sentinel_cluster.url)
    await shared.start()
    stop, result = asyncio.Event(), StreamResult()
    task = asyncio.create_task(token_stream(shared, stop, result))
    await asyncio.sleep(0.5)
    old = await asyncio.to_thread(sentinel_cluster.current_primary)  # keep the loop free
    killed = time.monotonic()
    await asyncio.to_thread(old.kill)
    new = await asyncio.to_thread(sentinel_cluster.wait_for_new_primary, old.port)
    promoted = time.monotonic()
    await eventually(lambda: result.recovered_after(killed) is not None, 5.0)
    resumed = result.recovered_after(killed)
    assert resumed is not None
    written = time.monotonic()
    await closing(RedisStore(sentinel_cluster.url)).drain("dublin", 60, "after failover")
    await eventually(lambda: "dublin" in drained_now(shared), 2.0)
    propagation = time.monotonic() - written  # the write itself included
    stop.set()
    await task
    await shared.jwks_put("https://idp/jwks", b"{}", 60)
    on_new = new.client().get("tokensvc:jwks:" + hashlib.sha256(b"https://idp/jwks").hexdigest())
    shared.check("rl:c:id:after", 10, LONG)
    await shared.sync()
    counted_on_new = counter_value(new, "rl:c:id:after")
    assert isinstance(shared.store, RedisStore)
    address = await shared.store.connection.primary_address()
    window = (killed, resumed)
    record(
        "sentinel_kill9",
        sent=result.sent,
        failed=result.failed,
        sent_during_failover=sum(1 for t, _ in result.latencies if killed <= t <= resumed),
        p99_ms_during_failover=round(result.p99(*window) * 1000, 2),
        max_ms=round(result.max() * 1000, 2),
        failover_s=round(promoted - killed, 3),
        shared_again_after_kill_s=round(resumed - killed, 3),
        drain_propagation_s=round(propagation, 4),
        failovers_seen=shared.failovers_seen,
    )
    assert (0, new.port, b"{}", 1) == (result.failed, address[1], on_new, counted_on_new)
    assert result.p99(*window) < BUDGET + SLACK
    assert result.max() < 0.5
    assert propagation < 2.0


async def test_sentinel_primary_paused_and_resumed(
    sentinel_cluster: SentinelCluster,
    shared_factory: Callable[..., SharedState],
    closing: Callable[[RedisStore], RedisStore],
) -> None:
    """SIGSTOP of the primary (a partition) past down-after, then SIGCONT: no operation fails
    or hangs, writes go to the new primary (not the resumed, demoted one) and drains flow."""
    shared = shared_factory(sentinel_cluster.url)
    await shared.start()
    stop, result = asyncio.Event(), StreamResult()
    task = asyncio.create_task(token_stream(shared, stop, result))
    await asyncio.sleep(0.5)
    old = await asyncio.to_thread(sentinel_cluster.current_primary)
    paused = time.monotonic()
    old.pause()
    try:
        new = await asyncio.to_thread(sentinel_cluster.wait_for_new_primary, old.port)
    finally:
        old.resume()
    resumed_at = time.monotonic()
    await eventually(lambda: result.recovered_after(paused) is not None, 5.0)
    await closing(RedisStore(sentinel_cluster.url)).drain("tokyo", 60, "after partition")
    await eventually(lambda: "tokyo" in drained_now(shared), 2.0)
    stop.set()
    await task
    assert isinstance(shared.store, RedisStore)
    address = await shared.store.connection.primary_address()
    record(
        "sentinel_sigstop",
        sent=result.sent,
        failed=result.failed,
        p99_ms=round(result.p99(paused) * 1000, 2),
        max_ms=round(result.max() * 1000, 2),
        paused_s=round(resumed_at - paused, 3),
    )
    assert (0, new.port) == (result.failed, address[1])
    assert result.p99(paused) < BUDGET + SLACK
    assert result.max() < 0.5


async def test_sentinel_graceful_failover_moves_writes_before_demotion(
    sentinel_cluster: SentinelCluster,
    closing: Callable[[RedisStore], RedisStore],
) -> None:
    """After SENTINEL FAILOVER the old primary still accepts writes until Sentinel demotes it
    (seconds later); the next refresh re-asks Sentinel, so the following write goes to the new
    primary and not to the deposed one, where it would be lost."""
    store = closing(RedisStore(sentinel_cluster.url))
    await store.drain("dublin", 60, "")  # a pooled connection to the old primary
    old = sentinel_cluster.current_primary()
    sentinel_cluster.sentinels[0].client().execute_command(  # type: ignore[no-untyped-call]
        "SENTINEL", "FAILOVER", sentinel_cluster.service
    )
    new = await asyncio.to_thread(sentinel_cluster.wait_for_new_primary, old.port)
    await store.snapshot()  # what every background refresh does
    await store.drain("tokyo", 60, "")
    assert (new.port, True, False, 1) == (
        (await store.connection.primary_address())[1],
        bool(new.client().hexists("tokensvc:drains", "tokyo")),
        bool(old.client().hexists("tokensvc:drains", "tokyo")),
        store.failovers,
    )


# -- black holes ----------------------------------------------------------------------------


@pytest.fixture(params=["accept", "syn_drop", "sentinels"])
def black_hole_url(
    request: pytest.FixtureRequest, black_hole_factory: Callable[[str], BlackHole]
) -> Iterator[str]:
    """A Redis URL whose server never answers: accepted-and-silent, SYN-dropping, or three
    silent sentinels."""
    if request.param == "sentinels":
        holes = [black_hole_factory("accept") for _ in range(3)]
        yield "redis+sentinel://" + ",".join(f"127.0.0.1:{h.port}" for h in holes) + "/svc"
    else:
        yield black_hole_factory(request.param).url


async def test_black_holed_redis_stays_within_budget(
    black_hole_url: str, shared_factory: Callable[..., SharedState]
) -> None:
    """A server that never answers costs each request at most the budget (most pay nothing:
    the breaker is open), start-up at most the refresh timeout, and nothing fails."""
    shared = shared_factory(black_hole_url)
    started = time.monotonic()
    await shared.start()
    start_seconds = time.monotonic() - started
    stop, result = asyncio.Event(), StreamResult()
    task = asyncio.create_task(token_stream(shared, stop, result))
    await asyncio.sleep(1.5)
    stop.set()
    await task
    jwks_started = time.monotonic()
    cached = await shared.jwks_get("https://idp/jwks")
    jwks_seconds = time.monotonic() - jwks_started
    assert (0, None, "degraded") == (result.failed, cached, shared.health()["status"])
    assert start_seconds < 1.5
    assert result.max() < BUDGET + SLACK
    assert jwks_seconds < BUDGET + SLACK


def test_redis_store_timeouts_are_explicit() -> None:
    """Every connection, the sentinels' included, carries short timeouts and at most one
    retry (redis-py's defaults would cost ~59 s per call on a dead server)."""
    store = RedisStore(
        RedisConnection("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc", timeouts=Timeouts())
    )
    kwargs = store.connection.primary.connection_pool.connection_kwargs
    pool = store.connection.primary.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    manager = pool.sentinel_manager
    sentinel_kwargs = manager.sentinels[0].connection_pool.connection_kwargs
    assert (0.25, 0.5, 1) == (
        kwargs["socket_connect_timeout"],
        kwargs["socket_timeout"],
        kwargs["retry"]._retries,
    )
    assert (0.25, 0.25, 0) == (
        sentinel_kwargs["socket_connect_timeout"],
        sentinel_kwargs["socket_timeout"],
        sentinel_kwargs["retry"]._retries,
    )


async def test_snapshot_refreshes_from_the_read_replica_when_no_sentinel_answers(
    redis_node: Node, closing: Callable[[RedisStore], RedisStore]
) -> None:
    """With every sentinel unreachable, drains still refresh from a healthy read URL."""
    await closing(RedisStore(redis_node.url)).drain("dublin", 60, "")
    dead = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/mymaster"
    store = RedisStore(RedisConnection(dead, read_url=redis_node.url))
    try:
        snapshot = await store.snapshot()
    finally:
        await store.close()
    assert {"dublin"} == set(snapshot.drains)
