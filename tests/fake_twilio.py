"""A fake Twilio REST API on loopback: one listener per home region, in a thread of its own.

It answers the reads the verifier makes (Applications, Notify Credentials) the way Twilio does,
with Twilio's error bodies ``{"code", "message", "more_info", "status"}``, and refuses the
Accounts resource to Standard keys. ``keys`` is the Basic-auth table ``{SK: (secret, region)}``;
a key is accepted only by the listener of its own region. ``mode`` is ``normal``, ``hang``
(read the request, answer nothing until stopped) or ``fail`` (500). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from support import ACCOUNT_SID, API_KEY_SECRET, API_KEY_SID, APP_SID

REGIONS = ("us1", "ie1", "au1")
CR_PROD, CR_SANDBOX, CR_ANDROID = "CR" + "a" * 32, "CR" + "b" * 32, "CR" + "c" * 32
OTHER_SID, OTHER_SECRET = "SK" + "9" * 32, "second-key-secret-0123456789abcdef"
_APP = re.compile(r"/2010-04-01/Accounts/(AC\w+)/Applications/(AP\w+)\.json")
_APPS = re.compile(r"/2010-04-01/Accounts/(AC\w+)/Applications\.json")
_CRED = re.compile(r"/v1/Credentials/(CR\w+)")


def error_body(code: int, status: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@dataclass
class Request:
    region: str
    method: str
    path: str
    user: str | None


@dataclass
class FakeTwilio:
    account_sid: str
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: (region, AP sid) of the TwiML Apps that exist
    apps: set[tuple[str, str]] = field(default_factory=set)
    #: (region, CR sid) -> (type, sandbox) of the push credentials that exist
    credentials: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)
    mode: str = "normal"
    requests: list[Request] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._stopping: asyncio.Event | None = None

    def base_url(self, region: str) -> str:
        return f"http://127.0.0.1:{self.ports[region]}"

    def env(self) -> dict[str, str]:
        """The TOKENSVC_TWILIO_*_URL_* variables that point the service here."""
        out = {}
        for region in REGIONS:
            out[f"TOKENSVC_TWILIO_API_URL_{region.upper()}"] = self.base_url(region)
            out[f"TOKENSVC_TWILIO_NOTIFY_URL_{region.upper()}"] = self.base_url(region)
        return out

    def start(self) -> FakeTwilio:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def hanging(self) -> int:
        """Requests received in hang mode (answered with nothing so far)."""
        return sum(1 for r in self.requests if r.method == "HANG")

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        for region in REGIONS:
            server = await asyncio.start_server(
                functools.partial(self._handle, region), "127.0.0.1", 0
            )
            self._servers.append(server)
            self.ports[region] = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._stopping is not None
        self._stopping.set()
        for server in self._servers:
            server.close()
        # Keep-alive connections outlive server.close(): close them, and let their handlers
        # finish, so no socket is left for the garbage collector.
        for writer in list(self._connections):
            writer.close()
        for _ in range(100):  # bounded: handlers leave within a few loop turns
            if not self._connections:
                break
            await asyncio.sleep(0.01)
        for server in self._servers:
            await server.wait_closed()

    async def _handle(
        self, region: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connections.add(writer)
        try:
            while True:  # keep-alive: several requests per connection
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                user, secret = _basic(headers.get("authorization"))
                path = target.split("?", 1)[0]
                if self.mode == "hang":
                    self.requests.append(Request(region, "HANG", path, user))
                    assert self._stopping is not None
                    await asyncio.wait_for(self._stopping.wait(), timeout=60)  # bounded
                    return
                self.requests.append(Request(region, method, path, user))
                status, body = self._answer(region, method, path, user, secret)
                data = json.dumps(body).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    def _answer(
        self, region: str, method: str, path: str, user: str | None, secret: str | None
    ) -> tuple[int, dict[str, Any]]:
        if self.mode == "fail":
            return 500, error_body(20500, 500, "An internal server error has occurred")
        if method != "GET":
            return 405, error_body(20004, 405, "Method not allowed")
        known = self.keys.get(user or "")
        if known is None or known != (secret, region):
            return 401, error_body(20003, 401, "Authenticate")
        missing = error_body(20404, 404, f"The requested resource {path} was not found")
        if (m := _APP.fullmatch(path)) is not None:
            if m.group(1) != self.account_sid or (region, m.group(2)) not in self.apps:
                return 404, missing
            return 200, {
                "sid": m.group(2),
                "account_sid": self.account_sid,
                "friendly_name": "voice",
                "voice_url": "https://example.com/voice",
            }
        if (m := _APPS.fullmatch(path)) is not None:
            if m.group(1) != self.account_sid:
                return 404, missing
            apps = [
                {"sid": sid, "account_sid": self.account_sid}
                for r, sid in sorted(self.apps)
                if r == region
            ][:1]
            return 200, {"applications": apps, "page": 0, "page_size": 1}
        if (m := _CRED.fullmatch(path)) is not None:
            found = self.credentials.get((region, m.group(1)))
            if found is None:
                return 404, missing
            kind, sandbox = found
            return 200, {
                "sid": m.group(1),
                "account_sid": self.account_sid,
                "type": kind,
                "sandbox": "true" if sandbox else "false",
                "friendly_name": "push",
            }
        # Accounts/{AC}.json, Keys, anything else: a Standard key may not read them.
        return 401, error_body(20003, 401, "Authenticate")


def _basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.startswith("Basic "):
        return None, None
    try:
        user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None, None
    return user, secret


def world() -> FakeTwilio:
    """Twilio as tests/support.py's base client expects it: its key, app and push credentials
    in us1 (CR_PROD production APNs, CR_SANDBOX sandbox APNs, CR_ANDROID FCM)."""
    return FakeTwilio(
        ACCOUNT_SID,
        keys={API_KEY_SID: (API_KEY_SECRET, "us1")},
        apps={("us1", APP_SID)},
        credentials={
            ("us1", CR_PROD): ("apn", False),
            ("us1", CR_SANDBOX): ("apn", True),
            ("us1", CR_ANDROID): ("fcm", False),
        },
    )
