"""End to end: real tokensvc processes over HTTP against real valkey topologies.

The failure scenarios of the Redis issue, seen as a caller sees them: a steady stream of token
requests must not see one failure while Redis fails over, hangs, or disappears; drains issued
once by the ops tooling reach every region.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from redis_servers import BlackHole, Node, SentinelCluster
from support import Served, get, post_token, serve, write_client

TOKEN = "/v1/clients/app/token"


class Stream:
    """Token requests in a background thread, one after another, for as long as it runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            start = time.perf_counter()
            try:
                status, _ = post_token(self.url, f"caller{i % 50}")
                if status != 200:
                    self.failures.append(str(status))
            except (OSError, ValueError) as exc:  # URLError is an OSError; ValueError: not JSON
                self.failures.append(type(exc).__name__)
            self.latencies.append(time.perf_counter() - start)
            time.sleep(0.005)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99) - 1] if ordered else 0.0


def edges(served: Served) -> list[str]:
    return list(json.loads(get(served.url + "/v1/clients/app/edges?country=IE")[1])["edges"])


def ops(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokensvc", *args, "--ops-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def clients(tmp_path: Path) -> Path:
    directory = tmp_path / "clients"
    write_client(directory, rate_limit={"per_identity": "100000/minute", "per_ip": "100000/minute"})
    return directory


def test_kill_9_primary_under_load_fails_no_token_request(
    sentinel_cluster: SentinelCluster, clients: Path, tmp_path: Path
) -> None:
    """kill -9 of the Sentinel primary during a stream of token requests: zero failures, the
    new primary is used, and a drain written after the failover reaches the service."""
    env = {"TOKENSVC_REDIS_URL": sentinel_cluster.sentinel_url, "TOKENSVC_REDIS_REFRESH": "0.5"}
    with serve(clients, tmp_path, env) as served, Stream(served.url) as stream:
        time.sleep(1.0)
        old = sentinel_cluster.kill_primary()
        new = sentinel_cluster.wait_for_new_primary(old.port)
        time.sleep(2.0)
        ops_config = tmp_path / "ops.yaml"
        ops_config.write_text(f"regions:\n  local: {sentinel_cluster.sentinel_url}\n")
        assert (
            0
            == ops(
                "edges", "drain", "dublin", "--for", "5m", "--reason", "test", config=ops_config
            ).returncode
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "dublin" in edges(served):
            time.sleep(0.05)
        drained = "dublin" not in edges(served)
    print(
        f"\n[figures] http_kill_primary: sent={len(stream.latencies)} "
        f"failed={len(stream.failures)} p99_ms={stream.p99() * 1000:.1f}"
    )
    assert ([], True) == (stream.failures, drained)
    assert new.port != old.port and len(stream.latencies) > 50


def test_paused_primary_fails_no_token_request(
    sentinel_cluster: SentinelCluster, clients: Path, tmp_path: Path
) -> None:
    """A SIGSTOPped primary (a partition), later resumed: no failure, no hang."""
    env = {"TOKENSVC_REDIS_URL": sentinel_cluster.sentinel_url}
    with serve(clients, tmp_path, env) as served, Stream(served.url) as stream:
        time.sleep(0.5)
        primary = sentinel_cluster.current_primary()
        primary.pause()
        try:
            time.sleep(3.0)
        finally:
            primary.resume()
        time.sleep(1.0)
    print(
        f"\n[figures] http_paused_primary: sent={len(stream.latencies)} "
        f"failed={len(stream.failures)} p99_ms={stream.p99() * 1000:.1f}"
    )
    assert [] == stream.failures
    assert max(stream.latencies) < 1.0


def test_redis_down_then_back(redis_node: Node, clients: Path, tmp_path: Path) -> None:
    """Redis gone for a while, then back: tokens keep coming and readyz stays 200."""
    env = {"TOKENSVC_REDIS_URL": redis_node.url, "TOKENSVC_REDIS_REFRESH": "0.5"}
    with serve(clients, tmp_path, env) as served, Stream(served.url) as stream:
        time.sleep(0.5)
        redis_node.stop()
        time.sleep(2.0)
        ready_while_down = get(served.url + "/readyz")
        redis_node.restart()
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and json.loads(get(served.url + "/readyz")[1])["checks"]["state"]["status"] != "ok"
        ):
            time.sleep(0.1)
        recovered = json.loads(get(served.url + "/readyz")[1])["checks"]["state"]["status"]
    body = json.loads(ready_while_down[1])
    assert (200, "degraded") == (ready_while_down[0], body["checks"]["state"]["status"])
    assert ([], "ok") == (stream.failures, recovered)


def test_black_holed_redis_does_not_raise_token_latency(
    black_hole_factory: Callable[[str], BlackHole], clients: Path, tmp_path: Path
) -> None:
    """A Redis that accepts connections and never answers costs requests at most the budget."""
    hole = black_hole_factory("accept")
    env = {"TOKENSVC_REDIS_URL": hole.url, "TOKENSVC_REDIS_BUDGET_MS": "20"}
    with serve(clients, tmp_path, env) as served, Stream(served.url) as stream:
        time.sleep(3.0)
    print(
        f"\n[figures] http_black_hole: sent={len(stream.latencies)} "
        f"p99_ms={stream.p99() * 1000:.1f}"
    )
    assert [] == stream.failures
    assert stream.p99() < 0.25  # budget 20 ms per Redis wait; loose for a loaded 2-core CI


def test_drain_reaches_two_regions_and_sync_repairs_one_that_was_down(
    node_factory: Callable[[], Node], clients: Path, tmp_path: Path
) -> None:
    """One `tokensvc edges drain` reaches both regions within 2 s; with one region's Redis
    down the tooling says so (exit 1), and `edges sync` later brings that region up to date."""
    eu_redis, us_redis = node_factory(), node_factory()
    ops_config = tmp_path / "ops.yaml"
    ops_config.write_text(f"regions:\n  eu: {eu_redis.url}\n  us: {us_redis.url}\n")
    eu_env = {"TOKENSVC_REDIS_URL": eu_redis.url, "TOKENSVC_REGION": "eu"}
    us_env = {"TOKENSVC_REDIS_URL": us_redis.url, "TOKENSVC_REGION": "us"}
    with serve(clients, tmp_path, eu_env) as eu, serve(clients, tmp_path, us_env) as us:
        start = time.monotonic()
        assert (
            0
            == ops(
                "edges", "drain", "dublin", "--for", "10m", "--reason", "test", config=ops_config
            ).returncode
        )
        while time.monotonic() - start < 5 and ("dublin" in edges(eu) or "dublin" in edges(us)):
            time.sleep(0.02)
        propagation = time.monotonic() - start
        us_redis.stop()
        partial = ops(
            "edges", "drain", "frankfurt", "--for", "10m", "--reason", "test", config=ops_config
        )
        us_redis.restart()
        time.sleep(0.5)
        repaired = ops("edges", "sync", config=ops_config)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "frankfurt" in edges(us):
            time.sleep(0.05)
        us_edges = edges(us)
    print(f"\n[figures] http_drain_two_regions: propagation_s={propagation:.3f}")
    assert propagation < 2.0
    assert 1 == partial.returncode
    assert "1 of 2 regions failed (us)" in partial.stdout + partial.stderr
    assert (0, ["ashburn"]) == (repaired.returncode, us_edges)
