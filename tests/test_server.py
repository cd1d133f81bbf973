"""The real process: Hypercorn, signals, slow clients, config reload, several workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from support import assertion, free_port, get, post_token, serve, serve_until_exit, write_client

pytestmark = pytest.mark.process  # every test here runs `tokensvc serve`

TOKEN = "/v1/clients/app/token"


def test_serves_tokens_over_http(config_dir: Path, tmp_path: Path) -> None:
    """A real `tokensvc serve` mints a token over HTTP."""
    with serve(config_dir, tmp_path) as served:
        status, body = post_token(served.url)
    assert (200, "alice") == (status, body["identity"])


def test_sigterm_turns_readyz_503_then_exits_0(config_dir: Path, tmp_path: Path) -> None:
    """After SIGTERM, readyz answers 503 during the shutdown delay, then the process exits 0."""
    with serve(config_dir, tmp_path, {"TOKENSVC_SHUTDOWN_DELAY": "1.5"}) as served:
        served.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        status, _ = get(served.url + "/readyz")
        code = served.process.wait(15)
    assert (503, 0) == (status, code)


def test_in_flight_request_finishes_after_sigterm(config_dir: Path, tmp_path: Path) -> None:
    """A request whose body is still arriving when SIGTERM lands is answered, then exit 0."""
    with serve(config_dir, tmp_path) as served:
        body = b'{"country": "IE"}'
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
            s.sendall(
                f"POST {TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {assertion()}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body[:5]
            )
            time.sleep(0.3)
            served.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            s.sendall(body[5:])
            response = b""
            while chunk := s.recv(65536):
                response += chunk
        code = served.process.wait(15)
    assert (b"HTTP/1.1 200", 0) == (response[:12], code)


def test_drip_fed_body_gets_408_within_the_body_timeout(config_dir: Path, tmp_path: Path) -> None:
    """A body sent one byte at a time is cut off with 408 once TOKENSVC_BODY_TIMEOUT passes."""
    with (
        serve(config_dir, tmp_path, {"TOKENSVC_BODY_TIMEOUT": "1"}) as served,
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as s,
    ):
        s.sendall(
            f"POST {TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\n\r\n".encode()
        )
        start = time.monotonic()
        s.settimeout(0.2)
        response = b""
        while time.monotonic() - start < 5 and not response:
            try:
                s.sendall(b" ")
                response = s.recv(65536)
            except TimeoutError:
                continue
        elapsed = time.monotonic() - start
    assert b"HTTP/1.1 408" == response[:12]
    assert elapsed < 3


def test_oversized_headers_are_refused(config_dir: Path, tmp_path: Path) -> None:
    """A request head over TOKENSVC_MAX_HEADER_BYTES is refused by the server."""
    with (
        serve(config_dir, tmp_path, {"TOKENSVC_MAX_HEADER_BYTES": "4096"}) as served,
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as s,
    ):
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        response = s.recv(65536)
    assert b"HTTP/1.1 431" == response[:12]


def test_reload_picks_up_a_changed_file(config_dir: Path, tmp_path: Path) -> None:
    """Editing a client file changes the service's answers without a restart."""
    with serve(config_dir, tmp_path) as served:
        write_client(config_dir, edges={"default": ["tokyo"], "by_country": None, "geo": False})
        deadline = time.monotonic() + 5
        edges: list[str] = []
        while time.monotonic() < deadline and edges != ["tokyo"]:
            edges = json.loads(get(served.url + "/v1/clients/app/edges")[1])["edges"]
            time.sleep(0.1)
    assert ["tokyo"] == edges


def test_broken_reload_keeps_last_good_config_and_says_why(
    config_dir: Path, tmp_path: Path
) -> None:
    """A broken edit is rejected: the old config keeps serving and the log names the field."""
    with serve(config_dir, tmp_path) as served:
        write_client(config_dir, edges={"default": ["frankfort"]})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "frankfort" not in served.log():
            time.sleep(0.1)
        status, body = post_token(served.url)
        log = served.log()
    assert (200, "ashburn") == (status, body["edges"][0])
    assert "edges.default[0]" in log and "keeping the last good config" in log


def test_two_workers_both_serve(config_dir: Path, tmp_path: Path) -> None:
    """With TOKENSVC_WORKERS=2 the supervisor runs two workers and exits 0 on SIGTERM."""
    with serve(config_dir, tmp_path, {"TOKENSVC_WORKERS": "2"}) as served:
        results = [post_token(served.url, f"user{i}")[0] for i in range(20)]
        code = served.stop()
    assert ([200] * 20, 0) == (results, code)


def test_supervisor_restarts_a_worker_that_dies(config_dir: Path, tmp_path: Path) -> None:
    """kill -9 of one of two workers: the supervisor starts a new one and tokens keep coming."""
    with serve(config_dir, tmp_path, {"TOKENSVC_WORKERS": "2"}) as served:
        supervisor = served.process.pid
        children_file = Path(f"/proc/{supervisor}/task/{supervisor}/children")
        children = {int(p) for p in children_file.read_text().split()}
        assert 2 == len(children)
        victim = min(children)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        replaced: set[int] = set()
        while time.monotonic() < deadline and (victim in replaced or len(replaced) < 2):
            time.sleep(0.1)
            replaced = {int(p) for p in children_file.read_text().split()}
        statuses = [post_token(served.url, f"user{i}")[0] for i in range(10)]
    assert victim not in replaced and 2 == len(replaced)
    assert [200] * 10 == statuses


@pytest.mark.parametrize(("workers", "taken"), [("1", "public"), ("2", "public"), ("1", "admin")])
def test_port_in_use_is_one_line(config_dir: Path, workers: str, taken: str) -> None:
    """A port another process listens on: one line naming host and port, exit 1, no
    traceback, whatever the worker count (no SO_REUSEPORT sharing either)."""
    port, admin_port = free_port(), free_port()
    env = {"TOKENSVC_WORKERS": workers, "TOKENSVC_ADMIN_PORT": str(admin_port)}
    busy = port if taken == "public" else admin_port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        result = serve_until_exit(config_dir, env, port=port)
    assert (1, [f"error: cannot listen on 127.0.0.1:{busy}: Address already in use"]) == (
        result.returncode,
        result.stderr.splitlines(),
    )
