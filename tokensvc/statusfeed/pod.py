"""The status feed inside a running pod: ``PodFeed`` = a FeedRunner on the pod's own store,
its Fetcher and its metrics, started and stopped by the application lifespan (tokensvc.app).

- The store is the pod's shared-state backend (``MemoryStore`` or ``RedisStore``, both
  ``LeaseStore``s): with Redis the pods of a region elect one poller through its lock; with
  in-memory state each process polls for itself and drains only its own snapshot.
- The feed's leases reach the request path like any drain: written to the store, propagated
  by pub/sub and the periodic refresh, applied by ``Service.edges_for``.
- ``stop()`` is bounded (``STOP_SECONDS``): a poll stuck on a slow feed is cancelled, never
  waited for past it. The Fetcher is the feed's own (its deadlines are the feed's).
- ``poke()`` (the webhook receiver) only makes the next poll come sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tokensvc.fetch import Fetcher
from tokensvc.observability import Telemetry
from tokensvc.statusfeed.config import STATUSES, FeedConfig
from tokensvc.statusfeed.decide import Plan
from tokensvc.statusfeed.runner import ClientLists, FeedRunner, LeaseStore
from tokensvc.store.base import Store

if TYPE_CHECKING:
    from tokensvc.service import Service

log = logging.getLogger("tokensvc.statusfeed")

#: Longest shutdown waits for the poll loop before cancelling it.
STOP_SECONDS = 2.0


def lease_store(store: Store) -> LeaseStore | None:
    """The store as the feed's LeaseStore, when its backend is one (memory and Redis are)."""
    from tokensvc.store.memory import MemoryStore

    if isinstance(store, MemoryStore):
        return store
    from tokensvc.store.redis import RedisStore

    return store if isinstance(store, RedisStore) else None


def holder_id() -> str:
    """This process's name in the poller lock: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def feed_from_settings(service: Service) -> PodFeed | None:
    """The pod's feed when ``TOKENSVC_STATUS_FEED_CONFIG`` is set, else None. Raises
    ConfigError for a bad file (``tokensvc serve`` has refused it before binding) or a store
    backend that cannot hold leases. Sets the service's ``feed_min_edges_kept``."""
    from tokensvc.errors import ConfigError, Problem
    from tokensvc.statusfeed.config import load_config

    path = service.settings.status_feed_config
    if path is None:
        return None
    config = load_config(path)
    store = lease_store(service.shared.store)
    if store is None:
        raise ConfigError(
            [Problem("environment", "TOKENSVC_STATUS_FEED_CONFIG", "the store cannot hold leases")]
        )
    service.feed_min_edges_kept = config.min_edges_kept
    clients = service.clients

    def client_lists() -> ClientLists:
        return {
            cid: [c.config.edges.default, *c.config.edges.by_country.values()]
            for cid, c in clients.clients.items()
        }

    return PodFeed(
        config,
        store,
        service.telemetry,
        client_lists=client_lists,
        feed_drained=lambda: service.shared.snapshot.drain_sets(time.time())[1],
    )


class PodFeed:
    """One pod's status-feed loop."""

    def __init__(
        self,
        config: FeedConfig,
        store: LeaseStore,
        telemetry: Telemetry,
        *,
        client_lists: Callable[[], ClientLists],
        feed_drained: Callable[[], frozenset[str]],
        fetcher: Fetcher | None = None,
    ) -> None:
        self.config = config
        self.fetcher = fetcher or Fetcher()
        self.telemetry = telemetry
        self.feed_drained = feed_drained
        self.runner = FeedRunner(
            config,
            self.fetcher,
            store,
            holder=holder_id(),
            client_lists=client_lists,
            clock=time.time,
            on_tick=self._observe,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.runner.run(self._stop), name="status-feed")
        log.info(
            "status feed: polling",
            extra={"url": self.config.url, "components": len(self.config.components)},
        )

    def poke(self) -> None:
        self.runner.poke()

    async def stop(self, grace: float = STOP_SECONDS) -> None:
        """Stop the loop (cancelled past ``grace`` seconds) and close the Fetcher."""
        self._stop.set()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=grace)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    async with asyncio.timeout(grace):
                        await self._task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace):
                await self.fetcher.close()

    def _observe(self, runner: FeedRunner, plan: Plan | None) -> None:
        from tokensvc.edges import EDGES

        self.telemetry.status_feed(
            poller=runner.poller,
            up=None if plan is None else plan.feed == "up",
            last_good_at=runner.last_good_at,
            max_stale=self.config.max_stale_seconds,
            statuses=runner.statuses if runner.poller else {},
            decisions=[] if plan is None else [(d.action, d.rule) for d in plan.decisions],
            feed_drained=self.feed_drained(),
            edges=EDGES,
            all_statuses=STATUSES,
        )
