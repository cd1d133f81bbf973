"""The status feed's rules on shared state, in Python and in Lua (the writes must be atomic).

    lease_may_write()   a feed lease may be written unless an operator's word stands: a live
                        operator drain, a live undrain hold, or a live pin       (LEASE_LUA)
    lease_written()     the lease as stored: it keeps the operator's entry it replaces
                        (``Entry.under``), so merges see the region as if it were not there
                                                                                  (LEASE_LUA)
    lease_releasable()  a lease is released only if the stored record is exactly that lease;
                        releasing it puts back the operator's entry under it     (RELEASE_LUA)
    LOCK_LUA            the region's poller lock: SET NX PX, or PEXPIRE by its holder

What the feed reads and writes in one region (all under ``tokensvc:``): the ``drains`` hash
(its leases are drain records with reason ``statusfeed:<component>:<status>``, so every pod,
``edges list``, pub/sub and ``sync`` see them), the ``pins`` hash (``edges pin``, written to
every region like drains), the ``holds`` hash (written by the undrain of a live lease, see
``entries.holds_after``; ended by the feed) and the ``statusfeed:lock`` string.

As with ``entries``, each rule is written twice; ``tests/store/test_leases.py`` runs both on
the same inputs (the Lua on a real Valkey) and requires the same answers.
"""

from __future__ import annotations

from dataclasses import replace

from tokensvc.store.entries import IS_LEASE_LUA, Entry

LOCK_KEY = "statusfeed:lock"


def lease_may_write(
    stored: Entry | None, hold: Entry | None, pin: Entry | None, now: float
) -> bool:
    """Whether the feed may write a lease over ``stored``: not over a live operator drain
    (an expired one or a tombstone is fine), not while an undrain hold or a pin is live."""
    if stored is not None and not stored.is_lease and stored.live(now):
        return False
    if hold is not None and hold.live(now):
        return False
    return not (pin is not None and pin.live(now))


def lease_written(stored: Entry | None, lease: Entry) -> Entry:
    """What a lease write allowed over ``stored`` stores: the lease, carrying the operator's
    entry under it (``stored`` itself, or what was under a stored lease)."""
    return replace(lease, under=None if stored is None else stored.operator_entry)


def lease_releasable(stored: Entry | None, reason: str) -> bool:
    """Whether releasing the lease ``reason`` removes ``stored``: only that exact lease. What
    remains is the operator's entry under it (``stored.under``), or nothing."""
    return stored is not None and stored.is_lease and stored.reason == reason


#: ``lease_may_write`` and ``lease_written``. KEYS: drains, holds, pins; ARGV: field, entry
#: JSON, now, channel, the lease prefix. Writes and publishes when allowed; an unreadable
#: stored value counts as nothing stored. The stored operator entry (or a stored lease's
#: ``under``) is copied into the lease's ``under`` byte for byte (as a JSON string, so no
#: number is re-encoded). Returns 1 when written.
LEASE_LUA = (
    """
local now = tonumber(ARGV[3])
local prefix = ARGV[5]
"""
    + IS_LEASE_LUA
    + """local function decoded(key)
  local raw = redis.call('HGET', key, ARGV[1])
  if not raw then return nil, nil end
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' then return e, raw end
  return nil, nil
end
local function live(e)
  return e['deleted'] ~= true and (type(e['until']) ~= 'number' or e['until'] > now)
end
local cur, raw = decoded(KEYS[1])
if cur and not lease(cur) and live(cur) then return 0 end
local hold = decoded(KEYS[2])
if hold and live(hold) then return 0 end
local pin = decoded(KEYS[3])
if pin and live(pin) then return 0 end
local under = nil
if cur then
  if not lease(cur) then under = raw
  elseif type(cur['under']) == 'string' then under = cur['under'] end
end
local value = ARGV[2]
if under then
  value = string.sub(value, 1, -2) .. ',"under":' .. cjson.encode(under) .. '}'
end
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('PUBLISH', ARGV[4], KEYS[1])
return 1
"""
)

#: ``lease_releasable``. KEYS: drains; ARGV: field, the lease's reason, channel, the lease
#: prefix. When the stored record is that lease: puts back its ``under`` (or deletes it) and
#: publishes. Returns 1 if released.
RELEASE_LUA = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local ok, e = pcall(cjson.decode, raw)
if not ok or type(e) ~= 'table' or e['deleted'] == true or e['reason'] ~= ARGV[2] then
  return 0
end
if string.sub(ARGV[2], 1, #ARGV[4]) ~= ARGV[4] then return 0 end
if type(e['under']) == 'string' then
  redis.call('HSET', KEYS[1], ARGV[1], e['under'])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[3], KEYS[1])
return 1
"""

#: The poller lock. KEYS: the lock; ARGV: holder, milliseconds. Returns 1 when ``holder``
#: holds it now (taken because free, or extended because it already held it).
LOCK_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
