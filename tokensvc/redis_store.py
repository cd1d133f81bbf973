"""RedisStore: the shared-state Store on Redis (or Valkey), single endpoint or Sentinel.

URL forms (``TOKENSVC_REDIS_URL``, ``TOKENSVC_REDIS_READ_URL``, ops config regions)::

    redis://[[user]:password@]host[:6379][/db]
    rediss://...                                           TLS
    redis+sentinel://[[user]:password@]h1[:26379],h2:p2,h3:p3/<service>[/db]
    rediss+sentinel://...                                  TLS to sentinels and nodes
    ?ssl_ca_certs=/path&ssl_certfile=/path&ssl_keyfile=/path&ssl_cert_reqs=required|optional|none
    &ssl_check_hostname=true|false                          TLS options (files are mounted)

The password in the URL is for the data nodes; ``TOKENSVC_REDIS_PASSWORD`` (or ``_FILE``)
overrides it, and ``TOKENSVC_REDIS_SENTINEL_PASSWORD`` (or ``_FILE``) authenticates to the
sentinels. A malformed URL (no host, no Sentinel service name, unknown option) is a
ConfigError at construction, never a failure at first use.

Every connection, the sentinels' included, has explicit connect and socket timeouts and at
most one immediate retry on a connection error (which re-asks Sentinel for the primary);
every call also runs under an outer deadline (``Timeouts.call``). A write that meets
``READONLY`` (the endpoint is a demoted primary) drops the pool's connections so the next
call reconnects to whatever is primary now, and counts a failover.

Keys (all under ``tokensvc:``): ``drains`` and ``blocks`` hashes of JSON ``Entry`` records
(``blocks`` fields are JSON ``[client, identity]``), ``rl:<key>:<window>:<window start>``
counters (added to in batches, see tokensvc.ratelimit),
``jwks:<sha256 of url>`` documents; change notifications on the ``tokensvc:changes`` channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokensvc.errors import ConfigError, Problem, StoreError
from tokensvc.ratelimit import Delta
from tokensvc.state import Block, Drain, Snapshot

if TYPE_CHECKING:
    from tokensvc.settings import Settings

T = TypeVar("T")

PREFIX = "tokensvc:"
DRAINS = "drains"
BLOCKS = "blocks"
KINDS = (DRAINS, BLOCKS)
CHANNEL = PREFIX + "changes"

#: How long an undrain/unblock tombstone is kept, so that ``sync`` cannot resurrect what it
#: cancelled: longer than any drain can last, and long enough for a region to be reconciled.
TOMBSTONE_SECONDS = 30 * 86400.0

_SCHEMES = {
    "redis": (False, False),
    "rediss": (False, True),
    "redis+sentinel": (True, False),
    "rediss+sentinel": (True, True),
}
_TLS_OPTIONS = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
                "ssl_check_hostname"}

# Last writer wins on ``at``; on a tie a tombstone beats a record. Returns 1 when written.
_APPLY = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, c = pcall(cjson.decode, cur)
  if ok and type(c) == 'table' then
    local cat = tonumber(c['at']) or 0
    local nat = tonumber(ARGV[3])
    if cat > nat then return 0 end
    if cat == nat then
      local cdel = 0
      if c['deleted'] == true then cdel = 1 end
      if cdel >= tonumber(ARGV[4]) then return 0 end
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[5], KEYS[1])
return 1
"""

# Delete entries (records and tombstones) past both their ``until`` and the tombstone
# retention after their ``at``. An expired record is kept that long as a version marker: it is
# what stops ``sync`` from bringing back an older, longer drain or block from a region that
# missed the shortening. Returns how many were deleted.
_PRUNE = """
local all = redis.call('HGETALL', KEYS[1])
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local n = 0
for i = 1, #all, 2 do
  local ok, c = pcall(cjson.decode, all[i + 1])
  if ok and type(c) == 'table' and type(c['until']) == 'number' then
    local at = tonumber(c['at']) or 0
    if c['until'] < now and at + keep < now then
      redis.call('HDEL', KEYS[1], all[i])
      n = n + 1
    end
  end
end
return n
"""

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


@dataclass(frozen=True)
class Entry:
    """One drain or block as stored: a record, or a tombstone (``deleted``) left by an
    undrain/unblock. ``at`` is when the operator issued it (the version: last writer wins)."""

    at: float
    until: float | None
    reason: str = ""
    deleted: bool = False

    def live(self, now: float) -> bool:
        return not self.deleted and (self.until is None or self.until > now)

    def to_json(self) -> str:
        return json.dumps(
            {"at": self.at, "until": self.until, "reason": self.reason, "deleted": self.deleted},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Entry | None:
        try:
            doc = json.loads(raw)
            until = doc.get("until")
            return cls(
                at=float(doc["at"]),
                until=None if until is None else float(until),
                reason=str(doc.get("reason", "")),
                deleted=bool(doc.get("deleted", False)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    @classmethod
    def tombstone(cls, at: float) -> Entry:
        return cls(at=at, until=at + TOMBSTONE_SECONDS, deleted=True)

    def wins_over(self, other: Entry) -> bool:
        """The merge rule: later ``at`` wins; on a tie, a tombstone wins."""
        return (self.at, self.deleted) > (other.at, other.deleted)


def block_field(client: str, identity: str) -> str:
    return json.dumps([client, identity], separators=(",", ":"))


def parse_block_field(raw: str) -> tuple[str, str] | None:
    try:
        client, identity = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return (client, identity) if isinstance(client, str) and isinstance(identity, str) else None


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Small on purpose: redis-py's defaults cost ~59 s per call on a dead server."""

    connect: float = 0.25  # TCP (and TLS) connect, data nodes
    socket: float = 0.5  # each read/write on an established connection
    sentinel: float = 0.25  # connect and read, each sentinel
    call: float = 1.0  # outer deadline of every Store call, whatever happens inside


@dataclass(frozen=True)
class Endpoint:
    """A parsed Redis URL, without secrets in its repr."""

    sentinel: bool
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    service: str | None
    db: int
    username: str | None
    tls_options: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        scheme = ("rediss" if self.tls else "redis") + ("+sentinel" if self.sentinel else "")
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"{scheme}://{hosts}/{self.service + '/' if self.service else ''}{self.db}"


def parse_url(url: str, *, source: str = "TOKENSVC_REDIS_URL") -> tuple[Endpoint, str | None]:
    """Parse a Redis URL into (Endpoint, password from the URL). Raises ConfigError.

    Messages never repeat the URL (it may hold a password)."""

    def bad(message: str) -> ConfigError:
        return ConfigError([Problem("environment", source, message)])

    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise bad("must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://")
    sentinel, tls = _SCHEMES[scheme.lower()]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        hostlist, userinfo = netloc, ""
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    default_port = 26379 if sentinel else 6379
    hosts = tuple(_parse_host(h, default_port, bad) for h in hostlist.split(",") if h)
    if not hosts:
        raise bad("no host given")
    if not sentinel and len(hosts) > 1:
        raise bad("several hosts need redis+sentinel://")
    parts = [p for p in path.split("/") if p]
    service: str | None = None
    if sentinel:
        if not parts:
            raise bad("a Sentinel URL needs the service name: redis+sentinel://h1:p1,h2:p2/<service>")
        service, parts = unquote(parts[0]), parts[1:]
    if len(parts) > 1:
        raise bad("unexpected path after the database number")
    try:
        db = int(parts[0]) if parts else 0
    except ValueError:
        raise bad("the database must be a number") from None
    if db < 0:
        raise bad("the database must be >= 0")
    options: list[tuple[str, Any]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _TLS_OPTIONS:
            raise bad(f"unknown option {key!r} (known: {', '.join(sorted(_TLS_OPTIONS))})")
        if not tls:
            raise bad(f"option {key!r} needs a rediss:// URL")
        if key == "ssl_check_hostname":
            if value.lower() not in ("true", "false"):
                raise bad("ssl_check_hostname must be true or false")
            options.append((key, value.lower() == "true"))
        elif key == "ssl_cert_reqs":
            if value not in ("required", "optional", "none"):
                raise bad("ssl_cert_reqs must be required, optional or none")
            options.append((key, value))
        else:
            options.append((key, value))
    return Endpoint(sentinel, tls, hosts, service, db, username, tuple(options)), password


def _parse_host(
    raw: str, default_port: int, bad: Callable[[str], ConfigError]
) -> tuple[str, int]:
    if raw.startswith("["):
        host, _, port_part = raw[1:].partition("]")
        port_text = port_part[1:] if port_part.startswith(":") else ""
    else:
        host, _, port_text = raw.partition(":")
    if not host:
        raise bad("empty host name")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad("port must be 1..65535")
    return host, int(port_text)


class _EpochSentinel(Sentinel):
    """Sentinel discovery that asks every sentinel at once, believes the newest config, and
    caches the answer.

    redis-py takes the first sentinel that names a primary; right after a failover a lagging
    sentinel still names the old one (it learns the new config ~2 s later), and the deposed
    primary keeps accepting writes until Sentinel demotes it (~8 s later). Here all sentinels
    are asked concurrently (bounded by ``wait``) and the answer with the highest config epoch
    wins (on a tie, the sentinel running the failover, which already names the promoted
    replica). The answer is cached for ``max_age`` so that a new connection on the request path
    does not wait for a slow sentinel; ``RedisStore`` invalidates the cache after any error and
    re-discovers on every background refresh (``check_primary``).
    """

    wait = 0.25
    max_age = 5.0

    def invalidate(self) -> None:
        self._cached: tuple[float, tuple[str, int]] | None = None

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        cached: tuple[float, tuple[str, int]] | None = getattr(self, "_cached", None)
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
            promoted = "failover_in_progress" in str(state.get("flags", "")) and (
                host, port) != (str(state.get("ip")), int(state.get("port", 0)))
            healthy = state.get("is_master") and not (
                state.get("is_sdown") or state.get("is_odown"))
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


def _connection_kwargs(
    endpoint: Endpoint, password: str | None, timeouts: Timeouts
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "db": endpoint.db,
        "username": endpoint.username,
        "password": password,
        "socket_connect_timeout": timeouts.connect,
        "socket_timeout": timeouts.socket,
        "socket_keepalive": True,
        # One immediate retry on a connection error only: it reconnects (asking Sentinel for
        # the primary again). Timeouts are not retried: the outer deadline decides.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        "health_check_interval": 15,
        "client_name": "tokensvc",
    }
    if endpoint.tls:
        kwargs["ssl"] = True
        kwargs.update(dict(endpoint.tls_options))
    return kwargs


def _client(
    endpoint: Endpoint,
    password: str | None,
    sentinel_password: str | None,
    timeouts: Timeouts,
    *,
    replica: bool = False,
) -> tuple[Redis, _EpochSentinel | None]:
    kwargs = _connection_kwargs(endpoint, password, timeouts)
    if not endpoint.sentinel:
        host, port = endpoint.hosts[0]
        return Redis(host=host, port=port, **kwargs), None
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": timeouts.sentinel,
        "socket_timeout": timeouts.sentinel,
        "retry": Retry(NoBackoff(), 0),
        "password": sentinel_password,
    }
    if endpoint.tls:
        sentinel_kwargs["ssl"] = True
        sentinel_kwargs.update(dict(endpoint.tls_options))
    # redis-py leaves Sentinel.__init__ unannotated
    manager = _EpochSentinel(  # type: ignore[no-untyped-call]
        list(endpoint.hosts), sentinel_kwargs=sentinel_kwargs
    )
    manager.wait = timeouts.sentinel
    manager.invalidate()
    assert endpoint.service is not None  # noqa: S101 - parse_url guarantees it
    factory = manager.slave_for if replica else manager.master_for
    client: Redis = factory(endpoint.service, **kwargs)
    return client, manager


class RedisStore:
    """Store on Redis. Reads may go to a replica (``read_url``); writes go to the primary."""

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
        self.timeouts = timeouts or Timeouts()
        self.endpoint, url_password = parse_url(url, source=source)
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self._primary, manager = _client(
            self.endpoint, password or url_password, sentinel_password, self.timeouts
        )
        self._managers: list[_EpochSentinel] = []
        self._closers.append(self._primary.aclose)
        if manager is not None:
            self._managers.append(manager)
            self._closers.append(manager.aclose)
        self.read_endpoint: Endpoint | None = None
        self._read = self._primary
        if read_url:
            self.read_endpoint, read_password = parse_url(
                read_url, source=source.replace("_URL", "_READ_URL")
            )
            self._read, read_manager = _client(
                self.read_endpoint, password or read_password, sentinel_password,
                self.timeouts, replica=True,
            )
            self._closers.append(self._read.aclose)
            if read_manager is not None:
                self._managers.append(read_manager)
                self._closers.append(read_manager.aclose)
        self._apply = self._primary.register_script(_APPLY)
        self._prune = self._primary.register_script(_PRUNE)
        self._add_counts = self._primary.register_script(_ADD_COUNTS)
        #: primary changes noticed (Sentinel reported a new primary, or a write met READONLY)
        self.failovers = 0
        self._primary_address: tuple[str, int] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, timeouts: Timeouts | None = None) -> RedisStore:
        if settings.redis_url is None:
            raise ConfigError([Problem("environment", "TOKENSVC_REDIS_URL", "not set")])
        return cls(
            settings.redis_url.reveal(),
            read_url=settings.redis_read_url.reveal() if settings.redis_read_url else None,
            password=settings.redis_password.reveal() if settings.redis_password else None,
            sentinel_password=(
                settings.redis_sentinel_password.reveal()
                if settings.redis_sentinel_password else None
            ),
            timeouts=timeouts,
        )

    def __repr__(self) -> str:
        read = f", read={self.read_endpoint.describe()}" if self.read_endpoint else ""
        return f"RedisStore({self.endpoint.describe()}{read})"

    # -- Store protocol ---------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(self._primary.ping, write=False)

    async def snapshot(self) -> Snapshot:
        # Best effort: with every sentinel unreachable the data (a local read replica, or the
        # primary itself) may still answer, and drains/blocks must keep refreshing from it.
        with contextlib.suppress(StoreError):
            await self.check_primary()
        now = time.time()
        entries = await self.entries_all()
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
        await self.apply(DRAINS, edge, Entry(now, now + seconds, reason))

    async def undrain(self, edge: str) -> None:
        await self.apply(DRAINS, edge, Entry.tombstone(time.time()))

    async def block(self, client: str, identity: str, seconds: float | None, reason: str) -> None:
        now = time.time()
        until = None if seconds is None else now + seconds
        await self.apply(BLOCKS, block_field(client, identity), Entry(now, until, reason))

    async def unblock(self, client: str, identity: str) -> None:
        await self.apply(BLOCKS, block_field(client, identity), Entry.tombstone(time.time()))

    async def add_counts(self, deltas: Sequence[Delta]) -> list[int]:
        if not deltas:
            return []
        keys = [f"{PREFIX}rl:{name}".encode() for name, _, _ in deltas]
        spec = " ".join(f"{delta} {max(1, ttl_ms)}" for _, delta, ttl_ms in deltas)
        reply = await self._run(lambda: self._add_counts(keys=keys, args=[spec]), write=True)
        if isinstance(reply, bytes):
            reply = reply.decode()
        if not isinstance(reply, str):
            raise StoreError("rate-limit sync: unexpected reply")
        try:
            return [int(t) for t in reply.split(",")]
        except ValueError:
            raise StoreError("rate-limit sync: unexpected reply") from None

    async def jwks_get(self, url: str) -> bytes | None:
        value = await self._run(lambda: self._read.get(self._jwks_key(url)), write=False)
        return value if isinstance(value, bytes) else None

    async def jwks_put(self, url: str, document: bytes, seconds: float) -> None:
        ttl = max(1, int(seconds))
        await self._run(lambda: self._primary.set(self._jwks_key(url), document, ex=ttl),
                        write=True)

    async def changes(self) -> AsyncIterator[None]:
        """Yield once subscribed (so the caller refreshes), then on every change message.

        Raises StoreError when the subscription breaks or goes silent (a PING every second
        must be answered within 3 s), so the caller resubscribes, possibly on a new primary.
        """
        pubsub = self._read.pubsub()
        try:
            await self._run(lambda: pubsub.subscribe(CHANNEL), write=False)
            yield None
            last_seen = last_ping = time.monotonic()
            while True:
                message = await self._run(
                    lambda: pubsub.get_message(timeout=0.5), write=False,
                    deadline=self.timeouts.call + 0.5,
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
                    await self._run(pubsub.ping, write=False)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.call):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated

    async def close(self) -> None:
        for close in self._closers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.call):
                    await close()

    # -- for the ops tooling ----------------------------------------------------------------

    async def entries_all(self) -> dict[str, dict[str, Entry]]:
        """Every stored drain and block entry, tombstones and expired ones included."""

        async def read() -> list[Any]:
            pipe = self._read.pipeline(transaction=False)
            pipe.hgetall(PREFIX + DRAINS)
            pipe.hgetall(PREFIX + BLOCKS)
            return list(await pipe.execute())

        raw = await self._run(read, write=False)
        result: dict[str, dict[str, Entry]] = {}
        for kind, mapping in zip(KINDS, raw, strict=True):
            parsed: dict[str, Entry] = {}
            for field, value in dict(mapping).items():
                entry = Entry.from_json(value)
                if entry is not None:
                    parsed[field.decode() if isinstance(field, bytes) else str(field)] = entry
            result[kind] = parsed
        return result

    async def entries(self, kind: str) -> dict[str, Entry]:
        return (await self.entries_all())[kind]

    async def apply(self, kind: str, field: str, entry: Entry) -> bool:
        """Write ``entry`` unless the stored one wins over it (last writer wins). Publishes a
        change notification when written. Returns whether it was written."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        written = await self._run(
            lambda: self._apply(
                keys=[PREFIX + kind],
                args=[field, entry.to_json(), repr(entry.at), int(entry.deleted), CHANNEL],
            ),
            write=True,
        )
        return bool(written)

    async def apply_many(self, kind: str, entries: Mapping[str, Entry]) -> int:
        written = 0
        for field, entry in entries.items():
            written += await self.apply(kind, field, entry)
        return written

    async def prune(self, kinds: Iterable[str] = KINDS, now: float | None = None) -> int:
        """Delete expired records and tombstones past their retention."""
        moment = time.time() if now is None else now
        removed = 0
        args = [repr(moment), repr(TOMBSTONE_SECONDS)]
        for kind in kinds:
            prune = functools.partial(self._prune, keys=[PREFIX + kind], args=args)
            removed += int(await self._run(prune, write=True))
        return removed

    async def check_primary(self) -> None:
        """Ask Sentinel who is primary now; if it changed, drop idle connections to the old one.

        Called by every background refresh: after a failover the deposed primary may keep
        accepting writes for seconds (until Sentinel demotes it), and pooled connections
        would otherwise keep writing there."""
        if self.endpoint.sentinel and self.endpoint.service is not None:
            manager, service = self._managers[0], self.endpoint.service
            await self._run(lambda: manager.rediscover(service), write=False)
            await self.primary_address()
            self._note_primary()

    async def primary_address(self) -> tuple[str, int]:
        """Where writes go now (asks Sentinel when there is one)."""
        pool = self._primary.connection_pool
        if self.endpoint.sentinel:
            address = await self._run(pool.get_master_address, write=False)  # type: ignore[attr-defined]
            return str(address[0]), int(address[1])
        return self.endpoint.hosts[0]

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _jwks_key(url: str) -> str:
        return f"{PREFIX}jwks:{hashlib.sha256(url.encode()).hexdigest()}"

    async def _run(
        self, call: Callable[[], Awaitable[T]], *, write: bool, deadline: float | None = None
    ) -> T:
        """Run one Redis call under the outer deadline; every failure becomes StoreError."""
        try:
            async with asyncio.timeout(self.timeouts.call if deadline is None else deadline):
                result = await call()
        except TimeoutError as exc:
            self._forget_primary()
            raise StoreError("redis call timed out") from exc
        except ReadOnlyError as exc:
            self._forget_primary()
            # A single endpoint that turned replica (a failover behind DNS or a proxy): drop
            # every connection so the next call resolves and connects afresh.
            self.failovers += 1
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.call):
                    await self._primary.connection_pool.disconnect()
            raise StoreError("redis endpoint is read-only (demoted primary)") from exc
        except RedisError as exc:
            self._forget_primary()
            raise StoreError(f"redis: {type(exc).__name__}: {_short(exc)}") from exc
        except OSError as exc:
            self._forget_primary()
            raise StoreError(f"redis: {type(exc).__name__}") from exc
        if write:
            self._note_primary()
        return result

    def _forget_primary(self) -> None:
        """After any error, the next connection asks Sentinel again (no cached primary)."""
        for manager in self._managers:
            manager.invalidate()

    def _note_primary(self) -> None:
        address = getattr(self._primary.connection_pool, "master_address", None)
        if address is None:
            return
        if self._primary_address is not None and address != self._primary_address:
            self.failovers += 1
        self._primary_address = address


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
