"""Verify a caller's credential and return the identity it proves.

    Authenticator (per client)
    ├── jwt       signature with pinned algorithms (HS* secret, PEM keys, or a JWKS), exp/iss/aud
    │             required; jku/x5u/jwk/x5c headers refused; identity from ``identity_claim``
    ├── api_key   the caller's backend presents a shared key and names the identity in the body
    └── none      dev only: the body names the identity

JWKS documents are fetched by ``JwksSource`` in the background (never on a request, except a
single throttled refresh when a token names a key id we do not know), kept in memory, shared
through the state store so a restarted pod can verify callers while the IdP is down, and kept
past their refresh time for at most ``jwks_max_stale`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tokensvc.clients import AuthConfig
from tokensvc.errors import Unauthenticated
from tokensvc.jwtlib import VERIFIER

log = logging.getLogger("tokensvc.auth")

MAX_CREDENTIAL = 8192
MAX_KID = 256
MAX_HEADER_SEGMENT = 2048  # a real JOSE header is a few hundred bytes
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
JWKS_MAX_BYTES = 1 << 20
UNKNOWN_KID_THROTTLE = 30.0

JwksCacheGet = Callable[[str], Awaitable[bytes | None]]
JwksCachePut = Callable[[str, bytes, float], Awaitable[None]]


def bearer(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer`` header, or 401."""
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer credential", reason="missing")
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("expected Authorization: Bearer <credential>", reason="malformed")
    if len(credential) > MAX_CREDENTIAL:
        raise Unauthenticated("credential too long", reason="malformed")
    return credential


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A JWKS URL is configured exactly; a redirect (perhaps to http: or another host) is an
    error, not something to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _http_get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json",  # noqa: S310
                                                  "User-Agent": "tokensvc-jwks"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body: bytes = response.read(JWKS_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # an error response holds the socket open until closed
        raise
    if len(body) > JWKS_MAX_BYTES:
        raise ValueError("JWKS document too large")
    return body


def parse_jwks(document: bytes) -> dict[str, jwt.PyJWK]:
    """Usable signing keys of a JWKS document by kid ("" for a key without kid)."""
    data = json.loads(document)
    keys: dict[str, jwt.PyJWK] = {}
    for entry in data.get("keys", []) if isinstance(data, dict) else []:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        keys[str(entry.get("kid", ""))] = key
    return keys


class JwksSource:
    """Keys of one JWKS URL, refreshed in the background, usable while the IdP is down."""

    def __init__(
        self,
        url: str,
        *,
        refresh: float,
        max_stale: float,
        timeout: float,
        cache_get: JwksCacheGet | None = None,
        cache_put: JwksCachePut | None = None,
        fetch: Callable[[str, float], bytes] = _http_get,
    ) -> None:
        self.url = url
        self.refresh_interval = refresh
        self.max_stale = max_stale
        self.timeout = timeout
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = 0.0
        self.last_result = "never"
        self._cache_get = cache_get
        self._cache_put = cache_put
        self._fetch = fetch
        self._inflight: asyncio.Task[bool] | None = None
        self._last_forced = 0.0
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
        tasks = [t for t in (self._task, self._inflight) if t is not None]
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
        """Candidate keys for a token's kid; an unknown kid triggers one throttled refresh."""
        found = self._lookup(kid)
        if found:
            return found
        now = time.monotonic()
        if now - self._last_forced >= UNKNOWN_KID_THROTTLE:
            self._last_forced = now
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.refresh(), self.timeout + 0.5)
            return self._lookup(kid)
        return []

    def _lookup(self, kid: str | None) -> list[Any]:
        if not self.usable:
            return []
        if kid is None:
            return [k.key for k in self.keys.values()] if len(self.keys) == 1 else []
        key = self.keys.get(kid)
        return [key.key] if key is not None else []

    async def _refresh_once(self) -> bool:
        try:
            document = await asyncio.wait_for(
                asyncio.to_thread(self._fetch, self.url, self.timeout), self.timeout + 0.5
            )
            keys = parse_jwks(document)
            if not keys:
                raise ValueError("JWKS has no usable signing keys")
        except Exception as exc:  # noqa: BLE001 - any fetch failure keeps the old keys
            self.last_result = "error"
            self.on_refresh("error")
            log.warning("jwks refresh failed", extra={"jwks_url": self.url,
                                                       "error": type(exc).__name__})
            return False
        self.keys, self.fetched_at, self.last_result = keys, time.time(), "ok"
        self.on_refresh("ok")
        if self._cache_put is not None:
            # The fetch time travels with the document, so a pod that loads it later still
            # stops trusting it max_stale seconds after this fetch, not after its own start.
            envelope = f"{self.fetched_at:.3f}\n".encode() + document
            await self._cache_put(self.url, envelope, self.max_stale)
        return True

    async def _load_cached(self) -> None:
        if self._cache_get is None:
            return
        envelope = await self._cache_get(self.url)
        if not envelope:
            return
        stamp, _, document = envelope.partition(b"\n")
        try:
            fetched_at = float(stamp)
            keys = parse_jwks(document)
        except (ValueError, TypeError, RecursionError):
            return
        if keys and time.time() - fetched_at <= self.max_stale:
            self.keys, self.fetched_at, self.last_result = keys, fetched_at, "cache"
            self.on_refresh("cache")
            log.info("jwks loaded from shared cache", extra={"jwks_url": self.url})

    async def _loop(self) -> None:
        while True:
            interval = self.refresh_interval if self.last_result == "ok" else min(
                30.0, self.refresh_interval)
            await asyncio.sleep(interval)
            await self.refresh()


@dataclass(frozen=True)
class Authenticator:
    """Verifies callers of one client."""

    config: AuthConfig
    jwks: JwksSource | None = None
    pem_keys: tuple[Any, ...] = ()

    @classmethod
    def build(cls, config: AuthConfig, jwks: JwksSource | None = None) -> Authenticator:
        pems = tuple(load_pem_public_key(p.encode()) for p in config.public_keys)
        return cls(config, jwks, pems)

    @property
    def ready(self) -> bool:
        return self.jwks is None or self.jwks.usable

    async def verify(self, authorization: str | None, body_identity: str | None) -> str:
        """The caller's raw (not yet Twilio-encoded) identity, or Unauthenticated."""
        kind = self.config.type
        if kind == "none":
            return _body_identity(body_identity)
        credential = bearer(authorization)
        if kind == "api_key":
            # compare against every key so timing does not reveal which one matched
            matched = False
            for key in self.config.api_keys:
                matched |= hmac.compare_digest(credential.encode(), key.reveal().encode())
            if not matched:
                raise Unauthenticated("invalid API key", reason="invalid_key")
            return _body_identity(body_identity)
        return await self._verify_jwt(credential)

    async def _verify_jwt(self, token: str) -> str:
        cfg = self.config
        header = _peek_header(token)
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise Unauthenticated("token algorithm not accepted", reason="algorithm")
        if any(h in header for h in FORBIDDEN_HEADERS):
            raise Unauthenticated("token header not accepted", reason="header")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID):
            raise Unauthenticated("token key id not accepted", reason="unknown_key")
        keys = await self._keys(kid)
        if not keys:
            raise Unauthenticated("token signed by an unknown key", reason="unknown_key")
        claims: dict[str, Any] | None = None
        failure = "signature"
        for key in keys:
            try:
                claims = VERIFIER.decode(
                    token, key, algorithms=[alg], audience=cfg.audience, issuer=cfg.issuer,
                    leeway=cfg.leeway_seconds,
                    options={"require": ["exp", "iss", "aud"], "verify_signature": True},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                failure = "expired"
                break
            except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
                failure = "claims"
                break
        if claims is None:
            raise Unauthenticated(f"token rejected ({failure})", reason=failure)
        identity = claims.get(cfg.identity_claim)
        if not isinstance(identity, str) or not identity:
            raise Unauthenticated("token has no identity claim", reason="identity")
        return identity

    async def _keys(self, kid: str | None) -> list[Any]:
        if self.config.hmac_secret is not None:
            return [self.config.hmac_secret.reveal().encode()]
        if self.jwks is not None:
            return await self.jwks.key_for(kid)
        return list(self.pem_keys)


def _peek_header(token: str) -> dict[str, Any]:
    """The token's JOSE header, read without verifying anything (pyjwt verifies it all again);
    cheaper than ``jwt.get_unverified_header``, which decodes every segment."""
    head, sep, _ = token.partition(".")
    if not sep or len(head) > MAX_HEADER_SEGMENT:
        raise Unauthenticated("malformed token", reason="malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise Unauthenticated("malformed token", reason="malformed") from None
    if not isinstance(header, dict):
        raise Unauthenticated("malformed token", reason="malformed")
    return header


def _body_identity(identity: str | None) -> str:
    if not identity:
        raise Unauthenticated("this client names the identity in the body: "
                              '{"identity": "..."}', reason="identity")
    return identity
