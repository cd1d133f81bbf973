"""HTTP endpoints other than the token POST (see token_endpoint): thin Starlette handlers.

Each parses what it needs, calls the service and returns a ``render`` answer; refusals are
raised as ``ApiError`` and rendered by the request context, like every other route's.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from tokensvc.clientset import Client
from tokensvc.errors import Forbidden, InvalidRequest, UnknownClient
from tokensvc.observability import facts_of
from tokensvc.openapi import OPENAPI
from tokensvc.paths import EDGES_PATH
from tokensvc.render import Answer, body, empty, json_answer
from tokensvc.service import Service
from tokensvc.token_endpoint import RequestHeaders, cors_headers, country_hint

EDGES_CACHE_SECONDS = 10
PREFLIGHT_MAX_AGE = 600
NO_STORE = {"Cache-Control": "no-store"}
_EDGES_SUFFIX = EDGES_PATH.rsplit("}", 1)[1]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _client(request: Request, service: Service) -> Client:
    client_id = request.path_params["client"]
    client = service.clients.get(client_id)
    if client is None:
        raise UnknownClient(f"no client {client_id[:64]!r}")
    facts_of(request.scope).client = client.id
    return client


async def edges(request: Request) -> Answer:
    service = _service(request)
    client = _client(request, service)
    parser = RequestHeaders(service.settings)
    headers = parser.parse(request.scope["headers"])
    where = parser.country(headers, country_hint(request.query_params.get("country")))
    cfg = client.config
    configured = cfg.edges.for_country(where)
    listed = service.edges_for(service.adaptive.order(cfg, where, configured), time.time())
    vary = "Origin" + (
        f", {service.settings.country_header}" if service.settings.country_header else ""
    )
    document: dict[str, object] = {
        "edges": listed,
        "country": where,
        "region": service.settings.region,
    }
    explain = request.query_params.get("explain")
    if explain not in (None, "true", "false"):
        raise InvalidRequest("explain must be true or false")
    if explain == "true":
        document["explain"] = service.adaptive.explain(cfg, where, configured)
    return json_answer(
        document,
        headers={
            **cors_headers(client, headers),
            "Cache-Control": f"public, max-age={EDGES_CACHE_SECONDS}",
            "Vary": vary,
        },
    )


async def preflight(request: Request) -> Answer:
    service = _service(request)
    client = _client(request, service)
    origin = request.headers.get("origin", "")
    if origin not in client.config.allow_origins:
        raise Forbidden("origin not allowed for this client")
    method = request.headers.get("access-control-request-method", "")
    allowed = "GET" if request.url.path.endswith(_EDGES_SUFFIX) else "POST"
    if method.upper() != allowed:
        raise Forbidden(f"only {allowed} is allowed")
    return empty(
        204,
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": f"{allowed}, OPTIONS",
            "Access-Control-Allow-Headers": "authorization, content-type, x-request-id",
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            "Vary": "Origin",
        },
    )


async def livez(request: Request) -> Answer:
    return json_answer({"status": "ok"}, headers=NO_STORE)


async def readyz(request: Request) -> Answer:
    service = _service(request)
    checks = service.readiness()
    status = 200 if service.ready else 503
    return json_answer(
        {
            "status": "ok" if status == 200 else "not_ready",
            "checks": checks,
            "region": service.settings.region,
        },
        status,
        NO_STORE,
    )


async def metrics(request: Request) -> Answer:
    service = _service(request)
    service.observe_state()
    content, content_type = service.telemetry.render()
    return body(content, content_type.encode())


async def openapi(request: Request) -> Answer:
    return json_answer(OPENAPI)
