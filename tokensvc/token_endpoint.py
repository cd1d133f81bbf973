"""The HTTP adapter of the token path: ``POST /v1/clients/{client}/token`` as pure ASGI.

    scope + body --parse--> TokenRequest --issuance.issue--> Issued --render--> 200
                  (any ApiError propagates to the request context, which renders it)

Every client calls this at start-up and on every refresh, and after a regional failover all of
another region's clients call it at once, so it skips Starlette's request/response objects
and exception middleware (measured in bench/RESULTS.md). It reads the body itself, under a
size cap and a total deadline (a drip-fed body gets 408). Messages the server has already
queued (Hypercorn's ``receive`` is an ``asyncio.Queue``'s ``get``; the usual small POST is
all there when the endpoint starts) are taken without arming a timer; only a wait for one
that has not arrived runs under the deadline, which counts from the start of the read.

Order of checks (documented in the OpenAPI description): not serving (503), unknown client
(404), reading the body (413, 408), a missing or malformed ``Authorization`` header (401),
the body (415, 400), then in ``issue`` the per-IP limit (429), the client's keys (503), the
credential's verification (401), the identity (403, 429). So a caller without a credential
always learns that first, whatever its body; verification comes after the body because an
``api_key`` client's caller names its identity there, and a malformed request is refused
before any signature is checked.

Headers: the first line of a repeated header wins, except the two a proxy writes. The
client-IP header's lines are one comma-joined list (RFC 9110 §5.3; HAProxy adds its own line
after the caller's), and of the country header the last line is the proxy's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from tokensvc.auth import bearer
from tokensvc.clientset import Client
from tokensvc.edges import is_country, normalize_country
from tokensvc.errors import (
    ClientGone,
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    RequestTimeout,
    UnknownClient,
    UnsupportedMediaType,
)
from tokensvc.issuance import TokenRequest, issue
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS
from tokensvc.observability import RequestFacts
from tokensvc.render import send_json
from tokensvc.service import Service
from tokensvc.settings import Settings

BODY_FIELDS = frozenset({"platform", "apns_environment", "country", "identity"})
MAX_BODY_IDENTITY = 1024
EXPOSED = "X-Request-Id, Retry-After"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_NO_STORE_RAW = tuple((k.lower().encode(), v.encode()) for k, v in NO_STORE.items())


class RequestHeaders:
    """Header lines -> ``{lower-case name: value}`` under this deployment's proxy rules."""

    def __init__(self, settings: Settings) -> None:
        self.ip_header = settings.client_ip_header.lower() if settings.client_ip_header else None
        self.country_header = settings.country_header.lower() if settings.country_header else None
        self.trusted_hops = settings.trusted_hops

    def parse(self, raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            if key not in headers:
                headers[key] = value.decode("latin-1")
            elif key == self.ip_header:
                headers[key] += "," + value.decode("latin-1")
            elif key == self.country_header:
                headers[key] = value.decode("latin-1")
        return headers

    def client_ip(self, headers: Mapping[str, str], peer: str | None) -> str:
        if self.ip_header:
            value = headers.get(self.ip_header)
            if value:
                hops = [h.strip() for h in value.split(",") if h.strip()]
                # Fewer entries than trusted proxies: the header did not come through them,
                # and its leftmost entry is whatever the client wrote. Use the TCP peer.
                if len(hops) >= self.trusted_hops:
                    return hops[-self.trusted_hops][:64]
        return peer or "unknown"

    def country(self, headers: Mapping[str, str], hint: str | None) -> str | None:
        """The trusted load-balancer header first, then the caller's (validated) hint."""
        if self.country_header:
            trusted = normalize_country(headers.get(self.country_header))
            if trusted:
                return trusted
        return hint


def country_hint(value: object) -> str | None:
    """A caller-supplied country: an ISO 3166-1 alpha-2 code (any case) or a 400."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 2 and is_country(value.upper()):
        return value.upper()
    raise InvalidRequest("country must be an ISO 3166-1 alpha-2 code")


def cors_headers(client: Client, headers: Mapping[str, str]) -> dict[str, str]:
    origin = headers.get("origin")
    if origin and origin in client.config.allow_origins:
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": EXPOSED,
        }
    return {}


async def read_body(
    receive: Receive, headers: Mapping[str, str], limit: int, deadline: float
) -> bytes:
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(length) > 12:
            raise InvalidRequest("invalid Content-Length")
        if int(length) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
    queued = _queued(receive)
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    body = b""
    while True:
        message = None
        if queued is not None:
            try:  # noqa: SIM105  (hot path: a bare try is cheaper than contextlib.suppress)
                message = queued()
            except asyncio.QueueEmpty:
                pass
        if message is None:
            try:
                async with asyncio.timeout_at(until):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"body not received within {deadline:g} s", headers={"Connection": "close"}
                ) from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        if not message.get("more_body", False):
            return body


def _queued(receive: Receive) -> Callable[[], Message] | None:
    """``get_nowait`` of the queue behind ``receive``, when it is an ``asyncio.Queue.get``."""
    if getattr(receive, "__func__", None) is asyncio.Queue.get:
        queue = receive.__self__  # type: ignore[attr-defined]
        if isinstance(queue, asyncio.Queue):
            get_nowait: Callable[[], Message] = queue.get_nowait
            return get_nowait
    return None


def json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A non-empty body as a JSON object: 415 for another media type, 400 for anything else
    that is not one object (the rule every POST of the API shares)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The JSON body as a dict of known fields (empty body: no fields)."""
    if not body.strip():
        return {}
    data = json_object(body, content_type)
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


class TokenEndpoint:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.headers = RequestHeaders(service.settings)

    def parse(
        self, client: Client, headers: Mapping[str, str], body: bytes, peer: str | None
    ) -> TokenRequest:
        """The typed request, or the ApiError that says what is wrong with it."""
        data = parse_body(body, headers.get("content-type"))
        platform = _choice(data, "platform", PLATFORMS) or "browser"
        apns = _choice(data, "apns_environment", APNS_ENVIRONMENTS)
        identity = data.get("identity")
        if identity is not None and (
            not isinstance(identity, str) or not 0 < len(identity) <= MAX_BODY_IDENTITY
        ):
            raise InvalidRequest("identity must be a non-empty string")
        hint = data.get("country")
        if hint is not None:
            hint = country_hint(hint)
        return TokenRequest(
            credential=headers.get("authorization"),
            platform=platform,
            apns_environment=apns,
            identity=identity,
            country=self.headers.country(headers, hint),
            client_ip=self.headers.client_ip(headers, peer),
        )

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, client_id: str, facts: RequestFacts
    ) -> None:
        service = self.service
        if not service.serving:
            raise NotReady("service is starting or shutting down")
        client = service.clients.get(client_id)
        if client is None:
            raise UnknownClient(f"no client {client_id[:64]!r}")
        facts.client = client.id
        headers = self.headers.parse(scope["headers"])
        cors = cors_headers(client, headers)
        if cors:
            facts.response_headers = cors
        settings = service.settings
        body = await read_body(receive, headers, settings.max_body_bytes, settings.body_timeout)
        if client.config.auth.type != "none":
            bearer(headers.get("authorization"))  # missing or malformed: 401 before the body
        peer = scope.get("client")
        request = self.parse(client, headers, body, peer[0] if peer else None)
        issued = await issue(service, client, request, facts)
        await send_json(send, issued.document(), cors, _NO_STORE_RAW)
