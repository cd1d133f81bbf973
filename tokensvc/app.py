"""``create_app(settings)`` -> the ASGI application: routes, middleware, errors, lifespan.

Two listeners share one application: the public port (token, edges, probes) and, when
``TOKENSVC_ADMIN_PORT`` is set, the admin port (metrics and probes only). The port a request
arrived on decides which routes it may reach, so ``/metrics`` is never exposed through the
public ingress.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokensvc import routes
from tokensvc.clientset import ClientSet
from tokensvc.errors import (
    PROBLEM_MEDIA_TYPE,
    ApiError,
    HeadersTooLarge,
    InternalError,
    MethodNotAllowed,
    NotFound,
)
from tokensvc.observability import AccessLog, Fingerprinter
from tokensvc.observability import metrics as process_metrics
from tokensvc.openapi import OPENAPI
from tokensvc.service import Service
from tokensvc.settings import Settings
from tokensvc.store.factory import shared_state_from_settings
from tokensvc.store.shared import SharedState
from tokensvc.token_endpoint import TokenEndpoint
from tokensvc.verification import VerificationRunner

log = logging.getLogger("tokensvc.request")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ADMIN_PATHS = frozenset({"/metrics", "/livez", "/readyz"})


def problem(error: ApiError, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem document."""
    return JSONResponse(error.document(), status_code=error.status, media_type=PROBLEM_MEDIA_TYPE,
                        headers={**error.headers, "Cache-Control": "no-store", **(headers or {})})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    request.scope.setdefault("tokensvc", {})["code"] = exc.code
    return problem(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101
    error: ApiError = (MethodNotAllowed() if exc.status_code == 405 else NotFound())
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and _token_client(request.url.path) is not None:
        headers["Allow"] = "POST, OPTIONS"  # POST is served outside the router
    error.headers.update(headers)
    return await _api_error(request, error)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    request.scope.setdefault("tokensvc", {})["code"] = "internal"
    return problem(InternalError("an unexpected error occurred"))


class RequestContext:
    """Pure ASGI middleware: request id, admin-port gating, timing, one log line, metrics."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self.admin_port = service.settings.admin_port
        self.max_header_bytes = service.settings.max_header_bytes
        self.token = TokenEndpoint(service)
        # Request ids: a random per-process prefix and a counter. Unique, cheap (no
        # os.urandom per request); they identify, they do not authorize.
        self._id_prefix = secrets.token_hex(4)
        self._id_counter = itertools.count(1)
        self.access_log = AccessLog(log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else (
            self._next_request_id())
        ctx: dict[str, Any] = {}
        scope["tokensvc"] = ctx
        status = 500
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        path: str = scope["path"]
        server = scope.get("server")
        on_admin = self.admin_port is not None and server is not None and (
            server[1] == self.admin_port)
        try:
            if sum(len(k) + len(v) for k, v in scope["headers"]) > self.max_header_bytes:
                error: ApiError = HeadersTooLarge(
                    f"headers exceed {self.max_header_bytes} bytes")
                ctx["code"] = error.code
                await problem(error, {"Connection": "close"})(scope, receive, send_wrapper)
            elif on_admin and path not in ADMIN_PATHS:
                error = NotFound("admin port: metrics and probes only")
                await problem(error)(scope, receive, send_wrapper)
            elif path == "/metrics" and not on_admin:
                error = NotFound("metrics are served on the admin port")
                await problem(error)(scope, receive, send_wrapper)
            elif (client_id := _token_client(path)) is not None and scope["method"] == "POST":
                await self.token(scope, receive, send_wrapper, client_id, ctx)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            if path not in ADMIN_PATHS:
                self._record(scope, ctx, path, status, request_id, start)

    def _next_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):08x}"

    def _record(self, scope: Scope, ctx: dict[str, Any], path: str, status: int,
                request_id: str, start: float) -> None:
        elapsed = time.perf_counter() - start
        service = self.service
        client = ctx.get("client", "unknown")
        route = "token" if path.endswith("/token") else (
            "edges" if path.endswith("/edges") else "other")
        m = service.metrics
        m.child(m.latency, route).observe(elapsed)
        if route == "token" and scope["method"] == "POST":
            outcome = "ok" if status == 200 else ctx.get("code", "error")
            m.child(m.requests, client, outcome, str(status)).inc()
        self.access_log.write({
            "request_id": request_id, "method": scope["method"], "path": path[:200],
            "client": client, "status": status, "code": ctx.get("code"),
            "reason": ctx.get("reason"), "latency_ms": round(elapsed * 1000, 3),
            "region": service.settings.region, "identity_fp": ctx.get("identity_fp"),
            "edge": ctx.get("edge"),
        })


def _token_client(path: str) -> str | None:
    """The client id of a /v1/clients/{client}/token path, else None."""
    if path.startswith("/v1/clients/") and path.endswith("/token"):
        client_id = path[12:-6]
        if client_id and "/" not in client_id:
            return client_id
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _housekeeping(service: Service) -> None:
    """Flush the access log twice a second; refresh state gauges every 5 s in every worker
    (a scrape reaches one worker, and multiprocess gauges are read from all of them)."""
    tick = 0
    while True:
        await asyncio.sleep(0.5)
        AccessLog.flush()
        if tick % 10 == 0:
            service.observe_state()
        tick += 1


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


def create_app(settings: Settings, shared: SharedState | None = None) -> Starlette:
    """Build the application. Clients are loaded in the lifespan: an invalid config directory
    raises ConfigError there (``tokensvc serve`` validates before binding, too)."""
    state = shared if shared is not None else shared_state_from_settings(settings)
    metrics = process_metrics()
    clientset = ClientSet(settings, state)
    key = settings.fingerprint_key.reveal().encode() if settings.fingerprint_key else None
    service = Service(settings=settings, clients=clientset, shared=state, metrics=metrics,
                      fingerprint=Fingerprinter(key))
    verification = None if settings.twilio_verify == "off" else VerificationRunner.build(
        settings, lambda: {cid: c.config for cid, c in clientset.clients.items()})
    if verification is not None:
        clientset.key_chooser = verification.health

    def on_reload(result: str) -> None:
        metrics.reloads.labels(result).inc()
        if verification is not None:
            verification.reloaded(result)

    clientset.on_reload = on_reload
    clientset.on_jwks_refresh = lambda result: metrics.jwks_refreshes.labels(result).inc()
    if state.backend != "memory":
        state.on_operation = lambda op, seconds, outcome: metrics.child(
            metrics.redis_latency, op).observe(seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics.set_build(settings.region)
        await state.start()
        await clientset.load()
        metrics.reloads.labels("ok").inc()
        await clientset.start_watching()
        if verification is not None:
            verification.start()  # in the background: readiness never waits for Twilio
        flusher = asyncio.create_task(_housekeeping(service), name="housekeeping")
        log.info("ready", extra={"clients": sorted(clientset.clients),
                                 "region": settings.region, "backend": state.backend})
        try:
            yield
        finally:
            service.draining = True
            flusher.cancel()
            await clientset.stop()
            if verification is not None:
                await verification.stop()
            await state.stop()
            AccessLog.flush()

    app = Starlette(
        routes=[
            Route("/v1/clients/{client}/token", routes.preflight, methods=["OPTIONS"]),
            Route("/v1/clients/{client}/edges", routes.edges, methods=["GET"]),
            Route("/v1/clients/{client}/edges", routes.preflight, methods=["OPTIONS"]),
            Route("/livez", routes.livez, methods=["GET"]),
            Route("/readyz", routes.readyz, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error,
                            Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.verification = verification
    app.add_middleware(RequestContext, service=service)
    return app
