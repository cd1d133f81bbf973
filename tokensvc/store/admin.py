"""RegionAdmin: the operator's API on one region's Redis (used by ``tokensvc.ops``).

    entries(kind)               every stored entry, tombstones and expired ones included
    apply(kind, field, entry)   conditional write: the stored entry wins if it is newer
    apply_many(kind, entries)   the same for each (what ``sync`` writes)
    prune(kinds, now)           delete entries past ``Entry.prunable``

The rules (``wins_over``, ``prunable``) and their Lua are in ``tokensvc.store.entries``; every
call goes through ``RedisConnection.run`` (StoreError on any failure, outer deadline).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping

from tokensvc.store.connection import RedisConnection
from tokensvc.store.entries import KINDS, PREFIX, PRUNE_LUA, Entry, retention


class RegionAdmin:
    """One region's drains and blocks, as the operator tooling reads and writes them."""

    def __init__(self, connection: RedisConnection | str) -> None:
        """``connection``: the region's Redis, or just its URL (``RedisConnection(url)``)."""
        self.connection = RedisConnection(connection) if isinstance(connection, str) else connection
        self._prune = self.connection.primary.register_script(PRUNE_LUA)

    def __repr__(self) -> str:
        return f"RegionAdmin({self.connection.describe()})"

    async def entries(self, kind: str) -> dict[str, Entry]:
        return (await self.connection.read_entries())[kind]

    async def apply(self, kind: str, field: str, entry: Entry) -> bool:
        """Write ``entry`` unless the stored one wins over it (last writer wins). Publishes a
        change notification when written. Returns whether it was written."""
        return await self.connection.apply(kind, field, entry)

    async def apply_many(self, kind: str, entries: Mapping[str, Entry]) -> int:
        written = 0
        for field, entry in entries.items():
            written += await self.connection.apply(kind, field, entry)
        return written

    async def prune(self, kinds: Iterable[str] = KINDS, now: float | None = None) -> int:
        """Delete entries past ``Entry.prunable`` (kept ``retention(kind)``); return how many."""
        moment = time.time() if now is None else now
        removed = 0
        for kind in kinds:
            args = [repr(moment), repr(retention(kind))]
            prune = functools.partial(self._prune, keys=[PREFIX + kind], args=args)
            removed += int(await self.connection.run(prune, write=True))
        return removed

    async def close(self) -> None:
        await self.connection.close()
