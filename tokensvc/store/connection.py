"""RedisConnection: the clients for one Redis (single endpoint or Sentinel, optional read
replica) and the one place where driver errors become ``StoreError``.

The password in the URL is for the data nodes; an explicit ``password`` (from
``TOKENSVC_REDIS_PASSWORD`` or an ops region) overrides it, and ``sentinel_password``
authenticates to the sentinels.

Every connection, the sentinels' included, has explicit connect and socket timeouts and at
most one immediate retry on a connection error (which re-asks Sentinel for the primary);
every call also runs under an outer deadline (``Timeouts.call``). A write that meets
``READONLY`` (the endpoint is a demoted primary) drops the pool's connections so the next
call reconnects to whatever is primary now, and counts a failover.

Both ``RedisStore`` (the data plane) and ``RegionAdmin`` (the operator's API) run their calls
through ``run`` and read or write entries with ``read_entries`` / ``apply``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError

from tokensvc.errors import StoreError
from tokensvc.store.base import FEED_PREFIX
from tokensvc.store.entries import (
    APPLY_LUA,
    CHANNEL,
    DRAINS,
    HOLD_SECONDS,
    HOLDS,
    KINDS,
    PREFIX,
    Entry,
    decode_hash,
)
from tokensvc.store.sentinel import EpochSentinel
from tokensvc.store.urls import Endpoint, Timeouts, parse_url

T = TypeVar("T")


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
) -> tuple[Redis, EpochSentinel | None]:
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
    manager = EpochSentinel(endpoint.hosts, sentinel_kwargs=sentinel_kwargs, wait=timeouts.sentinel)
    assert endpoint.service is not None  # noqa: S101 - parse_url guarantees it
    factory = manager.slave_for if replica else manager.master_for
    client: Redis = factory(endpoint.service, **kwargs)
    return client, manager


class RedisConnection:
    """Clients for one Redis: writes go to ``primary``, reads to ``read`` (a replica when
    ``read_url`` is given, else the primary). Raises ConfigError for a malformed URL."""

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
        self._managers: list[EpochSentinel] = []
        self.primary = self._own(
            _client(self.endpoint, password or url_password, sentinel_password, self.timeouts)
        )
        self.read_endpoint: Endpoint | None = None
        self.read = self.primary
        if read_url:
            self.read_endpoint, read_password = parse_url(
                read_url, source=source.replace("_URL", "_READ_URL")
            )
            self.read = self._own(
                _client(
                    self.read_endpoint,
                    password or read_password,
                    sentinel_password,
                    self.timeouts,
                    replica=True,
                )
            )
        self._apply = self.primary.register_script(APPLY_LUA)
        #: primary changes noticed (Sentinel reported a new primary, or a write met READONLY)
        self.failovers = 0
        self._primary_address: tuple[str, int] | None = None

    def describe(self) -> str:
        read = f", read={self.read_endpoint.describe()}" if self.read_endpoint else ""
        return f"{self.endpoint.describe()}{read}"

    async def run(
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
                    await self.primary.connection_pool.disconnect()
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

    async def read_entries(self) -> dict[str, dict[str, Entry]]:
        """Every stored drain and block entry, tombstones and expired ones included."""

        async def read() -> list[Any]:
            pipe = self.read.pipeline(transaction=False)
            for kind in KINDS:
                pipe.hgetall(PREFIX + kind)
            return list(await pipe.execute())

        raw = await self.run(read, write=False)
        return {kind: decode_hash(dict(mapping)) for kind, mapping in zip(KINDS, raw, strict=True)}

    async def apply(self, kind: str, field: str, entry: Entry) -> bool:
        """Write ``entry`` unless the stored one wins over it (``Entry.written_over``,
        atomically in APPLY_LUA; written retained when it replaces what lasts forever); a
        write publishes a change notification. An undrain of a live feed
        lease also writes an undrain hold (``entries.holds_after``). Returns whether it wrote."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        keys = [PREFIX + kind] + ([PREFIX + HOLDS] if kind == DRAINS else [])
        hold = Entry(entry.at, entry.at + HOLD_SECONDS, "undrain hold")
        args: list[str | int] = [
            field,
            entry.to_json(),
            repr(entry.at),
            int(entry.deleted),
            CHANNEL,
            int(entry.is_lease),
            FEED_PREFIX,
            hold.to_json(),
            replace(entry, retained=True).to_json(),
            int(entry.retained),
        ]
        written = await self.run(lambda: self._apply(keys=keys, args=args), write=True)
        return bool(written)

    async def check_primary(self) -> None:
        """Ask Sentinel who is primary now; if it changed, drop idle connections to the old one.

        Called by every background refresh: after a failover the deposed primary may keep
        accepting writes for seconds (until Sentinel demotes it), and pooled connections
        would otherwise keep writing there."""
        if self.endpoint.sentinel and self.endpoint.service is not None:
            manager, service = self._managers[0], self.endpoint.service
            await self.run(lambda: manager.rediscover(service), write=False)
            await self.primary_address()
            self._note_primary()

    async def primary_address(self) -> tuple[str, int]:
        """Where writes go now (asks Sentinel when there is one)."""
        pool = self.primary.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            address = await self.run(pool.get_master_address, write=False)
            return str(address[0]), int(address[1])
        return self.endpoint.hosts[0]

    async def close(self) -> None:
        for close in self._closers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeouts.call):
                    await close()

    def _own(self, made: tuple[Redis, EpochSentinel | None]) -> Redis:
        """Keep a client (and its Sentinel manager) to close them with the connection."""
        client, manager = made
        self._closers.append(client.aclose)
        if manager is not None:
            self._managers.append(manager)
            self._closers.append(manager.aclose)
        return client

    def _forget_primary(self) -> None:
        """After any error, the next connection asks Sentinel again (no cached primary)."""
        for manager in self._managers:
            manager.invalidate()

    def _note_primary(self) -> None:
        pool = self.primary.connection_pool
        if not isinstance(pool, SentinelConnectionPool) or pool.master_address is None:
            return
        address: tuple[str, int] = pool.master_address
        if self._primary_address is not None and address != self._primary_address:
            self.failovers += 1
        self._primary_address = address


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
