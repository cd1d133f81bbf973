"""Shared operational state: edge drains, identity blocks, rate-limit counters, JWKS cache.

    Store (Protocol)          what a backend can do; every failure raised as StoreError
    ├── MemoryStore           in-process (the embedded default, and the fallback)
    └── RedisStore            tokensvc.redis_store (single, sentinel, read replica)

    CircuitBreaker            stops calling a failing backend for a while (closed/open/half-open)
    SharedState               what the request path uses: an in-process Snapshot of drains and
                              blocks kept fresh by a background task (periodic refresh plus
                              pub/sub change notifications); rate limits decided locally by a
                              RateCounter (tokensvc.ratelimit) whose deltas a background task
                              syncs to the store in one round trip per interval; JWKS cache
                              calls bounded by a time budget that fail open.
                              Nothing here may block or fail a token request.
    build_shared_state()      Settings -> SharedState (memory when no Redis URL is set)

Failure rules, in one place (``SharedState._guarded``): every store call has an outer deadline
(the request budget on the hot path, ``refresh_timeout`` in the background); a failure or a
timeout counts against a circuit breaker; while a breaker is open, calls are not attempted at
all, so healthy requests do not each pay the timeout. The background refresh always tries (it
is the probe that notices recovery), but never blocks a request: requests read ``snapshot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from tokensvc.errors import StoreError
from tokensvc.ratelimit import Delta, RateCounter, RateDecision

if TYPE_CHECKING:
    from tokensvc.settings import Settings

log = logging.getLogger("tokensvc.state")

T = TypeVar("T")


@dataclass(frozen=True)
class Drain:
    edge: str
    until: float  # unix seconds; a drain always expires
    reason: str = ""


@dataclass(frozen=True)
class Block:
    client: str
    identity: str
    until: float | None  # unix seconds, None = until unblocked
    reason: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Read-mostly state as of ``taken_at``; consulted on every request without I/O."""

    drains: dict[str, Drain] = field(default_factory=dict)
    blocks: dict[tuple[str, str], Block] = field(default_factory=dict)
    taken_at: float = 0.0

    def drained(self, now: float) -> frozenset[str]:
        return frozenset(e for e, d in self.drains.items() if d.until > now)

    def is_blocked(self, client: str, identity: str, now: float) -> bool:
        block = self.blocks.get((client, identity))
        return block is not None and (block.until is None or block.until > now)


class Store(Protocol):
    """A backend for shared state. Every method raises StoreError on failure, nothing else."""

    name: str
    #: True when other pods share this store (rate-limit counts are synced to it); False for
    #: the in-process store, whose counts the local RateCounter already holds exactly.
    remote: bool

    async def ping(self) -> None: ...

    async def snapshot(self) -> Snapshot: ...

    async def drain(self, edge: str, seconds: float, reason: str) -> None: ...

    async def undrain(self, edge: str) -> None: ...

    async def block(
        self, client: str, identity: str, seconds: float | None, reason: str
    ) -> None: ...

    async def unblock(self, client: str, identity: str) -> None: ...

    async def add_counts(self, deltas: Sequence[Delta]) -> list[int]:
        """Add each ``(name, delta, ttl_ms)`` to its counter, creating it with that TTL, in one
        round trip; return the new totals, in order."""
        ...

    async def jwks_get(self, url: str) -> bytes | None: ...

    async def jwks_put(self, url: str, document: bytes, seconds: float) -> None: ...

    def changes(self) -> AsyncIterator[None]:
        """Yield once subscribed, then whenever drains or blocks may have changed (pub/sub).
        May end, or raise StoreError, at any time; the caller resubscribes."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """In-process store: the embedded default, and the per-pod fallback for rate limits."""

    name = "memory"
    remote = False
    failovers = 0

    def __init__(self) -> None:
        self._drains: dict[str, Drain] = {}
        self._blocks: dict[tuple[str, str], Block] = {}
        self._counters: dict[str, tuple[float, int]] = {}  # name -> (expires at, total)
        self._jwks: dict[str, tuple[float, bytes]] = {}
        self._changed = asyncio.Event()

    async def ping(self) -> None:
        return None

    async def snapshot(self) -> Snapshot:
        now = time.time()
        self._drains = {e: d for e, d in self._drains.items() if d.until > now}
        self._blocks = {
            k: b for k, b in self._blocks.items() if b.until is None or b.until > now
        }
        return Snapshot(dict(self._drains), dict(self._blocks), now)

    async def drain(self, edge: str, seconds: float, reason: str) -> None:
        self._drains[edge] = Drain(edge, time.time() + seconds, reason)
        self._notify()

    async def undrain(self, edge: str) -> None:
        self._drains.pop(edge, None)
        self._notify()

    async def block(self, client: str, identity: str, seconds: float | None, reason: str) -> None:
        until = None if seconds is None else time.time() + seconds
        self._blocks[(client, identity)] = Block(client, identity, until, reason)
        self._notify()

    async def unblock(self, client: str, identity: str) -> None:
        self._blocks.pop((client, identity), None)
        self._notify()

    async def add_counts(self, deltas: Sequence[Delta]) -> list[int]:
        now = time.time()
        if len(self._counters) > 100_000:  # bound memory: drop expired counters
            self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        totals = []
        for name, delta, ttl_ms in deltas:
            expires, total = self._counters.get(name, (0.0, 0))
            if expires <= now:
                expires, total = now + ttl_ms / 1000.0, 0
            total += delta
            self._counters[name] = (expires, total)
            totals.append(total)
        return totals

    async def jwks_get(self, url: str) -> bytes | None:
        entry = self._jwks.get(url)
        if entry is None or entry[0] < time.time():
            return None
        return entry[1]

    async def jwks_put(self, url: str, document: bytes, seconds: float) -> None:
        self._jwks[url] = (time.time() + seconds, document)

    async def changes(self) -> AsyncIterator[None]:
        yield None
        while True:
            await self._changed.wait()
            self._changed.clear()
            yield None

    async def close(self) -> None:
        return None

    def _notify(self) -> None:
        self._changed.set()


class CircuitBreaker:
    """Closed: calls go through. After ``threshold`` consecutive failures: open for ``cooldown``
    seconds, no calls. Then half-open: one probe at a time; its success closes the breaker, its
    failure reopens it. A probe that never reports (its caller was cancelled) is replaced by a
    new one after another ``cooldown``.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self.opened = 0  # how many times the breaker has opened (for metrics)
        self._since = 0.0  # when it opened, or when the current probe started

    def allow(self) -> bool:
        if self.state == self.CLOSED:
            return True
        now = self._clock()
        if now - self._since < self.cooldown:
            return False
        self.state, self._since = self.HALF_OPEN, now
        return True

    def success(self) -> None:
        self.state, self.failures = self.CLOSED, 0

    def failure(self) -> None:
        self.failures += 1
        if self.state == self.HALF_OPEN or self.failures >= self.threshold:
            if self.state == self.CLOSED:
                self.opened += 1
            self.state, self._since = self.OPEN, self._clock()

    @property
    def closed(self) -> bool:
        return self.state == self.CLOSED


#: ``on_operation(operation, seconds, outcome)``; outcome is ok | error | timeout | open.
OperationHook = Callable[[str, float, str], None]


@dataclass
class StateStats:
    """Counters for the metrics layer (read them; do not write)."""

    operations: int = 0  # store calls attempted
    failures: int = 0  # attempted calls that failed or ran past their deadline
    short_circuited: int = 0  # calls not attempted because a breaker was open
    local_hits: int = 0  # rate-limit decisions made per pod because the store was unavailable
    syncs: int = 0  # rate-limit syncs attempted (one store round trip each)
    sync_failures: int = 0  # syncs that failed, timed out or were skipped by the breaker
    refreshes: int = 0
    refresh_failures: int = 0
    notifications: int = 0  # change notifications received (pub/sub)
    last_latency: float = 0.0  # seconds of the latest attempted store call
    max_latency: float = 0.0


class _Unavailable(Exception):
    """Internal: a guarded call did not produce a result (failed, timed out, or skipped)."""


class SharedState:
    """The request path's view of shared state. Never raises, never waits past its budget."""

    def __init__(
        self,
        store: Store,
        *,
        budget: float = 0.02,
        refresh_interval: float = 2.0,
        refresh_timeout: float = 1.0,
        breaker_threshold: int = 3,
        breaker_cooldown: float = 1.0,
        on_operation: OperationHook | None = None,
        sync_interval: float = 0.1,
        sync_timeout: float = 0.25,
        sync_batch: int = 1000,
        rate_entries: int = 100_000,
    ) -> None:
        self.store = store
        self.budget = budget
        self.refresh_interval = refresh_interval
        self.refresh_timeout = refresh_timeout
        self.snapshot = Snapshot()
        #: rate limits: decided here, synced to a remote store every ``sync_interval`` seconds
        #: (at most ``sync_batch`` counters per round trip, each bounded by ``sync_timeout``)
        self.remote = bool(getattr(store, "remote", True))
        self.rates = RateCounter(track=self.remote, max_entries=rate_entries)
        self.sync_interval = sync_interval
        self.sync_timeout = sync_timeout
        self.sync_batch = sync_batch
        self._sync_ok = True
        self._sync_lock = asyncio.Lock()
        self.stats = StateStats()
        self.on_operation = on_operation
        self.last_error: str = ""
        #: reads (snapshot, JWKS get) and writes (rate limits, JWKS put) may use different
        #: endpoints (TOKENSVC_REDIS_READ_URL), so each has its own breaker.
        self.read_breaker = CircuitBreaker(breaker_threshold, breaker_cooldown)
        self.write_breaker = CircuitBreaker(breaker_threshold, breaker_cooldown)
        self._refresh_ok = True
        self._was_degraded = False
        self._refresh_lock = asyncio.Lock()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def backend(self) -> str:
        return self.store.name

    @property
    def degraded(self) -> bool:
        """True while the store is not fully usable (reads stale, or limits counted per pod)."""
        return not (
            self._refresh_ok and self._sync_ok
            and self.read_breaker.closed and self.write_breaker.closed
        )

    @property
    def failovers_seen(self) -> int:
        """Primary changes the store has noticed (Sentinel failover, READONLY)."""
        return int(getattr(self.store, "failovers", 0))

    async def start(self) -> None:
        """Start the background tasks; return once a first snapshot is loaded and change
        notifications are subscribed, or after ``refresh_timeout`` if the store is not there."""
        self._tasks.append(asyncio.create_task(self._watch_changes(), name="state-watch"))

        async def subscribed() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_timeout):
                    await self._subscribed.wait()

        await asyncio.gather(self.refresh(), subscribed())
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="state-refresh"))
        if self.remote:
            self._tasks.append(asyncio.create_task(self._sync_loop(), name="state-rate-sync"))

    async def stop(self) -> None:
        """Stop the background tasks, send the last rate-limit counts (graceful shutdown, bounded
        by ``sync_timeout``), close the store."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task that swallows its cancellation (redis-py and asyncio.wait_for
            # have both done so) must not hang shutdown.
            done, stuck = await asyncio.wait(self._tasks, timeout=self.refresh_timeout)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: a failed task was already logged
            if stuck:
                log.warning("state tasks did not stop in time",
                            extra={"count": len(stuck)})
        self._tasks.clear()
        if self.remote and self.rates.dirty and not self._sync_lock.locked():
            # The last counts, bounded: a sync stuck behind a task that ignored its
            # cancellation must not hold shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.sync_timeout + 0.1):
                    await self.sync()
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(self.refresh_timeout):
                await self.store.close()

    async def refresh(self) -> bool:
        """Replace the snapshot from the store; keep the old one if that fails. Never raises."""
        async with self._refresh_lock:
            self.stats.refreshes += 1
            try:
                snapshot = await self._guarded(
                    "snapshot", self.read_breaker, self.store.snapshot, self.refresh_timeout,
                    probe=True,
                )
            except _Unavailable:
                self.stats.refresh_failures += 1
                self._refresh_ok = False
                self._update_health()
                return False
            self.snapshot = snapshot
            self._refresh_ok = True
            self._update_health()
            return True

    def check(self, key: str, limit: int, window: int) -> RateDecision:
        """Count a request against ``limit`` per ``window`` seconds. Synchronous: no I/O, never
        blocks. ``shared`` is False while the store is unreachable (counts are then per pod)."""
        decision = self.rates.check(key, limit, window)
        if not decision.shared:
            self.stats.local_hits += 1
        return decision

    async def sync(self) -> bool:
        """Send this pod's pending rate-limit counts in one round trip (up to ``sync_batch``
        counters) and take the global totals back. On failure the counts stay pending and are
        retried, until their window ends. Never raises; returns whether it succeeded."""
        if not self.remote:
            return True
        async with self._sync_lock:
            self.rates.prune()
            slots = self.rates.take(self.sync_batch)
            if not slots:
                if self._sync_ok:
                    return True
                # Failed before and nothing left to send (those windows ended): probe, so that
                # health and decisions stop saying "per pod" once the store answers again.
                try:
                    await self._guarded("rate_sync", self.write_breaker, self.store.ping,
                                        self.sync_timeout)
                except _Unavailable:
                    return False
                self._sync_ok = self.rates.shared = True
                self._update_health()
                return True
            deltas = RateCounter.deltas(slots, time.time())
            totals: list[int] | None = None
            self.stats.syncs += 1
            try:
                totals = await self._guarded(
                    "rate_sync", self.write_breaker, lambda: self.store.add_counts(deltas),
                    self.sync_timeout,
                )
                if len(totals) != len(slots):
                    totals = None
                    self.last_error = "rate_sync: wrong number of totals"
            except _Unavailable:
                pass
            finally:
                # Also on cancellation (stop() during a sync): the hits go back to pending.
                self.rates.settle(slots, totals)
            ok = totals is not None
            if not ok:
                self.stats.sync_failures += 1
            self._sync_ok = self.rates.shared = ok
            self._update_health()
            return ok

    async def jwks_get(self, url: str) -> bytes | None:
        """The cached JWKS document for ``url``, or None (absent, or store unavailable)."""
        try:
            return await self._guarded(
                "jwks_get", self.read_breaker, lambda: self.store.jwks_get(url), self.budget
            )
        except _Unavailable:
            return None

    async def jwks_put(self, url: str, document: bytes, seconds: float) -> None:
        """Cache a JWKS document for ``seconds``; silently skipped if the store is unavailable."""
        with contextlib.suppress(_Unavailable):
            await self._guarded(
                "jwks_put", self.write_breaker,
                lambda: self.store.jwks_put(url, document, seconds), self.budget,
            )

    def health(self) -> dict[str, str]:
        """For /readyz: ``ok`` or ``degraded`` (the pod stays ready either way)."""
        result = {"backend": self.backend, "status": "degraded" if self.degraded else "ok"}
        if self.degraded and self.last_error:
            result["error"] = self.last_error
        return result

    async def _guarded(
        self,
        operation: str,
        breaker: CircuitBreaker,
        call: Callable[[], Awaitable[T]],
        deadline: float,
        *,
        probe: bool = False,
    ) -> T:
        """Run ``call`` under ``deadline`` and ``breaker``; raise _Unavailable on any failure.

        ``probe`` calls (the background refresh) run even while the breaker is open: they are
        off the request path, and their success is how recovery is noticed.
        """
        if not probe and not breaker.allow():
            self.stats.short_circuited += 1
            self._observe(operation, 0.0, "open")
            raise _Unavailable(operation)
        started = time.perf_counter()
        self.stats.operations += 1
        outcome = "ok"
        try:
            async with asyncio.timeout(deadline):
                result = await call()
        except TimeoutError:
            outcome, self.last_error = "timeout", f"{operation}: timed out after {deadline}s"
        except StoreError as exc:
            outcome, self.last_error = "error", f"{operation}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a Store should raise only StoreError; fail open anyway
            outcome, self.last_error = "error", f"{operation}: {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        self.stats.last_latency = elapsed
        self.stats.max_latency = max(self.stats.max_latency, elapsed)
        self._observe(operation, elapsed, outcome)
        if outcome != "ok":
            self.stats.failures += 1
            breaker.failure()
            self._update_health()
            raise _Unavailable(operation)
        breaker.success()
        self._update_health()
        return result

    def _observe(self, operation: str, seconds: float, outcome: str) -> None:
        if self.on_operation is not None:
            try:
                self.on_operation(operation, seconds, outcome)
            except Exception:  # a metrics hook must never break the request path
                log.exception("state operation hook failed")

    def _update_health(self) -> None:
        degraded = self.degraded
        if degraded and not self._was_degraded:
            log.warning(
                "shared state degraded: serving the last snapshot, rate limits per pod",
                extra={"backend": self.backend, "error": self.last_error},
            )
        elif self._was_degraded and not degraded:
            log.info("shared state recovered", extra={"backend": self.backend})
        self._was_degraded = degraded

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            # More dirty counters than one batch: send the rest at once, not one interval later.
            while await self.sync() and self.rates.dirty >= self.sync_batch:
                pass

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self.refresh()

    async def _watch_changes(self) -> None:
        """Refresh on every change notification; resubscribe after a failure.

        The first item of each subscription means "subscribed": refresh then, since changes
        may have been missed while not subscribed."""
        backoff = min(0.5, self.refresh_interval)
        while True:
            try:
                first = True
                async for _ in self.store.changes():
                    if not first:
                        self.stats.notifications += 1
                    await self.refresh()
                    first = False
                    self._subscribed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken subscription must not end the task
                log.debug("change subscription ended", extra={"error": type(exc).__name__})
            self._subscribed.set()  # start() waits only for the first attempt
            await asyncio.sleep(backoff)


def build_shared_state(settings: Settings) -> SharedState:
    """The SharedState the service runs with: Redis when ``redis_url`` is set, else memory."""
    store: Store
    if settings.redis_url is None:
        store = MemoryStore()
    else:
        from tokensvc.redis_store import RedisStore  # imports redis-py only when configured

        store = RedisStore.from_settings(settings)
    return SharedState(
        store,
        budget=settings.redis_budget_ms / 1000.0,
        refresh_interval=settings.redis_refresh,
        # TOKENSVC_RATE_SYNC_MS (default 100), once Settings has it
        sync_interval=settings.rate_sync_ms / 1000.0,
    )
