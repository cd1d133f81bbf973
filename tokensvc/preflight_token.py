"""``POST /v1/clients/{client}/preflight-token``: a short-lived token for a preflight test.

    receive (413/408/401) -> body {identity?, country?} (415/400)
    -> caller.authenticate (429 per IP, 503, 401, 403, 429 per identity: counters of its own)
    -> no preflight app? (404 no_preflight_app)
    -> mint for preflight.outgoing_application_sid -> 200 {token, ..., edges}

``Device.runPreflight(token, {edge})`` (and the mobile PreflightTest) places a real call to
the token's outgoing TwiML app, which must record and play back (an echo app). The token has
no incoming grant and no push credential, lives ``preflight.ttl_seconds`` (default 300), and
comes with the client's *configured* edge list for the caller's country (neither drains nor
the adaptive order applied: a preflight measures every candidate), so an app can run one
preflight per edge and report each (``POST .../edge-report``).
"""

from __future__ import annotations

import dataclasses
import time

from starlette.requests import Request

from tokensvc.caller import authenticate, receive, resolve
from tokensvc.clients import PushCredentials
from tokensvc.errors import InvalidRequest, NoPreflightApp
from tokensvc.issuance import rfc3339
from tokensvc.minting import Minter
from tokensvc.render import Answer, json_answer
from tokensvc.token_endpoint import NO_STORE, cors_headers, country_hint, parse_body

PURPOSE = "pf"  # the rate-limit counters' infix


async def preflight_token(request: Request) -> Answer:
    service, client = resolve(request)
    incoming = await receive(request, service, client, service.settings.max_body_bytes)
    data = parse_body(incoming.body, incoming.headers.get("content-type"))
    if set(data) - {"identity", "country"}:
        raise InvalidRequest("only identity and country may be sent")
    identity = data.get("identity")
    if identity is not None and (not isinstance(identity, str) or not identity):
        raise InvalidRequest("identity must be a non-empty string")
    hint = country_hint(data.get("country"))
    cfg = client.config
    limit = cfg.preflight.rate_per_identity if cfg.preflight else None
    twilio_identity = await authenticate(
        request, service, client, incoming, PURPOSE, limit, cfg.rate_per_ip, identity
    )
    if cfg.preflight is None:  # after authentication: strangers learn nothing of the config
        raise NoPreflightApp(f"client {cfg.client_id!r} has no preflight app configured")
    minter = Minter(
        dataclasses.replace(
            cfg.twilio,
            outgoing_application_sid=cfg.preflight.outgoing_application_sid,
            incoming_allow=False,
            push=PushCredentials(),
        ),
        cfg.preflight.ttl_seconds,
        client.minter.keys,
    )
    minted = minter.mint(twilio_identity)
    country = incoming.country or hint
    return json_answer(
        {
            "token": minted.token,
            "identity": twilio_identity,
            "ttl": minted.expires_at - int(time.time()),
            "expires_at": rfc3339(minted.expires_at),
            "edges": list(cfg.edges.for_country(country)),
            "country": country,
            "region": service.settings.region,
            "home_region": cfg.twilio.home_region,
        },
        headers={**NO_STORE, **cors_headers(client, incoming.headers)},
    )
