"""RedisStore: the data-plane Store on Redis (or Valkey): single endpoint, Sentinel, read
replica (URL forms in ``tokensvc.store.urls``; connections and errors in
``tokensvc.store.connection``).

Keys (all under ``tokensvc:``): the ``drains`` and ``blocks`` hashes of ``Entry`` records
(``tokensvc.store.entries``), ``rl:<key>:<window>:<window start>`` counters (added to in
batches, see tokensvc.ratelimit), ``jwks:<sha256 of url>`` documents; change notifications on
the ``tokensvc:changes`` channel. The operator's API (apply, prune, list) is
``tokensvc.store.admin.RegionAdmin``, not this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Sequence

from tokensvc.errors import StoreError
from tokensvc.store.base import Block, Delta, Drain, Snapshot
from tokensvc.store.connection import RedisConnection
from tokensvc.store.entries import (
    BLOCKS,
    CHANNEL,
    DRAINS,
    PREFIX,
    Entry,
    block_field,
    parse_block_field,
)
from tokensvc.store.urls import Timeouts

# Rate-limit sync: KEYS are counters; ARGV[1] is "delta ttl_ms delta ttl_ms ..." in KEYS order
# (one argument, not two per key: packing arguments is most of a large sync's client CPU).
# INCRBY each; a counter the delta created gets its TTL. Returns the totals as one
# comma-separated string (cheaper to parse than an array). One round trip per batch.
_ADD_COUNTS = """
local totals = {}
local i = 0
local delta = nil
for word in string.gmatch(ARGV[1], '%d+') do
  if delta == nil then
    delta = tonumber(word)
  else
    i = i + 1
    local n = redis.call('INCRBY', KEYS[i], delta)
    if n == delta then redis.call('PEXPIRE', KEYS[i], word) end
    totals[i] = n
    delta = nil
  end
end
return table.concat(totals, ',')
"""


class RedisStore:
    """Store on Redis; implements ``tokensvc.store.base.Store``. Reads may go to a replica
    (``read_url``); writes go to the primary. A malformed URL is a ConfigError here."""

    name = "redis"
    remote = True

    def __init__(
        self,
        url: str,
        *,
        read_url: str | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
        timeouts: Timeouts | None = None,
        source: str = "TOKENSVC_REDIS_URL",
    ) -> None:
        self.connection = RedisConnection(
            url,
            read_url=read_url,
            password=password,
            sentinel_password=sentinel_password,
            timeouts=timeouts,
            source=source,
        )
        self._add_counts = self.connection.primary.register_script(_ADD_COUNTS)

    def __repr__(self) -> str:
        return f"RedisStore({self.connection.describe()})"

    @property
    def failovers(self) -> int:
        return self.connection.failovers

    async def ping(self) -> None:
        await self.connection.run(self.connection.primary.ping, write=False)

    async def snapshot(self) -> Snapshot:
        # Best effort: with every sentinel unreachable the data (a local read replica, or the
        # primary itself) may still answer, and drains/blocks must keep refreshing from it.
        with contextlib.suppress(StoreError):
            await self.connection.check_primary()
        now = time.time()
        entries = await self.connection.read_entries()
        drains = {
            edge: Drain(edge, e.until, e.reason)
            for edge, e in entries[DRAINS].items()
            if e.live(now) and e.until is not None
        }
        blocks: dict[tuple[str, str], Block] = {}
        for field, e in entries[BLOCKS].items():
            key = parse_block_field(field)
            if key is not None and e.live(now):
                blocks[key] = Block(key[0], key[1], e.until, e.reason)
        return Snapshot(drains, blocks, now)

    async def drain(self, edge: str, seconds: float, reason: str) -> None:
        now = time.time()
        await self.connection.apply(DRAINS, edge, Entry(now, now + seconds, reason))

    async def undrain(self, edge: str) -> None:
        await self.connection.apply(DRAINS, edge, Entry.tombstone(time.time()))

    async def block(self, client: str, identity: str, seconds: float | None, reason: str) -> None:
        now = time.time()
        until = None if seconds is None else now + seconds
        await self.connection.apply(
            BLOCKS, block_field(client, identity), Entry(now, until, reason)
        )

    async def unblock(self, client: str, identity: str) -> None:
        await self.connection.apply(
            BLOCKS, block_field(client, identity), Entry.tombstone(time.time())
        )

    async def add_counts(self, deltas: Sequence[Delta]) -> list[int]:
        if not deltas:
            return []
        keys = [f"{PREFIX}rl:{name}".encode() for name, _, _ in deltas]
        spec = " ".join(f"{delta} {max(1, ttl_ms)}" for _, delta, ttl_ms in deltas)
        reply = await self.connection.run(
            lambda: self._add_counts(keys=keys, args=[spec]), write=True
        )
        if isinstance(reply, bytes):
            reply = reply.decode()
        if not isinstance(reply, str):
            raise StoreError("rate-limit sync: unexpected reply")
        try:
            return [int(t) for t in reply.split(",")]
        except ValueError:
            raise StoreError("rate-limit sync: unexpected reply") from None

    async def jwks_get(self, url: str) -> bytes | None:
        read = self.connection.read
        value = await self.connection.run(lambda: read.get(_jwks_key(url)), write=False)
        return value if isinstance(value, bytes) else None

    async def jwks_put(self, url: str, document: bytes, seconds: float) -> None:
        ttl, primary = max(1, int(seconds)), self.connection.primary
        await self.connection.run(lambda: primary.set(_jwks_key(url), document, ex=ttl), write=True)

    async def changes(self) -> AsyncIterator[None]:
        """Yield once subscribed (so the caller refreshes), then on every change message.

        Raises StoreError when the subscription breaks or goes silent (a PING every second
        must be answered within 3 s), so the caller resubscribes, possibly on a new primary.
        """
        run, timeouts = self.connection.run, self.connection.timeouts
        pubsub = self.connection.read.pubsub()
        try:
            await run(lambda: pubsub.subscribe(CHANNEL), write=False)
            yield None
            last_seen = last_ping = time.monotonic()
            while True:
                message = await run(
                    lambda: pubsub.get_message(timeout=0.5),
                    write=False,
                    deadline=timeouts.call + 0.5,
                )
                now = time.monotonic()
                if message is not None:
                    last_seen = now
                    if message.get("type") == "message":
                        yield None
                if now - last_seen > 3.0:
                    raise StoreError("change subscription went silent")
                if now - last_ping >= 1.0:
                    last_ping = now
                    await run(pubsub.ping, write=False)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeouts.call):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated

    async def close(self) -> None:
        await self.connection.close()


def _jwks_key(url: str) -> str:
    return f"{PREFIX}jwks:{hashlib.sha256(url.encode()).hexdigest()}"
