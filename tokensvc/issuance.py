"""The token use case, independent of HTTP: ``issue(service, client, request, facts)``.

    per-IP limit -> client keys usable? -> verify caller -> Twilio identity -> the body's
    identity, if any, is that one (jwt clients) -> blocked? ->
    per-identity limit -> edges for the caller's country, minus drains (feed drains demoted
    past the floor) -> mint -> Issued

It raises ``ApiError`` for every refusal and records what the access log and the request
metrics need (identity fingerprint, first edge, country, local rate checks) on ``facts``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from tokensvc.clientset import Client
from tokensvc.errors import Forbidden, NotReady, RateLimited
from tokensvc.identity import to_twilio_identity
from tokensvc.observability import RequestFacts
from tokensvc.service import Service


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A token request as the use case sees it: no HTTP left."""

    credential: str | None  # the Authorization header as sent
    platform: str
    apns_environment: str | None
    identity: str | None  # from the body (api_key and none clients)
    country: str | None  # trusted header, else the caller's hint; an ISO code or None
    client_ip: str  # per TOKENSVC_CLIENT_IP_HEADER / TOKENSVC_TRUSTED_HOPS, else the peer


@dataclass(frozen=True, slots=True)
class Issued:
    """A minted token and what the caller needs with it (the 200 body)."""

    token: str
    identity: str
    ttl: int
    expires_at: str
    refresh_in: int
    edges: list[str]
    region: str
    home_region: str
    edge: str | None = None  # ios/android: the one edge a mobile SDK takes (edges[0])

    def document(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "token": self.token,
            "identity": self.identity,
            "ttl": self.ttl,
            "expires_at": self.expires_at,
            "refresh_in": self.refresh_in,
            "edges": self.edges,
            "region": self.region,
            "home_region": self.home_region,
        }
        if self.edge is not None:
            doc["edge"] = self.edge
        return doc


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


async def issue(
    service: Service, client: Client, request: TokenRequest, facts: RequestFacts
) -> Issued:
    """Everything between a parsed request and the token; raises ApiError."""
    cfg = client.config
    shared = service.shared
    if cfg.rate_per_ip is not None:
        decision = shared.check(
            f"{cfg.client_id}:ip:{request.client_ip}", cfg.rate_per_ip.limit, cfg.rate_per_ip.window
        )
        if not decision.shared:
            facts.local_rate_checks += 1
        if not decision.allowed:
            raise RateLimited(
                "too many requests from this address", retry_after=decision.retry_after, scope="ip"
            )
    if not client.auth.ready:
        # No usable identity-provider keys (never fetched, or past max_stale): a 503 sends the
        # caller to another region, where a 401 would be taken as final.
        raise NotReady("this client's identity-provider keys are unavailable here")
    raw_identity = await client.auth.verify(request.credential, request.identity)
    identity = to_twilio_identity(
        raw_identity, cfg.auth.identity_encoding, cfg.auth.identity_prefix
    )
    if (
        cfg.auth.type == "jwt"
        and request.identity is not None
        and (request.identity not in (raw_identity, identity))
    ):
        # A jwt client's identity is the token's; the body may only repeat it.
        raise Forbidden("the body's identity is not the one the caller's token proves")
    facts.identity_fp = service.fingerprint(cfg.client_id, identity)
    now = time.time()
    if cfg.blocks(raw_identity, identity) or shared.snapshot.is_blocked(
        cfg.client_id, identity, now
    ):
        raise Forbidden("this identity is blocked")
    if cfg.rate_per_identity is not None:
        decision = shared.check(
            f"{cfg.client_id}:id:{identity}",
            cfg.rate_per_identity.limit,
            cfg.rate_per_identity.window,
        )
        if not decision.shared:
            facts.local_rate_checks += 1
        if not decision.allowed:
            raise RateLimited(
                "too many token requests for this identity",
                retry_after=decision.retry_after,
                scope="identity",
            )

    configured = cfg.edges.for_country(request.country)
    ordered = service.adaptive.order(cfg, request.country, configured)
    edges = service.edges_for(ordered, now)
    minted = client.minter.mint(identity, request.platform, request.apns_environment)
    facts.country = request.country
    facts.edge = edges[0]
    facts.home_region = cfg.twilio.home_region
    ttl = minted.expires_at - int(now)
    return Issued(
        token=minted.token,
        identity=identity,
        ttl=ttl,
        expires_at=rfc3339(minted.expires_at),
        refresh_in=refresh_in(ttl),
        edges=edges,
        region=service.settings.region,
        home_region=cfg.twilio.home_region,
        edge=None if request.platform == "browser" else edges[0],
    )
