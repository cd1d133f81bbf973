"""The application's own cost per token request, without a server: ASGI calls in one loop.

    python3 bench/asgi.py                 # tokensvc (every feature but Redis) and the reference
    taskset -c 0 python3 bench/asgi.py

What the server (Hypercorn, h11, the socket) costs is the same for every ASGI app; what
differs between tokensvc and the bare reference endpoint is what runs inside the ASGI call.
This measures exactly that, with no load generator and no network, so its noise is a few
per cent where the whole-path runs of ``bench/run.py`` vary by 5 to 25 %: the figure to read when
changing the token path. Each request carries its own caller JWT (2,000 distinct callers, as
the load runs do: no cache of verified credentials can help) and is logged as JSON to
``/dev/null`` and counted in the metrics, as in production.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import jwt
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import run as harness  # the load harness: one client file and one caller shape for both

Message = MutableMapping[str, Any]
Scope = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]

ACCOUNT, KEY_SID, APP = "AC" + "0" * 32, "SK" + "1" * 32, "AP" + "2" * 32
KEY_SECRET = secrets.token_hex(16)
CALLER_SECRET = secrets.token_hex(32)
ISSUER, AUDIENCE, CLIENT = harness.ISSUER, harness.AUDIENCE, harness.CLIENT_ID
CALLERS = 2000
COUNTRIES = tuple(c.encode() for c in harness.COUNTRIES)
COUNTRY_HEADER = harness.COUNTRY_HEADER


def client_file(directory: Path) -> None:
    """The load runs' client file (run.py's ``client_document``)."""
    doc = harness.client_document(ACCOUNT, KEY_SID, APP)
    (directory / f"{CLIENT}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def scopes(token_path: bool) -> list[tuple[Scope, bytes]]:
    now = int(time.time())
    out = []
    for i in range(CALLERS):
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"caller{i:06d}", "iat": now}
        claims |= {"exp": now + 3600, "jti": secrets.token_hex(8)}
        assertion = jwt.encode(claims, CALLER_SECRET, algorithm="HS256")
        headers = [
            (b"host", b"127.0.0.1:8080"),
            (b"authorization", b"Bearer " + assertion.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"22"),
        ]
        if country := COUNTRIES[i % len(COUNTRIES)]:
            headers.append((COUNTRY_HEADER.encode(), country))
        path = f"/v1/clients/{CLIENT}/token"  # the reference reads ?identity= instead
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"" if token_path else f"identity=caller{i:06d}".encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000 + i % 1000),
            "server": ("127.0.0.1", 8080),
            "extensions": {},
            "state": {},
        }
        out.append((scope, b'{"platform":"browser"}'))
    return out


async def one_pass(app: App, requests: list[tuple[Scope, bytes]]) -> float:
    """µs per request over one pass of ``requests``; every answer must be 200."""
    statuses: set[int] = set()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    started = time.perf_counter()
    for scope, body in requests:
        queue: asyncio.Queue[Message] = asyncio.Queue()
        queue.put_nowait({"type": "http.request", "body": body, "more_body": False})
        await app(dict(scope), queue.get, send)
    elapsed = (time.perf_counter() - started) / len(requests) * 1e6
    if statuses != {200}:
        raise SystemExit(f"not every answer was 200: {sorted(statuses)}")
    return elapsed


async def interleaved(ours: App, reference: App, rounds: int) -> tuple[list[float], list[float]]:
    """Alternate passes of both apps, so a slow spell of the machine falls on both."""
    mine, theirs = scopes(True), scopes(False)
    a: list[float] = []
    b: list[float] = []
    for n in range(rounds):
        a.append(await one_pass(ours, mine))
        b.append(await one_pass(reference, theirs))
        if os.environ.get("BENCH_VERBOSE"):
            print(f"  round {n + 1}: {a[-1]:.1f} / {b[-1]:.1f} µs", file=sys.stderr)
    return a, b


async def with_lifespan(app: App, run: Callable[[], Awaitable[Any]]) -> Any:
    """Start ``app``'s lifespan, run, shut it down."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()
        elif message["type"].startswith("lifespan.shutdown"):
            stopped.set()

    inbox.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    task = asyncio.create_task(app(scope, inbox.get, send))
    await started.wait()
    try:
        return await run()
    finally:
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait_for(stopped.wait(), 10)
        await task


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "9"))
    os.environ["BENCH_API_KEY_SECRET"] = KEY_SECRET
    os.environ["BENCH_CALLER_SECRET"] = CALLER_SECRET
    os.environ.update(BENCH_ACCOUNT_SID=ACCOUNT, BENCH_API_KEY_SID=KEY_SID, BENCH_APP_SID=APP)
    import reference_app  # reads the BENCH_* variables set above

    from tokensvc.app import create_app
    from tokensvc.observability import configure_logging
    from tokensvc.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp)
        client_file(config)
        settings = Settings.from_env(
            {
                "TOKENSVC_CONFIG_DIR": str(config),
                "TOKENSVC_COUNTRY_HEADER": COUNTRY_HEADER,
                "TOKENSVC_LOG_FORMAT": "json",
                "TOKENSVC_TWILIO_VERIFY": "off",
                "TOKENSVC_REGION": "bench",
            }
        )
        real_stdout = sys.stdout
        sys.stdout = io.TextIOWrapper(open(os.devnull, "wb"), write_through=False)  # noqa: SIM115
        configure_logging("info", "json")
        try:
            tokensvc = create_app(settings)
            ours, theirs = asyncio.run(
                with_lifespan(tokensvc, lambda: interleaved(tokensvc, reference_app.app, rounds))
            )
        finally:
            sys.stdout = real_stdout
    gaps = sorted(a - b for a, b in zip(ours, theirs, strict=True))
    print(f"{rounds} interleaved passes of {CALLERS} requests each, µs per request")
    print(f"tokensvc (every feature, in-memory state)  best {min(ours):6.1f}")
    print(f"reference (bare Starlette, stock twilio)   best {min(theirs):6.1f}")
    print(f"difference, median of the passes           {gaps[len(gaps) // 2]:+6.1f}")


if __name__ == "__main__":
    main()
