"""``make demo``: the three regions and HAProxy kept running, with a live status page on
loopback (regions up/down per HAProxy, start-ups per second by answering region, drains, the
edges handed out per country) until Ctrl-C; then everything is stopped by PID.
"""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from drill.procs import HOST
from drill.topology import Topology

PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>tokensvc drill demo</title>
<style>body{font:14px system-ui;margin:2em}td,th{padding:2px 10px;text-align:left}
.UP{color:green}.DOWN,.MAINT{color:#c00}</style>
<h1>tokensvc: three regions behind HAProxy</h1><div id="s">loading...</div>
<script>
async function tick(){const s=await (await fetch('/status.json')).json();let h='';
h+='<h2>Servers (HAProxy health checks on /readyz)</h2><table>';
for(const [r,srv] of Object.entries(s.servers)){h+=`<tr><th>${r}</th>`+
 srv.map(([n,st])=>`<td class="${st.split(' ')[0]}">${n} ${st}</td>`).join('')+'</tr>'}
h+='</table><h2>Start-ups per second (last 5 s) by answering region</h2><table>';
for(const [r,n] of Object.entries(s.rate)){h+=`<tr><th>${r}</th><td>${n.toFixed(1)}</td></tr>`}
h+=`</table><p>failed in the last 5 s: ${s.failed}</p><h2>Drained edges</h2><pre>${s.drains}</pre>`;
h+='<h2>Edges handed out per country (latest)</h2><table>';
for(const [c,e] of Object.entries(s.edges)){h+=`<tr><th>${c}</th><td>${e.join(', ')}</td></tr>`}
h+=`</table><h2>Try it</h2><pre>${s.help}</pre>`;document.getElementById('s').innerHTML=h}
tick();setInterval(tick,1000);
</script></html>"""


class _State:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.drains = "(none yet)"
        self.offset = 0
        self.recent: list[dict[str, Any]] = []
        self.edges: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def poll_drains(self, halt: threading.Event) -> None:
        while not halt.is_set():
            result = self.topo.ops("edges", "list", timeout=10)
            self.drains = (result.stdout or result.stderr).strip() or "(none)"
            halt.wait(3)

    def status(self) -> dict[str, Any]:
        path = self.topo.startups
        if path.exists():
            with path.open() as f:
                f.seek(self.offset)
                chunk = f.read()
            cut = chunk.rfind("\n") + 1
            self.offset += len(chunk[:cut].encode())
            for line in chunk[:cut].splitlines():
                record = json.loads(line)
                self.recent.append(record)
                if record["ok"]:
                    self.edges[record["country"]] = record["edges"]
        now_ms = time.time() * 1000
        self.recent = [r for r in self.recent if r["t"] > now_ms - 5000]
        rate: dict[str, float] = {}
        for r in self.recent:
            if r["ok"]:
                rate[r["region"]] = rate.get(r["region"], 0) + 0.2
        stats = self.topo.haproxy.stats()
        servers = {
            reg.name: [[p.name, stats.get((reg.name, p.name), "?")] for p in reg.processes]
            for reg in self.topo.regions
        }
        urls = self.topo.urls
        help_text = "\n".join(
            [
                *(f"{name:13} {url}" for name, url in urls.items()),
                "",
                f"curl -s {urls['global']}/v1/clients/webphone/edges -H 'X-Drill-Geo: JP'",
                f"TOKENSVC_OPS_CONFIG={self.topo.ops_config} tokensvc edges drain tokyo --for 5m",
                f"TOKENSVC_OPS_CONFIG={self.topo.ops_config} tokensvc edges undrain tokyo",
            ]
        )
        return {
            "servers": servers,
            "rate": rate,
            "drains": self.drains,
            "failed": sum(1 for r in self.recent if not r["ok"]),
            "edges": dict(sorted(self.edges.items())),
            "help": help_text,
        }


def serve_demo(rate: float, port: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tokensvc-demo-"))
    topo = Topology(workdir)
    halt = threading.Event()
    server: ThreadingHTTPServer | None = None
    signal.signal(signal.SIGTERM, lambda *_: halt.set())
    try:
        print(f"demo: starting 3 regions + HAProxy in {workdir}", flush=True)
        topo.start()
        topo.start_load(rate, lifetime=24 * 3600)
        state = _State(topo)
        threading.Thread(target=state.poll_drains, args=(halt,), daemon=True).start()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/status.json":
                    with state.lock:
                        body, kind = json.dumps(state.status()).encode(), "application/json"
                elif self.path == "/":
                    body, kind = PAGE.encode(), "text/html; charset=utf-8"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer((HOST, port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"demo: status page http://{HOST}:{port}/  (Ctrl-C stops everything)", flush=True)
        print(state.status()["help"], flush=True)
        while not halt.is_set():
            halt.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        halt.set()
        if server is not None:
            server.shutdown()
        print("demo: stopping", flush=True)
        topo.stop()
    return 0
