"""HTTP endpoints other than the token POST (see token_endpoint): thin Starlette handlers."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokensvc.clientset import Client
from tokensvc.edges import without_drained
from tokensvc.errors import Forbidden, UnknownClient
from tokensvc.issuance import cors_headers, country
from tokensvc.service import Service

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


async def edges(request: Request) -> Response:
    service = _service(request)
    client = _client(request, service)
    where = country(service, request.headers, request.query_params.get("country"))
    listed = without_drained(client.config.edges.for_country(where),
                             service.shared.snapshot.drained(time.time()))
    vary = "Origin" + (f", {service.settings.country_header}" if service.settings.country_header
                       else "")
    headers = {**cors_headers(client, request.headers),
               "Cache-Control": f"public, max-age={EDGES_CACHE_SECONDS}", "Vary": vary}
    return JSONResponse({"edges": listed, "country": where, "region": service.settings.region},
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
