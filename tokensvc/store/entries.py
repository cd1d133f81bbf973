"""Drains and blocks as stored in Redis, and the one merge rule for them.

    Entry              one drain, block or pin: a record, or a tombstone left by an undo
    block_field()      the hash field of a block: JSON ``[client, identity]``
    Entry.wins_over()  THE merge rule: an operator's entry beats a feed lease (unless it would
                       lose to the operator entry under that lease); otherwise the later ``at``
                       wins; on a tie a tombstone wins, then a retained entry
    Entry.written_over()  THE write rule: what is stored (None: nothing), retained when it
                       replaces what lasts forever
    retention()        how long an expired entry of a kind is kept (drains, pins 30 d; blocks
                       400 d)
    holds_after()      an undrain of a live feed lease leaves an undrain hold (statusfeed)
    Entry.prunable()   when an entry may be deleted
    merge(), in_force()  the rule across regions (ops ``sync``)
    APPLY_LUA, PRUNE_LUA the same rules inside Redis (a conditional write must be atomic)

Keys (all under ``tokensvc:``): the ``drains``, ``blocks`` and ``pins`` hashes map an edge, or
a block field, to an Entry's JSON; a write publishes the hash's name on ``tokensvc:changes``.
``holds`` (edge -> Entry JSON) are the undrain holds of the status feed: region-local, written
by the same script as the undrain that causes them (``tokensvc.store.leases`` has the feed's
other rules).

Feed leases (``reason`` starting with ``statusfeed:``) are drains the status feed writes in
its own region only. An operator's drain or undrain always wins over one, whatever the clocks
of the two writers say (a pod whose clock runs ahead must not make an operator's command "older"
than a lease); a lease is written over an operator's entry only by the feed's own conditional
script (``leases.LEASE_LUA``), never by a merge. Such a lease keeps the operator's entry it
replaced (a tombstone or an expired record) as its ``under``: merges compare with that entry,
and releasing the lease puts it back, so that the lease changes no merge result.

The rule is written twice, once here in Python and once in Lua, because a conditional write
has to run inside Redis to be atomic. ``tests/store/test_entries.py`` runs both on the same
inputs (the Lua on a real Valkey) and requires the same answers: change them together.

Why "last writer wins" and not "latest expiry wins": a later, shorter drain must end an
earlier, longer one everywhere, as the operator asked. Tombstones are what stop a merge from
resurrecting an undrained edge from a region that missed the undo, and an expired record is a
version marker that stops an older, longer entry from a lagging region coming back. So an entry
must be kept at least as long as anything older it replaced could still be live somewhere:
``retention(kind)`` after its ``at`` (drains and pins last at most 7 days, kept 30; blocks at
most 365 days, kept 400), and forever (``retained``) when it replaced a permanent block, or an
entry retained itself. A retained entry is never pruned; an operator may delete its hash field
by hand once every region has synced. It costs one small hash field per key that ever had a
permanent block.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tokensvc.store.base import FEED_PREFIX  # the reason prefix of a feed lease

PREFIX = "tokensvc:"
DRAINS = "drains"
BLOCKS = "blocks"
PINS = "pins"
KINDS = (DRAINS, BLOCKS, PINS)
HOLDS = "holds"
CHANNEL = PREFIX + "changes"
#: How long an undrain hold lasts at most (the feed ends it sooner, once the edge's
#: components are operational again): long, so that none is forgotten forever.
HOLD_SECONDS = 86400.0

#: How long a drain's or a pin's tombstone (and an expired record) is kept, so that a merge
#: cannot resurrect what it cancelled: longer than any drain or pin can last (7 days), and long
#: enough for a region to be reconciled.
TOMBSTONE_SECONDS = 30 * 86400.0
#: The same for blocks: longer than any block with an expiry can last (365 days).
BLOCK_TOMBSTONE_SECONDS = 400 * 86400.0


def retention(kind: str) -> float:
    """How long after its ``at`` an entry of ``kind`` is kept once it has expired."""
    return BLOCK_TOMBSTONE_SECONDS if kind == BLOCKS else TOMBSTONE_SECONDS


@dataclass(frozen=True)
class Entry:
    """One drain, block or pin as stored: a record, or a tombstone (``deleted``) left by an
    undrain/unblock. ``at`` is when the operator issued it (the version: last writer wins).

    ``retained``: never pruned, because it replaced an entry that a region may still hold live
    forever (a permanent block, or an entry retained itself). ``under``: on a feed lease, the
    operator's entry (tombstone or expired record) it was written over, kept so that merges
    see that region as if the lease had never been written."""

    at: float
    until: float | None
    reason: str = ""
    deleted: bool = False
    retained: bool = False
    under: Entry | None = None

    def live(self, now: float) -> bool:
        return not self.deleted and (self.until is None or self.until > now)

    @property
    def is_lease(self) -> bool:
        """A status-feed lease (a drain record whose reason starts with ``statusfeed:``)."""
        return not self.deleted and self.reason.startswith(FEED_PREFIX)

    @property
    def operator_entry(self) -> Entry | None:
        """What this region holds for merges: the operator's entry under a lease, else self."""
        return self.under if self.is_lease else self

    @property
    def lasts_forever(self) -> bool:
        """Some region may hold a live copy of it forever: a permanent record, or retained."""
        return self.retained or (not self.deleted and self.until is None)

    def wins_over(self, other: Entry) -> bool:
        """The merge rule: an operator's entry (record or tombstone) wins over a feed lease, as
        it would over the operator entry under that lease (as if the lease had never been
        written); a lease never over an operator's entry. Otherwise the later ``at`` wins; on
        a tie a tombstone wins, then a retained entry. (APPLY_LUA)"""
        if self.is_lease != other.is_lease:
            if self.is_lease:
                return False
            return other.under is None or self.wins_over(other.under)
        return (self.at, self.deleted, self.retained) > (other.at, other.deleted, other.retained)

    def written_over(self, stored: Entry | None) -> Entry | None:
        """THE write rule: what is stored after writing this entry over ``stored``, or None
        when ``stored`` wins (nothing written). The entry is written ``retained`` when what it
        replaces lasts forever (``lasts_forever``; under a lease, the operator's entry), so
        that a region still holding a permanent block cannot bring it back. (APPLY_LUA)"""
        if stored is None:
            return self
        if not self.wins_over(stored):
            return None
        replaced = stored.operator_entry if not self.is_lease else stored
        if replaced is not None and replaced.lasts_forever and not self.retained:
            return replace(self, retained=True)
        return self

    def prunable(self, now: float, keep: float = TOMBSTONE_SECONDS) -> bool:
        """Past its ``until`` and past ``keep`` (``retention`` of its kind) after its ``at``,
        not retained, and so is the entry under it; a block without expiry never is.
        (PRUNE_LUA)"""
        return (
            self.until is not None
            and self.until < now
            and self.at + keep < now
            and not self.retained
            and (self.under is None or self.under.prunable(now, keep))
        )

    def to_json(self) -> str:
        doc: dict[str, object] = {
            "at": self.at,
            "until": self.until,
            "reason": self.reason,
            "deleted": self.deleted,
        }
        if self.retained:
            doc["retained"] = True
        if self.under is not None:
            doc["under"] = self.under.to_json()  # a string: the Lua copies it byte for byte
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Entry | None:
        try:
            doc = json.loads(raw)
            until = doc.get("until")
            under = doc.get("under")
            return cls(
                at=float(doc["at"]),
                until=None if until is None else float(until),
                reason=str(doc.get("reason", "")),
                deleted=bool(doc.get("deleted", False)),
                retained=doc.get("retained") is True,
                under=cls.from_json(under) if isinstance(under, str) else None,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    @classmethod
    def tombstone(cls, at: float, kind: str = DRAINS) -> Entry:
        """An undo (undrain, unpin, unblock), kept ``retention(kind)``."""
        return cls(at=at, until=at + retention(kind), deleted=True)


def holds_after(stored: Entry | None, new: Entry) -> bool:
    """Whether writing ``new`` over ``stored`` leaves an undrain hold: an operator's undrain
    (a tombstone) of a lease that is live at the undrain's ``at``. (APPLY_LUA, drains only)"""
    return new.deleted and stored is not None and stored.is_lease and stored.live(new.at)


def block_field(client: str, identity: str) -> str:
    return json.dumps([client, identity], separators=(",", ":"))


def parse_block_field(raw: str) -> tuple[str, str] | None:
    try:
        client, identity = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return (client, identity) if isinstance(client, str) and isinstance(identity, str) else None


def decode_hash(mapping: Mapping[bytes | str, bytes | str]) -> dict[str, Entry]:
    """A stored hash (HGETALL) -> its entries by field; unreadable values are skipped."""
    parsed: dict[str, Entry] = {}
    for field, value in mapping.items():
        entry = Entry.from_json(value)
        if entry is not None:
            parsed[field.decode() if isinstance(field, bytes) else field] = entry
    return parsed


def merge(per_region: Iterable[Mapping[str, Entry]]) -> dict[str, Entry]:
    """The winning entry per key across regions (``wins_over``).

    Winners that have expired are kept: they still override older entries elsewhere (a
    later, shorter drain ends an earlier, longer one everywhere)."""
    winners: dict[str, Entry] = {}
    for entries in per_region:
        for key, entry in entries.items():
            current = winners.get(key)
            if current is None or entry.wins_over(current):
                winners[key] = entry
    return winners


def in_force(entry: Entry, now: float) -> bool:
    """Worth copying to a region that has nothing for its key: a live record, or a tombstone
    still within its retention (or retained)."""
    return entry.live(now) or (
        entry.deleted and (entry.retained or entry.until is None or entry.until > now)
    )


#: ``Entry.is_lease`` in Lua, for the scripts here and in ``tokensvc.store.leases``: the
#: script defines ``prefix`` (the lease prefix) before it.
IS_LEASE_LUA = """
local function lease(e)
  return e['deleted'] ~= true and type(e['reason']) == 'string'
    and string.sub(e['reason'], 1, #prefix) == prefix
end
"""

#: ``written_over`` (and, for drains, ``holds_after``) as an atomic conditional write. KEYS[1]
#: the hash, KEYS[2] (drains only) the holds hash; ARGV: field, entry JSON, the entry's ``at``,
#: 1 if a tombstone else 0, the channel, 1 if the entry is a feed lease else 0, the lease
#: prefix, the hold's JSON, the entry's JSON when retained, 1 if the entry is retained else 0.
#: Writes (and publishes) unless the stored entry wins; an unreadable stored value (or an
#: unreadable ``under``) counts as nothing. Returns 1 when written.
APPLY_LUA = (
    """
local prefix = ARGV[7]
"""
    + IS_LEASE_LUA
    + """local function decoded(raw)
  if type(raw) ~= 'string' then return nil end
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' then return e end
  return nil
end
local function flag(b) if b == true then return 1 end return 0 end
local function forever(e)
  return e['retained'] == true or (e['deleted'] ~= true and type(e['until']) ~= 'number')
end
local nat, ndel, nret = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[10])
local nlease = ARGV[6] == '1'
local c = decoded(redis.call('HGET', KEYS[1], ARGV[1]))
local hold, keep = false, false
if c then
  local clease = lease(c)
  local base = c
  if clease ~= nlease then
    if nlease then return 0 end
    base = decoded(c['under'])
  end
  if base then
    local bat, bdel, bret = tonumber(base['at']) or 0, flag(base['deleted']), flag(base['retained'])
    if bat > nat then return 0 end
    if bat == nat then
      if bdel > ndel then return 0 end
      if bdel == ndel and bret >= nret then return 0 end
    end
    keep = forever(base)
  end
  if clease and ndel == 1 and (type(c['until']) ~= 'number' or c['until'] > nat) then
    hold = true
  end
end
local value = ARGV[2]
if keep then value = ARGV[9] end
redis.call('HSET', KEYS[1], ARGV[1], value)
if hold and KEYS[2] then redis.call('HSET', KEYS[2], ARGV[1], ARGV[8]) end
redis.call('PUBLISH', ARGV[5], KEYS[1])
return 1
"""
)

#: ``prunable`` over a whole hash. KEYS[1] the hash; ARGV: now, keep (seconds). Returns how
#: many entries were deleted.
PRUNE_LUA = """
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local function prunable(raw)
  local ok, c = pcall(cjson.decode, raw)
  if not ok or type(c) ~= 'table' or type(c['until']) ~= 'number' then return false end
  if c['retained'] == true then return false end
  if not (c['until'] < now and (tonumber(c['at']) or 0) + keep < now) then return false end
  return type(c['under']) ~= 'string' or prunable(c['under'])
end
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  if prunable(all[i + 1]) then
    redis.call('HDEL', KEYS[1], all[i])
    n = n + 1
  end
end
return n
"""
