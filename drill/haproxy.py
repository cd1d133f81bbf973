"""HAProxy in front of the regions, its config written from the region list.

    frontend <region>   a regional endpoint: that region's two processes, round robin
    frontend global     nearest healthy region by the caller's country (a map file), every other
                        region's processes as backups, so a region that is down fails over

Each frontend does what a cloud load balancer does: it deletes every caller-supplied copy of
the trusted country headers, then sets them from the geo decision (here the simulated client's
``X-Drill-Geo`` header stands in for the load balancer's IP geolocation), and appends the peer
to ``X-Forwarded-For`` (``option forwardfor``). Health: ``GET /readyz`` on the public port every
0.5 s, down after 2 failures, up after 2 successes; the global backends ``track`` the regional
checks so each process is checked once. Started in the foreground (``-db``), stopped by PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from drill.procs import HOST, Child, free_port, wait_until
from drill.regions import Region

BINARY = "/usr/sbin/haproxy"
GEO_HEADER = "X-Drill-Geo"
GEO_PARAM = "drill_geo"


def ensure_installed() -> str:
    """The haproxy binary; installed with apt-get when missing (root only)."""
    found = shutil.which("haproxy") or (BINARY if Path(BINARY).exists() else None)
    if found:
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "haproxy"],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    return BINARY


def render(
    regions: Sequence[Region], ports: dict[str, int], map_file: Path, stats_socket: Path
) -> str:
    """The whole haproxy.cfg for these regions; ``ports`` maps frontend name -> listen port."""
    headers = sorted({r.country_header for r in regions})
    header_rules = [
        # A browser cannot send a custom header without a CORS preflight the service does not
        # allow: the drill's pages name their country in a query parameter instead.
        f"    http-request set-header {GEO_HEADER} %[url_param({GEO_PARAM})] "
        f"if {{ url_param({GEO_PARAM}) -m found }}",
        *(f"    http-request del-header {h}" for h in headers),
    ] + [
        f"    http-request set-header {h} %[req.hdr({GEO_HEADER})] "
        f"if {{ req.hdr({GEO_HEADER}) -m found }}"
        for h in headers
    ]
    out = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    option forwardfor",
        "    option redispatch 1",
        "    retries 2",
        "    timeout connect 500ms",
        "    timeout client 30s",
        "    timeout server 10s",
        "    timeout http-keep-alive 5s",
        "    default-server inter 500ms fall 2 rise 2",
        "",
    ]
    for region in regions:
        out += [
            f"frontend {region.name}",
            f"    bind {HOST}:{ports[region.name]}",
            *header_rules,
            f"    default_backend {region.name}",
            "",
            f"backend {region.name}",
            "    balance roundrobin",
            "    option httpchk GET /readyz",
            "    http-check expect status 200",
        ]
        out += [f"    server {p.name} {HOST}:{p.port} check" for p in region.processes]
        out.append("")
    out += ["frontend global", f"    bind {HOST}:{ports['global']}", *header_rules]
    for region in regions:
        out.append(
            f"    use_backend global-{region.name} "
            f"if {{ req.hdr({GEO_HEADER}),upper,map({map_file}) -m str {region.name} }}"
        )
    out += [f"    default_backend global-{regions[0].name}", ""]
    for region in regions:
        out += [f"backend global-{region.name}", "    balance roundrobin", "    option allbackups"]
        for other in regions:
            backup = "" if other is region else " backup"
            out += [
                f"    server {p.name} {HOST}:{p.port} track {other.name}/{p.name}{backup}"
                for p in other.processes
            ]
        out.append("")
    return "\n".join(out)


class HAProxy:
    def __init__(self, regions: Sequence[Region], workdir: Path, logs: Path) -> None:
        self.regions = list(regions)
        self.dir = workdir / "haproxy"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = {r.name: free_port() for r in regions} | {"global": free_port()}
        self.map_file = self.dir / "country-region.map"
        self.map_file.write_text(
            "".join(f"{c} {r.name}\n" for r in regions for c in r.spec.countries)
        )
        self.stats_socket = self.dir / "stats.sock"
        self.config = self.dir / "haproxy.cfg"
        self.config.write_text(render(self.regions, self.ports, self.map_file, self.stats_socket))
        self.child = Child(
            "haproxy", [ensure_installed(), "-db", "-f", str(self.config)], logs / "haproxy.log"
        )

    def url(self, frontend: str) -> str:
        return f"http://{HOST}:{self.ports[frontend]}"

    def check_config(self) -> None:
        subprocess.run(
            [ensure_installed(), "-c", "-q", "-f", str(self.config)], check=True, timeout=30
        )

    def start(self) -> HAProxy:
        self.check_config()
        self.child.start()
        wait_until(lambda: self.stats() != {}, 10, "haproxy stats socket")
        return self

    def stats(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> status (UP, DOWN, MAINT, ...) from the stats socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = data.decode(errors="replace").splitlines()
        if not rows or not rows[0].startswith("# "):
            return {}
        header = rows[0][2:].split(",")
        status: dict[tuple[str, str], str] = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(","), strict=False))
            if cells.get("svname") not in (None, "FRONTEND", "BACKEND"):
                status[(cells["pxname"], cells["svname"])] = cells.get("status", "")
        return status

    def server_up(self, region: str, server: str) -> bool:
        return self.stats().get((region, server), "").startswith("UP")

    def stop(self) -> None:
        self.child.stop(5)
