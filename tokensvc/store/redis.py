"""RedisStore: the data-plane Store on Redis (or Valkey): single endpoint, Sentinel, read
replica (URL forms in ``tokensvc.store.urls``; connections and errors in
``tokensvc.store.connection``).

Keys (all under ``tokensvc:``): the ``drains`` and ``blocks`` hashes of ``Entry`` records
(``tokensvc.store.entries``), ``rl:<key>:<window>:<window start>`` counters (added to in
batches, see tokensvc.ratelimit), ``jwks:<sha256 of url>`` documents; change notifications on
the ``tokensvc:changes`` channel. It is also the status feed's ``LeaseStore``
(``tokensvc.statusfeed.runner``): the ``pins`` and ``holds`` hashes and the poller lock, with
the conditional writes of ``tokensvc.store.leases``. The operator's API (apply, prune, list) is
``tokensvc.store.admin.RegionAdmin``, not this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence

from tokensvc.errors import StoreError
from tokensvc.store.base import FEED_PREFIX, Block, Delta, Drain, DrainRecord, Snapshot
from tokensvc.store.connection import RedisConnection
from tokensvc.store.entries import (
    BLOCKS,
    CHANNEL,
    DRAINS,
    HOLDS,
    PINS,
    PREFIX,
    Entry,
    block_field,
    decode_hash,
    parse_block_field,
)
from tokensvc.store.leases import LEASE_LUA, LOCK_KEY, LOCK_LUA, RELEASE_LUA

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
    (the connection's ``read_url``); writes go to the primary. A malformed URL is a
    ConfigError (raised by ``RedisConnection``)."""

    name = "redis"
    remote = True

    def __init__(self, connection: RedisConnection | str) -> None:
        """``connection``: the Redis to use, or just its URL (``RedisConnection(url)``)."""
        self.connection = RedisConnection(connection) if isinstance(connection, str) else connection
        primary = self.connection.primary
        self._add_counts = primary.register_script(_ADD_COUNTS)
        self._lease = primary.register_script(LEASE_LUA)
        self._release = primary.register_script(RELEASE_LUA)
        self._lock = primary.register_script(LOCK_LUA)

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
            BLOCKS, block_field(client, identity), Entry.tombstone(time.time(), BLOCKS)
        )

    async def pin(self, edge: str, seconds: float, reason: str) -> None:
        now = time.time()
        await self.connection.apply(PINS, edge, Entry(now, now + seconds, reason))

    async def unpin(self, edge: str) -> None:
        await self.connection.apply(PINS, edge, Entry.tombstone(time.time()))

    # -- the status feed's LeaseStore (tokensvc.statusfeed.runner) -------------------------

    async def drain_records(self) -> Mapping[str, DrainRecord]:
        """Every live drain, read from the primary (the feed decides on what it writes to)."""
        entries = await self._hash(DRAINS)
        now = time.time()
        return {
            edge: DrainRecord(e.until, e.reason)
            for edge, e in entries.items()
            if e.live(now) and e.until is not None
        }

    async def write_lease(self, edge: str, reason: str, until: float) -> bool:
        now = time.time()
        keys = [PREFIX + DRAINS, PREFIX + HOLDS, PREFIX + PINS]
        args = [edge, Entry(now, until, reason).to_json(), repr(now), CHANNEL, FEED_PREFIX]
        written = await self.connection.run(lambda: self._lease(keys=keys, args=args), write=True)
        return bool(written)

    async def release_lease(self, edge: str, reason: str) -> None:
        args = [edge, reason, CHANNEL, FEED_PREFIX]
        await self.connection.run(
            lambda: self._release(keys=[PREFIX + DRAINS], args=args), write=True
        )

    async def pins(self) -> Mapping[str, float]:
        now = time.time()
        return {
            e: p.until
            for e, p in (await self._hash(PINS)).items()
            if p.live(now) and p.until is not None
        }

    async def undrain_holds(self) -> frozenset[str]:
        now = time.time()
        return frozenset(e for e, h in (await self._hash(HOLDS)).items() if h.live(now))

    async def end_undrain_hold(self, edge: str) -> None:
        primary = self.connection.primary
        await self.connection.run(lambda: primary.hdel(PREFIX + HOLDS, edge), write=True)

    async def acquire_poller_lock(self, holder: str, seconds: float) -> bool:
        args: list[str | int] = [holder, max(1, int(seconds * 1000))]
        held = await self.connection.run(
            lambda: self._lock(keys=[PREFIX + LOCK_KEY], args=args), write=True
        )
        return bool(held)

    async def _hash(self, name: str) -> dict[str, Entry]:
        primary = self.connection.primary
        raw = await self.connection.run(lambda: primary.hgetall(PREFIX + name), write=False)
        return decode_hash(dict(raw))

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
