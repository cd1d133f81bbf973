"""HTTP endpoints: parse -> call -> render. No business rule lives here that is not named."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from tokensvc.clientset import Client
from tokensvc.edges import normalize_country, without_drained
from tokensvc.errors import (
    Forbidden,
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unauthenticated,
    UnknownClient,
    UnsupportedMediaType,
)
from tokensvc.identity import to_twilio_identity
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS
from tokensvc.service import Service

BODY_FIELDS = frozenset({"platform", "apns_environment", "country", "identity"})
MAX_BODY_IDENTITY = 1024
EDGES_CACHE_SECONDS = 10
PREFLIGHT_MAX_AGE = 600


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _context(request: Request) -> dict[str, Any]:
    """Per-request fields for the access log line (see app.RequestContext)."""
    ctx: dict[str, Any] = request.scope.setdefault("tokensvc", {})
    return ctx


def _client(request: Request, service: Service) -> Client:
    client_id = request.path_params["client"]
    client = service.clients.get(client_id)
    if client is None:
        raise UnknownClient(f"no client {client_id[:64]!r}")
    _context(request)["client"] = client.id
    return client


def _cors_headers(request: Request, client: Client) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin and origin in client.config.allow_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": "X-Request-Id, Retry-After"}
    return {}


def _country(request: Request, service: Service, hint: Any) -> str | None:
    header = service.settings.country_header
    if header:
        trusted = normalize_country(request.headers.get(header))
        if trusted:
            return trusted
    return normalize_country(hint) if isinstance(hint, str) else None


def _client_ip(request: Request, service: Service) -> str:
    header = service.settings.client_ip_header
    if header:
        value = request.headers.get(header)
        if value:
            hops = [h.strip() for h in value.split(",") if h.strip()]
            if hops:
                return hops[-min(service.settings.trusted_hops, len(hops))][:64]
    return request.client.host if request.client else "unknown"


async def _read_body(request: Request, service: Service) -> dict[str, Any]:
    settings = service.settings
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise InvalidRequest("invalid Content-Length")
        if int(length) > settings.max_body_bytes:
            raise PayloadTooLarge(f"body larger than {settings.max_body_bytes} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(settings.body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > settings.max_body_bytes:
                    raise PayloadTooLarge(f"body larger than {settings.max_body_bytes} bytes")
    except TimeoutError:
        raise RequestTimeout(f"body not received within {settings.body_timeout:g} s",
                             headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise InvalidRequest("client disconnected") from None
    if not body.strip():
        return {}
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    unknown = set(data) - BODY_FIELDS
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    return data


def _body_choice(data: dict[str, Any], name: str, options: tuple[str, ...]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if value not in options:
        raise InvalidRequest(f"{name} must be one of {', '.join(options)}")
    return str(value)


def _rfc3339(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def refresh_in(ttl: int) -> int:
    """Seconds until a client should refresh: 75-85 % of the lifetime, jittered so clients
    that started together do not all come back in the same second."""
    return int(ttl * random.uniform(0.75, 0.85))  # noqa: S311 - jitter, not security


async def token(request: Request) -> Response:
    service = _service(request)
    if not service.ready:
        raise NotReady("service is starting or shutting down")
    client = _client(request, service)
    ctx = _context(request)
    cors = _cors_headers(request, client)
    data = await _read_body(request, service)
    platform = _body_choice(data, "platform", PLATFORMS) or "browser"
    apns = _body_choice(data, "apns_environment", APNS_ENVIRONMENTS)
    body_identity = data.get("identity")
    if body_identity is not None:
        if client.config.auth.type == "jwt":
            raise InvalidRequest("identity comes from the caller's token, not the body")
        if not isinstance(body_identity, str) or not 0 < len(body_identity) <= MAX_BODY_IDENTITY:
            raise InvalidRequest("identity must be a non-empty string")
    if "country" in data and not (data["country"] is None or isinstance(data["country"], str)):
        raise InvalidRequest("country must be an ISO 3166-1 alpha-2 code")

    shared = service.shared
    cfg = client.config
    if cfg.rate_per_ip is not None:
        ip = _client_ip(request, service)
        decision = await shared.hit(f"rl:{cfg.client_id}:ip:{ip}", cfg.rate_per_ip.limit,
                                    cfg.rate_per_ip.window)
        service.observe_rate(decision.shared)
        if not decision.allowed:
            service.metrics.rate_limited.labels(cfg.client_id, "ip").inc()
            raise RateLimited("too many requests from this address",
                              retry_after=decision.retry_after)
    try:
        raw_identity = await client.auth.verify(request.headers.get("authorization"),
                                                body_identity)
    except Unauthenticated as exc:
        ctx["reason"] = exc.reason
        service.metrics.auth_failures.labels(cfg.client_id, exc.reason).inc()
        raise
    identity = to_twilio_identity(raw_identity, cfg.auth.identity_encoding)
    ctx["identity_fp"] = service.fingerprint(cfg.client_id, identity)
    now = time.time()
    if identity in cfg.blocked_identities or shared.snapshot.is_blocked(
        cfg.client_id, identity, now
    ):
        raise Forbidden("this identity is blocked")
    if cfg.rate_per_identity is not None:
        decision = await shared.hit(f"rl:{cfg.client_id}:id:{identity}",
                                    cfg.rate_per_identity.limit, cfg.rate_per_identity.window)
        service.observe_rate(decision.shared)
        if not decision.allowed:
            service.metrics.rate_limited.labels(cfg.client_id, "identity").inc()
            raise RateLimited("too many token requests for this identity",
                              retry_after=decision.retry_after)

    country = _country(request, service, data.get("country"))
    edges = without_drained(cfg.edges.for_country(country), shared.snapshot.drained(now))
    minted = client.minter.mint(identity, platform, apns)
    service.observe_token(cfg, country, edges[0])
    ctx["edge"] = edges[0]
    ttl = minted.expires_at - int(now)
    payload = {
        "token": minted.token,
        "identity": identity,
        "ttl": ttl,
        "expires_at": _rfc3339(minted.expires_at),
        "refresh_in": refresh_in(ttl),
        "edges": edges,
        "region": service.settings.region,
        "home_region": cfg.twilio.home_region,
    }
    return JSONResponse(payload, headers={"Cache-Control": "no-store", "Pragma": "no-cache",
                                          **cors})


async def edges(request: Request) -> Response:
    service = _service(request)
    client = _client(request, service)
    country = _country(request, service, request.query_params.get("country"))
    listed = without_drained(client.config.edges.for_country(country),
                             service.shared.snapshot.drained(time.time()))
    vary = "Origin" + (f", {service.settings.country_header}" if service.settings.country_header
                       else "")
    headers = {**_cors_headers(request, client),
               "Cache-Control": f"public, max-age={EDGES_CACHE_SECONDS}", "Vary": vary}
    return JSONResponse({"edges": listed, "country": country, "region": service.settings.region},
                        headers=headers)


async def preflight(request: Request) -> Response:
    service = _service(request)
    client = _client(request, service)
    origin = request.headers.get("origin", "")
    if origin not in client.config.allow_origins:
        raise Forbidden("origin not allowed for this client")
    method = request.headers.get("access-control-request-method", "")
    allowed = "POST" if request.url.path.endswith("/token") else "GET"
    if method.upper() != allowed:
        raise Forbidden(f"only {allowed} is allowed")
    return Response(status_code=204, headers={
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": f"{allowed}, OPTIONS",
        "Access-Control-Allow-Headers": "authorization, content-type, x-request-id",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        "Vary": "Origin",
    })


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    service = _service(request)
    checks = service.readiness()
    status = 200 if service.ready else 503
    return JSONResponse({"status": "ok" if status == 200 else "not_ready", "checks": checks,
                         "region": service.settings.region}, status_code=status,
                        headers={"Cache-Control": "no-store"})


async def metrics(request: Request) -> Response:
    service = _service(request)
    service.observe_state()
    body, content_type = service.metrics.render()
    return Response(body, media_type=content_type)
