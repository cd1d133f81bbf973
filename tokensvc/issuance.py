"""The token request, independent of HTTP plumbing.

    parse body -> per-IP limit -> verify caller -> Twilio identity -> blocked? ->
    per-identity limit -> edges for the caller's country, minus drains -> mint -> payload

``headers`` are lower-case names mapped to values (the first of duplicates wins).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

from tokensvc.clientset import Client
from tokensvc.edges import normalize_country, without_drained
from tokensvc.errors import (
    Forbidden,
    InvalidRequest,
    NotReady,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from tokensvc.identity import to_twilio_identity
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS
from tokensvc.service import Service

BODY_FIELDS = frozenset({"platform", "apns_environment", "country", "identity"})
MAX_BODY_IDENTITY = 1024
EXPOSED = "X-Request-Id, Retry-After"


def cors_headers(client: Client, headers: Mapping[str, str]) -> dict[str, str]:
    origin = headers.get("origin")
    if origin and origin in client.config.allow_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": EXPOSED}
    return {}


def country(service: Service, headers: Mapping[str, str], hint: Any) -> str | None:
    """The trusted load-balancer header first, then the caller's hint."""
    header = service.settings.country_header
    if header:
        trusted = normalize_country(headers.get(header))
        if trusted:
            return trusted
    return normalize_country(hint) if isinstance(hint, str) else None


def client_ip(service: Service, headers: Mapping[str, str], peer: str | None) -> str:
    header = service.settings.client_ip_header
    if header:
        value = headers.get(header)
        if value:
            hops = [h.strip() for h in value.split(",") if h.strip()]
            trusted = service.settings.trusted_hops
            # Fewer entries than trusted proxies: the header did not come through them, and
            # its leftmost entry is whatever the client wrote. Use the TCP peer instead.
            if len(hops) >= trusted:
                return hops[-trusted][:64]
    return peer or "unknown"


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The JSON body as a dict of known fields (empty body: no fields)."""
    if not body.strip():
        return {}
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    unknown = set(data) - BODY_FIELDS
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    return data


def _choice(data: Mapping[str, Any], name: str, options: tuple[str, ...]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if value not in options:
        raise InvalidRequest(f"{name} must be one of {', '.join(options)}")
    return str(value)


_last_rfc3339: tuple[int, str] = (-1, "")


def rfc3339(unix: int) -> str:
    """RFC 3339 UTC; the last answer is kept (requests within a second share it)."""
    global _last_rfc3339
    if _last_rfc3339[0] != unix:
        _last_rfc3339 = (unix, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix)))
    return _last_rfc3339[1]


def refresh_in(ttl: int) -> int:
    """Seconds until a client should refresh: 75-85 % of the lifetime, jittered so clients
    that started together do not all come back in the same second."""
    return int(ttl * random.uniform(0.75, 0.85))  # noqa: S311 - jitter, not security


async def issue(service: Service, client: Client, headers: Mapping[str, str],
                data: Mapping[str, Any], peer: str | None, ctx: dict[str, Any]) -> dict[str, Any]:
    """Everything between a parsed request and the 200 payload; raises ApiError."""
    cfg = client.config
    platform = _choice(data, "platform", PLATFORMS) or "browser"
    apns = _choice(data, "apns_environment", APNS_ENVIRONMENTS)
    body_identity = data.get("identity")
    if body_identity is not None:
        if cfg.auth.type == "jwt":
            raise InvalidRequest("identity comes from the caller's token, not the body")
        if not isinstance(body_identity, str) or not 0 < len(body_identity) <= MAX_BODY_IDENTITY:
            raise InvalidRequest("identity must be a non-empty string")
    hint = data.get("country")
    if hint is not None and not isinstance(hint, str):
        raise InvalidRequest("country must be an ISO 3166-1 alpha-2 code")

    shared = service.shared
    if cfg.rate_per_ip is not None:
        ip = client_ip(service, headers, peer)
        decision = shared.check(f"{cfg.client_id}:ip:{ip}", cfg.rate_per_ip.limit,
                                cfg.rate_per_ip.window)
        service.observe_rate(decision.shared)
        if not decision.allowed:
            service.metrics.rate_limited.labels(cfg.client_id, "ip").inc()
            raise RateLimited("too many requests from this address",
                              retry_after=decision.retry_after)
    if not client.auth.ready:
        # No usable identity-provider keys (never fetched, or past max_stale): a 503 sends the
        # caller to another region, where a 401 would be taken as final.
        raise NotReady("this client's identity-provider keys are unavailable here")
    try:
        raw_identity = await client.auth.verify(headers.get("authorization"), body_identity)
    except Unauthenticated as exc:
        ctx["reason"] = exc.reason
        service.metrics.auth_failures.labels(cfg.client_id, exc.reason).inc()
        raise
    identity = to_twilio_identity(raw_identity, cfg.auth.identity_encoding,
                                  cfg.auth.identity_prefix)
    ctx["identity_fp"] = service.fingerprint(cfg.client_id, identity)
    now = time.time()
    if cfg.blocks(raw_identity, identity) or shared.snapshot.is_blocked(
        cfg.client_id, identity, now
    ):
        raise Forbidden("this identity is blocked")
    if cfg.rate_per_identity is not None:
        decision = shared.check(f"{cfg.client_id}:id:{identity}",
                                cfg.rate_per_identity.limit, cfg.rate_per_identity.window)
        service.observe_rate(decision.shared)
        if not decision.allowed:
            service.metrics.rate_limited.labels(cfg.client_id, "identity").inc()
            raise RateLimited("too many token requests for this identity",
                              retry_after=decision.retry_after)

    where = country(service, headers, hint)
    edges = without_drained(cfg.edges.for_country(where), shared.snapshot.drained(now))
    minted = client.minter.mint(identity, platform, apns)
    service.observe_token(cfg, where, edges[0])
    ctx["edge"] = edges[0]
    ttl = minted.expires_at - int(now)
    return {
        "token": minted.token,
        "identity": identity,
        "ttl": ttl,
        "expires_at": rfc3339(minted.expires_at),
        "refresh_in": refresh_in(ttl),
        "edges": edges,
        "region": service.settings.region,
        "home_region": cfg.twilio.home_region,
    }
