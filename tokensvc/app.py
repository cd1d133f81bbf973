"""``create_app(settings)`` -> the ASGI application: routes, middleware, errors, lifespan.

Two listeners share one application: the public port (token, edges, probes) and, when
``TOKENSVC_ADMIN_PORT`` is set, the admin port (metrics and probes only). The port a request
arrived on decides which routes it may reach, so ``/metrics`` is never exposed through the
public ingress.

One request, one way: ``RequestContext`` (request id, gating, one ``RequestFacts``) sends the
token POST to ``TokenEndpoint`` (matched by ``paths.TOKEN_PATH``, past the router: the hot
path) and everything else to the Starlette router (``routes``). Every ``ApiError`` and every
unexpected exception, from any route, comes back up to ``RequestContext``, which renders it
with ``render.problem`` and hands the facts to ``Telemetry.request`` once.

Routing is on the raw path (``/v1/clients/a%2Ftoken`` is not a token path), a trailing slash
is a 404 (no redirect to the Host header), and HTTP/2 on the cleartext port (prior knowledge
or an h2c upgrade) is refused with 505 unless ``TOKENSVC_ALLOW_HTTP2`` is on.
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

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokensvc import routes
from tokensvc.clientset import ClientSet
from tokensvc.errors import (
    ApiError,
    ClientGone,
    HeadersTooLarge,
    HttpVersionNotSupported,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from tokensvc.observability import FACTS_KEY, AccessLog, Fingerprinter, RequestFacts, Telemetry
from tokensvc.observability import metrics as process_metrics
from tokensvc.paths import (
    EDGE_REPORT_PATH,
    EDGES_PATH,
    PREFLIGHT_TOKEN_PATH,
    TOKEN_PATH,
    classify,
    token_client,
)
from tokensvc.preflight_token import preflight_token
from tokensvc.render import problem
from tokensvc.reports import edge_report
from tokensvc.service import Service
from tokensvc.settings import Settings
from tokensvc.statusfeed import webhook as feed_webhook
from tokensvc.statusfeed.pod import PodFeed, feed_from_settings
from tokensvc.store.factory import shared_state_from_settings
from tokensvc.store.shared import SharedState
from tokensvc.token_endpoint import TokenEndpoint
from tokensvc.verification import VerificationRunner, metric_rows

log = logging.getLogger("tokensvc.request")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ADMIN_PATHS = frozenset({"/metrics", "/livez", "/readyz"})
ALLOW_POST = "POST, OPTIONS"  # Allow on the token path; its POST bypasses the router


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's 404/405 become ApiErrors, rendered by RequestContext like any other."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    if exc.status_code != 405:
        raise NotFound()
    headers = dict(exc.headers or {})
    if token_client(request.scope["path"]) is not None:
        headers["Allow"] = ALLOW_POST
    raise MethodNotAllowed(headers=headers)


class RequestContext:
    """Pure ASGI middleware: request id, gating, error rendering, one log line, metrics."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self.telemetry = service.telemetry
        self.admin_port = service.settings.admin_port
        self.max_header_bytes = service.settings.max_header_bytes
        self.allow_http2 = service.settings.allow_http2
        self.token = TokenEndpoint(service)
        # Request ids: a random per-process prefix and a counter. Unique, cheap (no
        # os.urandom per request); they identify, they do not authorize.
        self._id_prefix = secrets.token_hex(4)
        self._id_counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        size = 0
        incoming: bytes | None = None
        h2c = False
        for key, value in scope["headers"]:
            size += len(key) + len(value)
            if key == b"x-request-id":
                incoming = incoming or value
            elif key == b"upgrade" and value.strip().lower() == b"h2c":
                h2c = True
        text_id = incoming.decode("latin-1") if incoming else None
        request_id = (
            text_id if text_id and _REQUEST_ID.fullmatch(text_id) else (self._next_request_id())
        )
        path: str = scope["path"]
        raw: bytes | None = scope.get("raw_path")
        if raw is not None and b"%" in raw:
            scope["path"] = raw.decode("latin-1")  # route on what was sent, not its decoding
        route_path: str = scope["path"]
        route, client_id = classify(route_path)
        webhook = feed_webhook.is_webhook_path(route_path)
        if webhook:
            path = feed_webhook.masked(path)  # the secret is in the path: never log it
        facts = RequestFacts(request_id, scope["method"], path, route)
        scope[FACTS_KEY] = facts
        status = 500
        started = False
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        server = scope.get("server")
        on_admin = (
            self.admin_port is not None and server is not None and (server[1] == self.admin_port)
        )
        try:
            if size > self.max_header_bytes:
                raise HeadersTooLarge(
                    f"headers exceed {self.max_header_bytes} bytes", headers={"Connection": "close"}
                )
            if (
                not self.allow_http2
                and (h2c or scope.get("http_version") == "2")
                and (scope.get("scheme") == "http")
            ):
                raise HttpVersionNotSupported(
                    "HTTP/2 is not served on this port; use HTTP/1.1",
                    headers={"Connection": "close"},
                )
            if webhook and not on_admin:
                raise NotFound()
            if on_admin and route_path not in ADMIN_PATHS and not webhook:
                raise NotFound("admin port: metrics and probes only")
            if route_path == "/metrics" and not on_admin:
                raise NotFound("metrics are served on the admin port")
            if client_id is not None and scope["method"] == "POST":
                await self.token(scope, receive, send_wrapper, client_id, facts)
            else:
                await self.app(scope, receive, send_wrapper)
        except ApiError as exc:
            if not started:
                await self._refuse(exc, facts, scope, receive, send_wrapper)
        except ClientGone:
            facts.code = "client_gone"
        except Exception:
            log.exception("unhandled error")
            if not started:
                await self._refuse(
                    InternalError("an unexpected error occurred"),
                    facts,
                    scope,
                    receive,
                    send_wrapper,
                )
        finally:
            if path not in ADMIN_PATHS:
                facts.status = status
                self.telemetry.request(facts, time.perf_counter() - start)

    @staticmethod
    async def _refuse(
        error: ApiError, facts: RequestFacts, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The one place an error becomes an answer (and its facts), for every route."""
        facts.code = error.code
        if isinstance(error, Unauthenticated):
            facts.reason = error.reason
        elif isinstance(error, RateLimited):
            facts.limited = error.scope
        await problem(error, facts.response_headers)(scope, receive, send)

    def _next_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):08x}"


async def _housekeeping(service: Service) -> None:
    """Flush the access log and publish this worker's metric counts twice a second; refresh
    state gauges every 5 s in every worker (a scrape reaches one worker, and multiprocess
    gauges are read from all of them)."""
    tick = 0
    while True:
        await asyncio.sleep(0.5)
        AccessLog.flush()
        service.telemetry.publish()
        if tick % 10 == 0:
            service.observe_state()
        tick += 1


def create_app(settings: Settings, shared: SharedState | None = None) -> Starlette:
    """Build the application. Clients are loaded in the lifespan: an invalid config directory
    raises ConfigError there (``tokensvc serve`` validates before binding, too)."""
    state = shared if shared is not None else shared_state_from_settings(settings)
    telemetry = Telemetry(
        process_metrics(), AccessLog(log), settings.region, redis=state.backend != "memory"
    )
    clientset = ClientSet(settings, state)
    key = settings.fingerprint_key.reveal().encode() if settings.fingerprint_key else None
    service = Service(
        settings=settings,
        clients=clientset,
        shared=state,
        telemetry=telemetry,
        fingerprint=Fingerprinter(key),
    )
    verification = (
        None
        if settings.twilio_verify == "off"
        else VerificationRunner.build(
            settings, lambda: {cid: c.config for cid, c in clientset.clients.items()}
        )
    )
    if verification is not None:
        clientset.key_chooser = service.key_health = verification.health
        verification.on_round = lambda reports: telemetry.twilio_round(*metric_rows(reports))

    def on_reload(result: str) -> None:
        telemetry.config_reload(result)
        if verification is not None:
            verification.reloaded(result)

    clientset.on_reload = on_reload
    clientset.on_jwks_refresh = telemetry.jwks_refresh
    if state.backend != "memory":
        state.on_operation = telemetry.store_operation
    feed: PodFeed | None = feed_from_settings(service)  # None unless configured

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        telemetry.build()
        await state.start()
        await clientset.load()
        telemetry.config_reload("ok")
        await clientset.start_watching()
        if verification is not None:
            verification.start()  # in the background: readiness never waits for Twilio
        if feed is not None:
            feed.start()
        flusher = asyncio.create_task(_housekeeping(service), name="housekeeping")
        service.adaptive.start()
        log.info(
            "ready",
            extra={
                "clients": sorted(clientset.clients),
                "region": settings.region,
                "backend": state.backend,
            },
        )
        try:
            yield
        finally:
            service.draining = True
            flusher.cancel()
            await service.adaptive.stop()
            if feed is not None:
                await feed.stop()  # bounded: a stuck poll is cancelled
            await clientset.stop()
            if verification is not None:
                await verification.stop()
            await state.stop()
            telemetry.publish()
            AccessLog.flush()

    app = Starlette(
        routes=[
            Route(TOKEN_PATH, routes.preflight, methods=["OPTIONS"]),
            Route(EDGES_PATH, routes.edges, methods=["GET"]),
            Route(EDGES_PATH, routes.preflight, methods=["OPTIONS"]),
            Route(PREFLIGHT_TOKEN_PATH, preflight_token, methods=["POST"]),
            Route(PREFLIGHT_TOKEN_PATH, routes.preflight, methods=["OPTIONS"]),
            Route(EDGE_REPORT_PATH, edge_report, methods=["POST"]),
            Route(EDGE_REPORT_PATH, routes.preflight, methods=["OPTIONS"]),
            Route("/livez", routes.livez, methods=["GET"]),
            Route("/readyz", routes.readyz, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/openapi.json", routes.openapi, methods=["GET"]),
            Route(feed_webhook.WEBHOOK_PATH, feed_webhook.webhook, methods=["POST"]),
            Route(feed_webhook.WEBHOOK_PREFIX + "{secret}", feed_webhook.webhook, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a redirect would point at the caller's Host header
    app.state.service = service
    app.state.verification = verification
    app.state.status_feed = feed
    app.add_middleware(RequestContext, service=service)
    return app
