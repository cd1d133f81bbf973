"""Headless Chromium pages with the real ``@twilio/voice-sdk`` Device bound through the helper's
``bindDevice``: shows the edge lists reach the SDK through HAProxy's global endpoint.

``drill/browser.mjs`` serves a page (helper modules + the SDK's browser bundle) on the origin the
client file allows, opens the pages, and records what each Device was given. Missing Chromium,
playwright-core or the SDK (``npm ci`` in ``drill/``) makes the pages skip loudly, never fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from drill.procs import Child, wait_until
from drill.regions import REPO
from drill.topology import Topology

CHROMIUM = Path("/usr/bin/chromium")
SDK = REPO / "drill" / "node_modules" / "@twilio" / "voice-sdk" / "dist" / "twilio.min.js"
PLAYWRIGHT = REPO / "drill" / "node_modules" / "playwright-core"


class Browser:
    def __init__(self, topo: Topology, workdir: Path, port: int, pages: int = 3) -> None:
        self.topo = topo
        self.port = port
        self.pages = pages
        self.out = workdir / "browser.jsonl"
        self.plan = workdir / "secrets" / "browser-plan.json"
        self.child: Child | None = None
        self.failed = False
        self.unavailable = ""
        if not CHROMIUM.exists():
            self.unavailable = f"{CHROMIUM} missing (js/scripts/ensure-chromium.sh)"
        elif not SDK.exists() or not PLAYWRIGHT.exists():
            self.unavailable = "run `npm ci` in drill/ (@twilio/voice-sdk, playwright-core)"
        elif shutil.which("node") is None:
            self.unavailable = "node missing"

    def start(self) -> None:
        from drill import callers

        countries = ["IE", "JP", "US"]
        plan: dict[str, Any] = {
            "port": self.port,
            "out": str(self.out),
            "client": callers.CLIENT,
            "pages": [
                {
                    "country": c,
                    "endpoints": [self.topo.urls["global"]],
                    "credential": callers.caller_jwts(self.topo.creds, c, 1, 3600)[0],
                }
                for c in (countries * self.pages)[: self.pages]
            ],
            "chromium": str(CHROMIUM),
        }
        self.plan.write_text(json.dumps(plan))
        self.child = Child(
            "browser",
            [str(shutil.which("node")), str(REPO / "drill" / "browser.mjs"), str(self.plan)],
            self.topo.logs / "browser.log",
            env=self.topo.env,
        ).start()
        try:
            wait_until(lambda: self._lines() != [], 60, "Chromium pages bound", step=0.5)
        except TimeoutError:
            self.failed = True

    def _lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(x) for x in self.out.read_text().splitlines() if x.strip()]

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(15)

    def report(self) -> str:
        if self.unavailable:
            return f"Browser pages: skipped ({self.unavailable})."
        lines = self._lines()
        bound = [x for x in lines if x.get("event") == "bound"]
        refreshed = [x for x in lines if x.get("event") == "refresh"]
        errors = [x for x in lines if x.get("event") == "error"]
        bad = [x for x in bound + refreshed if x.get("sdkEdges") != x.get("edges")]
        if len(bound) < self.pages or bad or errors:
            self.failed = True
        summary = {x["country"]: x.get("sdkEdges") for x in bound}
        return (
            f"Browser pages (headless Chromium, @twilio/voice-sdk Device via bindDevice): "
            f"{len(bound)}/{self.pages} bound, {len(refreshed)} refreshes, "
            f"{len(errors)} errors, {len(bad)} where the Device's edges differed from "
            f"the service's; the Device's edges per country: {summary}"
        )
