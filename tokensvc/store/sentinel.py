"""EpochSentinel: Sentinel primary discovery that believes the newest config, and caches it.

redis-py takes the first sentinel that names a primary; right after a failover a lagging
sentinel still names the old one (it learns the new config ~2 s later), and the deposed
primary keeps accepting writes until Sentinel demotes it (~8 s later). Here all sentinels are
asked concurrently (bounded by ``wait``) and the answer with the highest config epoch wins (on
a tie, the sentinel running the failover, which already names the promoted replica). The
answer is cached for ``max_age`` so that a new connection on the request path does not wait
for a slow sentinel; ``RedisConnection`` invalidates the cache after any error and
re-discovers on every background refresh (``check_primary``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class EpochSentinel(Sentinel):
    """See the module docstring."""

    def __init__(
        self,
        hosts: Sequence[tuple[str, int]],
        *,
        sentinel_kwargs: dict[str, Any],
        wait: float = 0.25,
        max_age: float = 5.0,
    ) -> None:
        # redis-py leaves Sentinel.__init__ unannotated
        super().__init__(list(hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        self.wait = wait
        self.max_age = max_age
        self._cached: tuple[float, tuple[str, int]] | None = None

    def invalidate(self) -> None:
        self._cached = None

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self.max_age:
            return cached[1]
        return await self.rediscover(service_name)

    async def rediscover(self, service_name: str) -> tuple[str, int]:
        async def ask(sentinel: Redis) -> tuple[int, bool, tuple[str, int]] | None:
            """(config epoch, mid-failover with a promoted replica, address) or None."""
            try:
                state = await sentinel.sentinel_master(service_name)
                address = await sentinel.sentinel_get_master_addr_by_name(service_name)
            except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError):
                return None
            if not isinstance(state, dict) or not isinstance(address, (tuple, list)):
                return None
            raw_host = address[0]
            host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
            port = int(address[1])
            # Mid-failover, GET-MASTER-ADDR-BY-NAME already names the promoted replica while
            # MASTER still describes the old (possibly down) primary.
            promoted = "failover_in_progress" in str(state.get("flags", "")) and (host, port) != (
                str(state.get("ip")),
                int(state.get("port", 0)),
            )
            healthy = state.get("is_master") and not (
                state.get("is_sdown") or state.get("is_odown")
            )
            if not (promoted or healthy):
                return None
            return int(state.get("config-epoch", 0)), promoted, (host, port)

        tasks = [asyncio.ensure_future(ask(s)) for s in self.sentinels]
        try:
            done, _ = await asyncio.wait(tasks, timeout=self.wait)
        finally:
            for task in tasks:
                task.cancel()
        answers = [a for a in (t.result() for t in done if not t.cancelled()) if a is not None]
        if not answers:
            self.invalidate()
            raise MasterNotFoundError(f"No master found for {service_name!r}")
        address = max(answers, key=lambda a: (a[0], a[1]))[2]
        self._cached = (time.monotonic(), address)
        return address
