"""Who is calling, for the endpoints beside the token POST (preflight tokens, edge reports).

    read the body (capped, deadline) -> Authorization present? -> per-IP limit (own counter)
    -> client keys usable? -> verify caller -> Twilio identity -> the body's identity is that
    one (jwt clients) -> blocked? -> per-identity limit (own counter) -> Caller

The same authentication as ``issuance.issue`` (the same ``Authenticator``, identity encoding,
blocks), with rate-limit counters of each endpoint's own (``purpose`` in the key), so a burst
of edge reports can never use up an identity's token budget, nor the reverse. It raises
``ApiError`` for every refusal and records the identity fingerprint on the request's facts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request

from tokensvc.auth import bearer
from tokensvc.clients import RateLimit
from tokensvc.clientset import Client
from tokensvc.errors import Forbidden, NotReady, RateLimited, UnknownClient
from tokensvc.identity import to_twilio_identity
from tokensvc.observability import facts_of
from tokensvc.service import Service
from tokensvc.token_endpoint import RequestHeaders, read_body


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request's headers (under this deployment's proxy rules), body and client address."""

    headers: dict[str, str]
    body: bytes
    client_ip: str
    country: str | None  # from the trusted load-balancer header only, never the caller


def _limit(service: Service, key: str, rate: RateLimit | None, scope: str, detail: str) -> None:
    if rate is None:
        return
    decision = service.shared.check(key, rate.limit, rate.window)
    if not decision.allowed:
        raise RateLimited(detail, retry_after=decision.retry_after, scope=scope)


def resolve(request: Request) -> tuple[Service, Client]:
    """The service and the path's client (404 unknown_client), named on the request's facts."""
    service: Service = request.app.state.service
    client_id = request.path_params["client"]
    client = service.clients.get(client_id)
    if client is None:
        raise UnknownClient(f"no client {client_id[:64]!r}")
    facts_of(request.scope).client = client.id
    return service, client


async def receive(request: Request, service: Service, client: Client, max_body: int) -> Incoming:
    """Read the body (413/408) and require an Authorization header (401) before anything
    else is looked at, as the token endpoint does."""
    if not service.serving:
        raise NotReady("service is starting or shutting down")
    settings = service.settings
    parser = RequestHeaders(settings)
    headers = parser.parse(request.scope["headers"])
    body = await read_body(request.receive, headers, max_body, settings.body_timeout)
    if client.config.auth.type != "none":
        bearer(headers.get("authorization"))
    peer = request.scope.get("client")
    client_ip = parser.client_ip(headers, peer[0] if peer else None)
    return Incoming(headers, body, client_ip, parser.country(headers, None))


async def authenticate(
    request: Request,
    service: Service,
    client: Client,
    incoming: Incoming,
    purpose: str,
    per_identity: RateLimit | None,
    per_ip: RateLimit | None,
    body_identity: str | None = None,
) -> str:
    """The caller's Twilio identity; ``purpose`` names this endpoint's rate-limit counters."""
    cfg = client.config
    _limit(
        service,
        f"{cfg.client_id}:{purpose}:ip:{incoming.client_ip}",
        per_ip,
        "ip",
        "too many requests from this address",
    )
    if not client.auth.ready:
        raise NotReady("this client's identity-provider keys are unavailable here")
    raw = await client.auth.verify(incoming.headers.get("authorization"), body_identity)
    identity = to_twilio_identity(raw, cfg.auth.identity_encoding, cfg.auth.identity_prefix)
    if (
        cfg.auth.type == "jwt"
        and body_identity is not None
        and body_identity not in (raw, identity)
    ):
        raise Forbidden("the body's identity is not the one the caller's token proves")
    facts_of(request.scope).identity_fp = service.fingerprint(cfg.client_id, identity)
    if cfg.blocks(raw, identity) or service.shared.snapshot.is_blocked(
        cfg.client_id, identity, time.time()
    ):
        raise Forbidden("this identity is blocked")
    _limit(
        service,
        f"{cfg.client_id}:{purpose}:id:{identity}",
        per_identity,
        "identity",
        "too many requests for this identity",
    )
    return identity
