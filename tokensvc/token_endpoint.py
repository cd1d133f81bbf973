"""``POST /v1/clients/{client}/token`` as a pure ASGI endpoint: the hot path.

Every client calls this at start-up and on every refresh, and after a regional failover all of
another region's clients call it at once, so it skips Starlette's request/response objects
and exception middleware (measured in bench/RESULTS.md). It reads the body itself, under a
size cap and a total deadline (a drip-fed body gets 408), and renders every ApiError as an
RFC 9457 problem document. The other routes stay ordinary Starlette endpoints.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from tokensvc.errors import (
    PROBLEM_MEDIA_TYPE,
    ApiError,
    InternalError,
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    RequestTimeout,
    UnknownClient,
)
from tokensvc.issuance import cors_headers, issue, parse_body
from tokensvc.service import Service

log = logging.getLogger("tokensvc.request")
JSON = b"application/json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


def scope_headers(scope: Scope) -> dict[str, str]:
    """Lower-case header names -> values; the first of duplicated headers wins."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


async def read_body(receive: Receive, headers: dict[str, str], limit: int,
                    deadline: float) -> bytes:
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(length) > 12:
            raise InvalidRequest("invalid Content-Length")
        if int(length) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
    body = b""
    try:
        async with asyncio.timeout(deadline):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk: bytes = message.get("body", b"")
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(f"body larger than {limit} bytes")
                if not message.get("more_body", False):
                    return body
    except TimeoutError:
        raise RequestTimeout(f"body not received within {deadline:g} s",
                             headers={"Connection": "close"}) from None


async def send_json(send: Send, status: int, document: dict[str, Any],
                    headers: dict[str, str], media_type: bytes = JSON) -> None:
    body = json.dumps(document, separators=(",", ":")).encode()
    raw = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_problem(send: Send, error: ApiError, headers: dict[str, str]) -> None:
    await send_json(send, error.status, error.document(),
                    {**error.headers, **headers, "Cache-Control": "no-store"},
                    PROBLEM_MEDIA_TYPE.encode())


class TokenEndpoint:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send, client_id: str,
                       ctx: dict[str, Any]) -> None:
        service = self.service
        headers = scope_headers(scope)
        extra: dict[str, str] = {}
        try:
            if not service.serving:
                raise NotReady("service is starting or shutting down")
            client = service.clients.get(client_id)
            if client is None:
                raise UnknownClient(f"no client {client_id[:64]!r}")
            ctx["client"] = client.id
            extra = cors_headers(client, headers)
            settings = service.settings
            body = await read_body(receive, headers, settings.max_body_bytes,
                                   settings.body_timeout)
            data = parse_body(body, headers.get("content-type"))
            peer = scope.get("client")
            payload = await issue(service, client, headers, data, peer[0] if peer else None,
                                  ctx)
        except ApiError as exc:
            ctx["code"] = exc.code
            await send_problem(send, exc, extra)
            return
        except ClientGone:
            ctx["code"] = "client_gone"
            return
        except Exception:
            log.exception("unhandled error in token endpoint")
            ctx["code"] = "internal"
            await send_problem(send, InternalError("an unexpected error occurred"), extra)
            return
        await send_json(send, 200, payload, {**NO_STORE, **extra})
