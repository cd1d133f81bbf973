"""SharedState: the request path's view of shared state, and the one fail-open policy.

    snapshot     drains and blocks, in process, kept fresh by a background task (periodic
                 refresh plus pub/sub change notifications); read on every request, no I/O
    check()      rate limits decided locally by a RateCounter (tokensvc.ratelimit) whose
                 deltas a background task syncs to a remote store, one round trip per interval
    jwks_get/put the JWKS cache, each call bounded by the request budget, failing open
    health()     for /readyz: ok or degraded (the pod stays ready either way)

Nothing here may block or fail a token request. Failure rules, in one place
(``SharedState._guarded``): every store call has an outer deadline (the request budget on the
hot path, ``refresh_timeout`` in the background); a failure or a timeout counts against a
circuit breaker (one for reads, one for writes: they may go to different endpoints); while a
breaker is open, calls are not attempted at all, so healthy requests do not each pay the
timeout. The background refresh always tries (it is the probe that notices recovery), but
never blocks a request: requests read ``snapshot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tokensvc.errors import StoreError
from tokensvc.ratelimit import RateCounter, RateDecision
from tokensvc.store.base import Delta, Snapshot, Store
from tokensvc.store.breaker import CircuitBreaker

log = logging.getLogger("tokensvc.state")

T = TypeVar("T")


#: ``on_operation(operation, seconds, outcome)``; outcome is ok | error | timeout | open.
OperationHook = Callable[[str, float, str], None]


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
        self.remote = store.remote
        self.rates = RateCounter(track=self.remote, max_entries=rate_entries)
        self.sync_interval = sync_interval
        self.sync_timeout = sync_timeout
        self.sync_batch = sync_batch
        self._sync_ok = True
        self._sync_lock = asyncio.Lock()
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
            self._refresh_ok
            and self._sync_ok
            and self.read_breaker.closed
            and self.write_breaker.closed
        )

    @property
    def failovers_seen(self) -> int:
        """Primary changes the store has noticed (Sentinel failover, READONLY)."""
        return self.store.failovers

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
                log.warning("state tasks did not stop in time", extra={"count": len(stuck)})
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
            try:
                snapshot = await self._guarded(
                    "snapshot",
                    self.read_breaker,
                    self.store.snapshot,
                    self.refresh_timeout,
                    probe=True,
                )
            except _Unavailable:
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
        return self.rates.check(key, limit, window)

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
                    await self._guarded(
                        "rate_sync", self.write_breaker, self.store.ping, self.sync_timeout
                    )
                except _Unavailable:
                    return False
                self._sync_ok = self.rates.shared = True
                self._update_health()
                return True
            deltas = RateCounter.deltas(slots, time.time())
            totals: list[int] | None = None
            try:
                totals = await self._guarded(
                    "rate_sync",
                    self.write_breaker,
                    lambda: self.store.add_counts(deltas),
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
            self._sync_ok = self.rates.shared = ok
            self._update_health()
            return ok

    async def add_counts(self, deltas: list[Delta]) -> list[int] | None:
        """Add shared counters (``Store.add_counts``) for a background task; the totals, or
        None when the store is unavailable (``remote`` False: nothing is shared, also None)."""
        if not self.remote:
            return None
        try:
            totals = await self._guarded(
                "counts",
                self.write_breaker,
                lambda: self.store.add_counts(deltas),
                self.sync_timeout,
            )
        except _Unavailable:
            return None
        return totals if len(totals) == len(deltas) else None

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
                "jwks_put",
                self.write_breaker,
                lambda: self.store.jwks_put(url, document, seconds),
                self.budget,
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
            self._observe(operation, 0.0, "open")
            raise _Unavailable(operation)
        started = time.perf_counter()
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
        self._observe(operation, elapsed, outcome)
        if outcome != "ok":
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
                async for _ in self.store.changes():
                    await self.refresh()
                    self._subscribed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken subscription must not end the task
                log.debug("change subscription ended", extra={"error": type(exc).__name__})
            self._subscribed.set()  # start() waits only for the first attempt
            await asyncio.sleep(backoff)
