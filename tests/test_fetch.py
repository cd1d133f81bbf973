"""tokensvc.fetch: total deadlines, size caps and no redirects, against a loopback server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tokensvc.fetch import Fetcher, FetchError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/keys"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def answer(status: str, body: bytes, extra: bytes = b"") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 "
            + status.encode()
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n"
            + extra
            + b"\r\n"
            + body
        )
        await writer.drain()
        writer.close()

    return handle


async def test_a_complete_answer_is_returned_with_its_status(
    serve: Callable[..., Awaitable[str]],
) -> None:
    """A 404 is an answer, not an error: the caller decides what it means."""
    url = await serve(answer("404 Not Found", b'{"code":20404}'))
    fetcher = Fetcher()
    try:
        response = await fetcher.get(url, deadline=2, max_bytes=1024)
    finally:
        await fetcher.close()
    assert (404, b'{"code":20404}') == (response.status, response.body)


async def test_a_drip_fed_body_is_cut_at_the_total_deadline(
    serve: Callable[..., Awaitable[str]],
) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the total deadline ends it and
    closes the connection (the server sees its writes fail)."""
    closed = asyncio.Event()

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        try:
            for _ in range(200):  # bounded: 40 s at most
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.2)
                if reader.at_eof():
                    break
        except ConnectionError:
            pass
        closed.set()
        writer.close()

    url = await serve(drip)
    fetcher = Fetcher()
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as caught:
            await fetcher.get(url, deadline=0.8, max_bytes=1 << 20)
        elapsed = time.monotonic() - started
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        await fetcher.close()
    assert "timeout" == caught.value.reason
    assert elapsed < 2.0


async def test_a_body_over_the_cap_is_refused(serve: Callable[..., Awaitable[str]]) -> None:
    """The body is counted as it arrives; past max_bytes the call fails."""
    url = await serve(answer("200 OK", b"x" * 5000))
    fetcher = Fetcher()
    try:
        with pytest.raises(FetchError) as caught:
            await fetcher.get(url, deadline=2, max_bytes=4096)
    finally:
        await fetcher.close()
    assert "too_large" == caught.value.reason


async def test_a_redirect_is_not_followed(serve: Callable[..., Awaitable[str]]) -> None:
    """A configured URL is exact: a 302 is a failure, never a hop."""
    url = await serve(answer("302 Found", b"", b"Location: http://127.0.0.1:1/elsewhere\r\n"))
    fetcher = Fetcher()
    try:
        with pytest.raises(FetchError) as caught:
            await fetcher.get(url, deadline=2, max_bytes=1024)
    finally:
        await fetcher.close()
    assert "redirect" == caught.value.reason


async def test_a_refused_connection_is_a_network_error() -> None:
    """Nothing listening: FetchError("network"), not an httpx exception."""
    fetcher = Fetcher()
    try:
        with pytest.raises(FetchError) as caught:
            await fetcher.get("http://127.0.0.1:1/", deadline=2, max_bytes=1024)
    finally:
        await fetcher.close()
    assert "network" == caught.value.reason
