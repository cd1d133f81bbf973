"""A fake Atlassian Statuspage on loopback, serving documents shaped like the real ones.

``/api/v2/components.json`` and ``/api/v2/summary.json`` answer from one mutable fixture: two
groups with children and one top-level component. ``mode`` makes it misbehave: ``ok``,
``500``, ``hang`` (never answers, until stopped or 10 s pass), ``redirect`` (302 to the same
server), ``garbage`` (not JSON), ``stale`` (a ``page.updated_at`` older than any served
before). Every status change moves ``page.updated_at`` forward, as the real page does.

Shared by the drill's status-feed step and the status-feed tests (``from drill.fake_statuspage
import running``); it lives here because the drill never imports from tests/.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

#: (id, name, group id or None, children) in page order, like Twilio's page.
LAYOUT: list[tuple[str, str, str | None, list[str]]] = [
    (
        "grpedges0001",
        "Voice Edge Locations",
        None,
        ["ashburn00001", "dublin000001", "frankfurt001", "tokyo0000001", "sydney000001"],
    ),
    ("ashburn00001", "Ashburn (us1)", "grpedges0001", []),
    ("dublin000001", "Dublin (ie1)", "grpedges0001", []),
    ("frankfurt001", "Frankfurt (de1)", "grpedges0001", []),
    ("tokyo0000001", "Tokyo (jp1)", "grpedges0001", []),
    ("sydney000001", "Sydney (au1)", "grpedges0001", []),
    ("grpvoice0001", "Programmable Voice", None, ["voiceapi0001", "sipint000001"]),
    ("voiceapi0001", "Voice API", "grpvoice0001", []),
    ("sipint000001", "SIP Interface", "grpvoice0001", []),
    ("console00001", "Console", None, []),
]


class FakeStatuspage:
    def __init__(self) -> None:
        self.statuses = {cid: "operational" for cid, *_ in LAYOUT}
        self.mode = "ok"
        self.version = 0
        self.requests = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the fixture ---------------------------------------------------------------------
    def set_status(self, component: str, status: str) -> None:
        self.statuses[component] = status
        self.version += 1

    def updated_at(self) -> datetime:
        return BASE_TIME + timedelta(minutes=self.version)

    def components_doc(self) -> dict[str, Any]:
        at = self.updated_at().isoformat().replace("+00:00", "Z")
        components = []
        for position, (cid, name, group_id, children) in enumerate(LAYOUT):
            item: dict[str, Any] = {
                "id": cid,
                "name": name,
                "status": self.statuses[cid],
                "created_at": "2015-01-01T00:00:00.000Z",
                "updated_at": at,
                "position": position + 1,
                "description": None,
                "showcase": False,
                "start_date": None,
                "group_id": group_id,
                "page_id": "fakepage0001",
                "group": bool(children),
                "only_show_if_degraded": False,
            }
            if children:
                item["components"] = list(children)
            components.append(item)
        return {
            "page": {
                "id": "fakepage0001",
                "name": "Fake Twilio",
                "url": "https://status.example.com",
                "time_zone": "Etc/UTC",
                "updated_at": at,
            },
            "components": components,
        }

    def summary_doc(self) -> dict[str, Any]:
        doc = self.components_doc()
        worst = any(s != "operational" for s in self.statuses.values())
        doc.update(
            incidents=[],
            scheduled_maintenances=[],
            status={
                "indicator": "minor" if worst else "none",
                "description": "Partial System Outage" if worst else "All Systems Operational",
            },
        )
        return doc

    # -- the server ----------------------------------------------------------------------
    @property
    def base(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Statuspage is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return self.base + "/api/v2/components.json"

    @property
    def summary_url(self) -> str:
        return self.base + "/api/v2/summary.json"

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests += 1
        if self.mode == "hang":
            self._release.wait(10)  # bounded: released at stop()
            return
        if self.mode == "500":
            self._send(handler, 500, b'{"error":"internal"}')
        elif self.mode == "redirect":
            self._send(handler, 302, b"", {"Location": self.base + "/elsewhere.json"})
        elif self.mode == "garbage":
            self._send(handler, 200, b"<html>maintenance</html>")
        elif handler.path.endswith("/summary.json"):
            self._send(handler, 200, json.dumps(self.summary_doc()).encode())
        elif handler.path.endswith("/components.json"):
            doc = self.components_doc()
            if self.mode == "stale":
                doc["page"]["updated_at"] = "2020-01-01T00:00:00.000Z"
            self._send(handler, 200, json.dumps(doc).encode())
        else:
            self._send(handler, 404, b'{"error":"not found"}')

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


@contextmanager
def running() -> Iterator[FakeStatuspage]:
    fake = FakeStatuspage()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
