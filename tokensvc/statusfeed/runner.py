"""The poll loop, and :class:`LeaseStore`, the narrow view of shared state it needs.

Each tick (every ``poll_interval_seconds`` times a jitter in [0.9, 1.1]):

1. acquire or renew the region's poller lock for ``config.lock_seconds``; a pod that does not
   hold it does nothing else (and forgets its counters: a new holder adopts the leases it
   finds and starts counting afresh);
2. poll the feed (tokensvc.fetch: total deadline ``timeout_seconds``, no redirects, size cap);
3. read drain records, pins and undrain holds; run the pure :func:`decide.decide`;
4. write the plan: leases, releases, ended holds.

Failure cases, all ending in "renew nothing, leases expire, configured lists come back":

- **the feed is unreachable, slow, redirects, answers non-200, is malformed or older than a
  document already seen**: the plan writes nothing; leases end at their ``until``
  (``lease_seconds`` after the last confirming poll).
- **the lock holder dies** (kill -9, partition): its lock expires within ``lock_seconds``
  and the next pod to tick takes it; it adopts the live leases (renews them while the feed
  still confirms, releases them after ``clear_polls`` clean polls). Leases nobody renews
  expire on their own. So a takeover happens within one lock lease plus one poll.
- **Redis is down** (any method raises ``StoreError``): the tick stops where it is. No new
  auto-drains; pods keep serving from their last snapshot, and the drains already in Redis
  expire there by themselves. Nothing else changes.
- **two holders at once** (a lock lost mid-tick): both would write the same decision from the
  same feed; ``write_lease`` never overwrites an operator's drain and ``release_lease`` only
  deletes the exact lease it names, so the worst case is one extra renewal.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Protocol

from tokensvc.errors import StoreError
from tokensvc.fetch import Fetcher
from tokensvc.statusfeed.config import JITTER, FeedConfig
from tokensvc.statusfeed.decide import Action, Lease, Operator, Plan, Track, decide
from tokensvc.statusfeed.feed import FeedError, poll
from tokensvc.store.base import DrainRecord

__all__ = ["ClientLists", "DrainRecord", "FeedRunner", "LeaseStore"]

log = logging.getLogger("tokensvc.statusfeed")

ClientLists = Mapping[str, Sequence[Sequence[str]]]  # client id -> its configured edge lists


class LeaseStore(Protocol):
    """What the feed needs from the shared store of one region. Every method may raise
    ``StoreError``; the runner then stops its tick (fail open: nothing new is drained)."""

    async def drain_records(self) -> Mapping[str, DrainRecord]:
        """Every live drain of the region (edge -> record), operator's and feed's."""
        ...

    async def write_lease(self, edge: str, reason: str, until: float) -> bool:
        """Atomically write drain ``edge`` with ``reason`` until ``until`` *unless* the edge has
        a live drain whose reason does not start with ``statusfeed:`` (an operator's drain
        always wins). Propagates like any drain (pub/sub). True when written."""
        ...

    async def release_lease(self, edge: str, reason: str) -> None:
        """Atomically delete the drain of ``edge`` only if its reason is exactly ``reason``."""
        ...

    async def pins(self) -> Mapping[str, float]:
        """Live pins (``edges pin EDGE --for``): edge -> until."""
        ...

    async def undrain_holds(self) -> frozenset[str]:
        """Edges an operator undrained while a feed lease held them. ``edges undrain`` writes
        the hold (with a long expiry, e.g. 24 h, so none is forgotten forever) when the record
        it deletes has a ``statusfeed:`` reason; the feed ends it once the edge's components
        are operational."""
        ...

    async def end_undrain_hold(self, edge: str) -> None: ...

    async def acquire_poller_lock(self, holder: str, seconds: float) -> bool:
        """Take the region's poller lock for ``seconds`` if free, or extend it if ``holder``
        has it (SET NX PX / compare-and-PEXPIRE). True when ``holder`` holds it now."""
        ...


class FeedRunner:
    """Polls the feed and keeps the region's feed leases in step with it."""

    def __init__(
        self,
        config: FeedConfig,
        fetcher: Fetcher,
        store: LeaseStore,
        *,
        holder: str,
        client_lists: Callable[[], ClientLists] = dict,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        on_tick: Callable[[FeedRunner, Plan | None], None] | None = None,
    ) -> None:
        self.config, self.fetcher, self.store = config, fetcher, store
        self.holder, self.client_lists, self.clock = holder, client_lists, clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.tracks: Mapping[str, Track] = {}
        self.last_good_at: float | None = None
        self.newest_seen: datetime | None = None
        self.last_error = ""
        #: after each tick: whether this pod holds the lock, and the statuses it last read
        self.poller = False
        self.statuses: Mapping[str, str] = {}
        self.on_tick = on_tick
        self._poke = asyncio.Event()

    async def tick(self) -> Plan | None:
        """One poll and its writes; None when this pod is not the poller or the store failed."""
        now = self.clock()
        try:
            self.poller = await self.store.acquire_poller_lock(
                self.holder, self.config.lock_seconds
            )
        except StoreError as exc:
            self.poller = False
            log.warning("status feed: store unavailable, no auto-drain this poll: %s", exc)
            return None
        if not self.poller:
            self.tracks = {}
            return None
        statuses: Mapping[str, str] | None
        try:
            page = await poll(self.fetcher, self.config, self.newest_seen)
        except FeedError as exc:
            statuses, self.last_error = None, exc.reason
            log.warning("status feed poll failed: %s", exc.reason)
        else:
            statuses, self.last_error = page.statuses(list(self.config.components)), ""
            self.newest_seen = page.updated_at
            self.statuses = statuses
        try:
            plan = await self._decide_and_write(now, statuses)
        except StoreError as exc:
            log.warning("status feed: store unavailable, no auto-drain this poll: %s", exc)
            return None
        self.tracks = plan.tracks
        if statuses is not None:
            self.last_good_at = now
        return plan

    async def _decide_and_write(self, now: float, statuses: Mapping[str, str] | None) -> Plan:
        records = await self.store.drain_records()
        leases: dict[str, Lease] = {}
        operator_drained: set[str] = set()
        for edge, record in records.items():
            lease = Lease.from_record(edge, record.reason, record.until)
            if lease is None:
                operator_drained.add(edge)
            else:
                leases[edge] = lease
        operator = Operator(
            frozenset(operator_drained), await self.store.undrain_holds(), await self.store.pins()
        )
        plan = decide(
            self.config,
            now,
            statuses,
            last_good_at=self.last_good_at,
            tracks=self.tracks,
            leases=leases,
            operator=operator,
            client_lists=self.client_lists(),
        )
        for lease in plan.writes:
            await self.store.write_lease(lease.edge, lease.reason, lease.until)
        for lease in plan.releases:
            await self.store.release_lease(lease.edge, lease.reason)
        for edge in plan.ended_holds:
            await self.store.end_undrain_hold(edge)
        for decision in plan.decisions:  # changes at info, the rest (renewals, skips) at debug
            changed = decision.action in (Action.DRAIN, Action.RELEASE, Action.END_HOLD)
            log.log(logging.INFO if changed else logging.DEBUG, "status feed: %s", decision)
        return plan

    def poke(self) -> None:
        """Poll now rather than at the end of the interval (the webhook receiver: a push can
        only shorten the wait for the next poll, never drain by itself)."""
        self._poke.set()

    def next_delay(self) -> float:
        return self.config.poll_interval_seconds * self.rng.uniform(1 - JITTER, 1 + JITTER)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; no exception ends the loop."""
        while not stop.is_set():
            try:
                plan = await self.tick()
                if self.on_tick is not None:
                    self.on_tick(self, plan)
            except Exception:  # one bad tick must not end the loop (logged with its traceback)
                log.exception("status feed tick failed")
            self._poke.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._poke.wait())]
            try:
                with suppress(TimeoutError):
                    async with asyncio.timeout(self.next_delay()):
                        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
