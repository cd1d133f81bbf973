"""An identity provider's signing keys (a JWKS URL), kept fresh in the background.

    JwksSource (one per JWKS URL)
    ├── refresh    every ``refresh`` seconds (every min(30 s, refresh) after a failure), single
    │              flight; through the shared ``Fetcher``: total deadline ``timeout``, body at
    │              most ``JWKS_MAX_BYTES``, no redirects, status 200 only
    ├── parse      off the event loop (``asyncio.to_thread``, CPU only: the network is never in
    │              a thread); more than ``JWKS_MAX_KEYS`` entries, or no usable key, is a
    │              failed refresh that keeps the keys already held
    ├── unknown kid  a forced refresh, at most one per ``forced_interval`` seconds per source
    │              (default 3 s), shared by every request waiting on it (see ``key_for``)
    ├── cache      every good document goes to the shared state store with its fetch time; a
    │              pod that cannot reach the IdP at start loads it from there
    └── max_stale  keys older than ``max_stale`` seconds (by original fetch time) are unusable:
                   the client answers 503 not_ready so callers fail over to another region

Isolation: each source holds at most one connection for at most ``timeout`` seconds, on the
event loop, so a slow or dripping IdP delays only its own clients' refreshes.

Key policy (``key_problem``, shared with PEM keys in ``auth``): RSA keys outside 2048..16384
bits are refused, and so are symmetric (``oct``) JWKs: a published key is never an HMAC secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tokensvc.fetch import Fetcher, FetchError

log = logging.getLogger("tokensvc.auth")

JWKS_MAX_BYTES = 1 << 20
#: Real IdPs publish 1-5 keys; more than this is a misconfiguration or an attack.
JWKS_MAX_KEYS = 100
MIN_RSA_BITS = 2048
#: Larger moduli only make each verification slower (cost grows with the square of the size).
MAX_RSA_BITS = 16384
#: Unknown-kid forced refreshes: at most one per this many seconds per source. The bound on
#: IdP traffic this causes is 1/FORCED_REFRESH_INTERVAL fetches per second per pod; the delay a
#: just-rotated key can suffer is at most this plus one fetch.
FORCED_REFRESH_INTERVAL = 3.0
FAILURE_RETRY = 30.0

JwksCacheGet = Callable[[str], Awaitable[bytes | None]]
JwksCachePut = Callable[[str, bytes, float], Awaitable[None]]


class JwksError(ValueError):
    """A JWKS answer that cannot be used: ``reason`` is a short log/metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_problem(key: Any) -> str | None:
    """Why a public key is refused for verifying callers, or None when it is acceptable."""
    if isinstance(key, rsa.RSAPublicKey) and not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        return f"RSA key of {key.key_size} bits ({MIN_RSA_BITS}..{MAX_RSA_BITS} accepted)"
    return None


def parse_jwks(document: bytes, max_keys: int = JWKS_MAX_KEYS) -> dict[str, jwt.PyJWK]:
    """Usable signing keys of a JWKS document by kid ("" for a key without kid).

    CPU-bound (JSON and key construction): callers on the event loop run it in a thread.
    Raises ``JwksError`` for a document that is not a JWKS, has more than ``max_keys``
    entries, or has no usable signing key.
    """
    try:
        data = json.loads(document)
    except (ValueError, RecursionError):
        raise JwksError("not_json") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise JwksError("not_jwks")
    if len(entries) > max_keys:
        raise JwksError("too_many_keys")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") == "oct":
            continue
        try:
            key = jwt.PyJWK(entry)
        except (
            jwt.PyJWKError,
            jwt.InvalidKeyError,
            ValueError,
            TypeError,
            KeyError,
            OverflowError,
            RecursionError,
        ):
            continue
        if key_problem(key.key) is not None:
            continue
        keys[str(entry.get("kid", ""))] = key
    if not keys:
        raise JwksError("no_usable_keys")
    return keys


class JwksSource:
    """Keys of one JWKS URL, refreshed in the background, usable while the IdP is down."""

    def __init__(
        self,
        url: str,
        *,
        fetcher: Fetcher,
        refresh: float,
        max_stale: float,
        timeout: float,
        cache_get: JwksCacheGet | None = None,
        cache_put: JwksCachePut | None = None,
        forced_interval: float = FORCED_REFRESH_INTERVAL,
        failure_retry: float = FAILURE_RETRY,
        max_keys: int = JWKS_MAX_KEYS,
    ) -> None:
        self.url = url
        self.refresh_interval = refresh
        self.max_stale = max_stale
        self.timeout = timeout
        self.forced_interval = forced_interval
        self.failure_retry = failure_retry
        self.max_keys = max_keys
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = 0.0
        self.last_result = "never"
        #: why the last refresh failed (a FetchError/JwksError reason), "" after a good one
        self.last_error = ""
        self._fetcher = fetcher
        self._cache_get = cache_get
        self._cache_put = cache_put
        self._inflight: asyncio.Task[bool] | None = None
        self._forced: asyncio.Task[None] | None = None
        self._installed: asyncio.Future[None] | None = None
        self._last_forced = -forced_interval
        self._task: asyncio.Task[None] | None = None
        #: called with "ok" | "error" | "cache" after every refresh attempt (metrics hook)
        self.on_refresh: Callable[[str], None] = lambda result: None

    @property
    def usable(self) -> bool:
        return bool(self.keys) and time.time() - self.fetched_at <= self.max_stale

    async def start(self) -> None:
        if not await self.refresh():
            await self._load_cached()
        self._task = asyncio.create_task(self._loop(), name=f"jwks:{self.url}")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._inflight, self._forced) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 1)  # bounded, like every stop

    async def refresh(self) -> bool:
        """Fetch now (single flight). True when fresh keys were installed."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._refresh_once())
        return await asyncio.shield(self._inflight)

    async def key_for(self, kid: str | None) -> list[Any]:
        """Candidate keys for a token's kid.

        An unknown kid waits for the next forced refresh: one per ``forced_interval`` seconds
        per source, shared by every request that waits meanwhile (or for an earlier background
        refresh that brings the key). So a burst of made-up kids costs the IdP at most one
        fetch per interval, and a caller with a just-rotated key waits at most
        ``forced_interval`` + one fetch for it, instead of getting a 401.
        """
        found = self._lookup(kid)
        if found:
            return found
        if self._forced is None or self._forced.done():
            self._forced = asyncio.create_task(self._forced_refresh())
        forced = self._forced
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.forced_interval + self.timeout + 0.5
        # Wake on the forced refresh or on any refresh that installs keys (the background one
        # may bring the key first), whichever comes first.
        while not forced.done() and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(
                [forced, self._next_install()],
                timeout=remaining,
                return_when=asyncio.FIRST_COMPLETED,
            )
            found = self._lookup(kid)
            if found:
                return found
        if forced.done() and not forced.cancelled():
            forced.exception()  # retrieved: refresh() logs its own failures
        return self._lookup(kid)

    def _next_install(self) -> asyncio.Future[None]:
        """A future resolved when the next good refresh installs keys."""
        if self._installed is None or self._installed.done():
            self._installed = asyncio.get_running_loop().create_future()
        return self._installed

    def _lookup(self, kid: str | None) -> list[Any]:
        if not self.usable:
            return []
        if kid is None:
            return [k.key for k in self.keys.values()] if len(self.keys) == 1 else []
        key = self.keys.get(kid)
        return [key.key] if key is not None else []

    async def _forced_refresh(self) -> None:
        wait = self._last_forced + self.forced_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_forced = time.monotonic()
        await self.refresh()

    async def _refresh_once(self) -> bool:
        try:
            response = await self._fetcher.get(
                self.url,
                deadline=self.timeout,
                max_bytes=JWKS_MAX_BYTES,
                headers={"Accept": "application/jwk-set+json, application/json"},
            )
            if response.status != 200:
                raise JwksError(f"http_{response.status}")
            keys = await asyncio.to_thread(parse_jwks, response.body, self.max_keys)
        except (FetchError, JwksError) as exc:
            self.last_result, self.last_error = "error", exc.reason
            self.on_refresh("error")
            log.warning(
                "jwks refresh failed; keeping the keys already held",
                extra={"jwks_url": self.url, "error": exc.reason},
            )
            return False
        self.keys, self.fetched_at = keys, time.time()
        self.last_result, self.last_error = "ok", ""
        if self._installed is not None and not self._installed.done():
            self._installed.set_result(None)
        self.on_refresh("ok")
        if self._cache_put is not None:
            # The fetch time travels with the document, so a pod that loads it later still
            # stops trusting it max_stale seconds after this fetch, not after its own start.
            envelope = f"{self.fetched_at:.3f}\n".encode() + response.body
            await self._cache_put(self.url, envelope, self.max_stale)
        return True

    async def _load_cached(self) -> None:
        if self._cache_get is None:
            return
        envelope = await self._cache_get(self.url)
        if not envelope or len(envelope) > JWKS_MAX_BYTES + 64:
            return
        stamp, _, document = envelope.partition(b"\n")
        try:
            fetched_at = float(stamp)
            keys = await asyncio.to_thread(parse_jwks, document, self.max_keys)
        except (ValueError, TypeError):
            return
        now = time.time()
        if math.isfinite(fetched_at) and now - self.max_stale <= fetched_at <= now + 60:
            self.keys, self.fetched_at, self.last_result = keys, fetched_at, "cache"
            self.on_refresh("cache")
            log.info("jwks loaded from shared cache", extra={"jwks_url": self.url})

    async def _loop(self) -> None:
        while True:
            interval = (
                self.refresh_interval
                if self.last_result == "ok"
                else min(self.failure_retry, self.refresh_interval)
            )
            await asyncio.sleep(interval)
            await self.refresh()
