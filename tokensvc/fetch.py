"""Outgoing HTTP GETs with a total deadline: the only module that talks to remote HTTP services.

Every remote dependency (an identity provider's JWKS, Twilio's REST API, Twilio's status page)
is reached through :class:`Fetcher`, so every call has the same guarantees:

- **A total deadline** per call, covering connect, TLS, headers and the whole body. httpx's own
  timeouts are per operation (an IdP that sends one byte every 2 s never trips a 5 s read
  timeout); ``asyncio.timeout`` around the whole transfer does, and leaving it closes the
  response, which closes the socket. Nothing runs in a thread, so nothing is stranded.
- **A size cap**: the body is streamed and the call fails as soon as it exceeds ``max_bytes``.
- **No redirects**: a URL is configured exactly; a 3xx is an answer (``FetchError``), never a
  hop to another scheme or host.
- **Isolation**: calls share one connection pool, but each holds at most one connection for at
  most its deadline, so a slow or failing host delays only the callers waiting on that host.

Errors are one type, :class:`FetchError`, with a short ``reason`` suitable for a metric label
or a log field (never a URL's credentials or a response body).

httpx is imported, and its client (TLS context, CA bundle) built, at the first call: a
service whose clients verify HS* callers never fetches anything, and start-up does not pay
for it (≈ 100 ms here, measured in bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokensvc.errors import TokensvcError

if TYPE_CHECKING:
    import httpx

USER_AGENT = "tokensvc"


class FetchError(TokensvcError):
    """A GET that gave no usable answer: ``reason`` is timeout | too_large | redirect | network."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer: any status (the caller decides what a 4xx or 5xx means)."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class Fetcher:
    """GETs under a total deadline and a size cap; one per process, closed at shutdown."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._made: httpx.AsyncClient | None = None
        self._closed = False

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("Cannot send a request, as the fetcher has been closed.")
        if self._made is None:
            import httpx

            self._made = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,  # an egress proxy is configured explicitly, never inherited
                transport=self._transport,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=8),
                # identity: the size cap counts the bytes that arrive, and no small compressed
                # body can expand past it in memory.
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._made

    async def get(
        self,
        url: str,
        *,
        deadline: float,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        """The whole response within ``deadline`` seconds, or ``FetchError``."""
        import httpx

        try:
            async with asyncio.timeout(deadline):
                request = self._client.build_request("GET", url, headers=headers)
                response = await self._client.send(
                    request, stream=True, auth=httpx.BasicAuth(*auth) if auth else None
                )
                try:
                    if response.is_redirect:
                        raise FetchError("redirect", f"HTTP {response.status_code} not followed")
                    body = bytearray()
                    async for chunk in response.aiter_raw():
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchError("too_large", f"body over {max_bytes} bytes")
                    return Response(response.status_code, bytes(body), dict(response.headers))
                finally:
                    await response.aclose()
        except TimeoutError:
            raise FetchError("timeout", f"no complete answer within {deadline:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError("network", type(exc).__name__) from None

    async def close(self) -> None:
        self._closed = True
        if self._made is not None:
            await self._made.aclose()
