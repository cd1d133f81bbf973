"""Helpers shared by the tests: client files, caller credentials, a running service.

One helper per need: ``write_client`` (a client file), ``assertion`` (a caller's JWT),
``make_client`` (the app over ASGI; the ``client`` fixture in conftest.py wraps it), ``serve``
(a ``tokensvc serve`` process), ``serve_until_exit`` (one that must refuse to start),
``post_token`` (one token request over HTTP), ``free_port``, and ``wait_until`` /
``eventually`` (wait for a condition, sync / async; both raise on timeout).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import yaml
from starlette.testclient import TestClient

from drill.procs import free_port as free_port  # the one free_port, re-exported
from tokensvc.app import create_app
from tokensvc.settings import Settings

HS_SECRET = "test-caller-secret-0123456789abcdef-xyz"
API_KEY_SECRET = "test-api-key-secret-0123456789abcdef"
ACCOUNT_SID = "AC" + "1" * 32
API_KEY_SID = "SK" + "2" * 32
APP_SID = "AP" + "3" * 32
ISSUER = "https://idp.example.com/"
AUDIENCE = "tokensvc"
ORIGIN = "https://app.example.com"

BASE_CLIENT: dict[str, Any] = {
    "twilio": {
        "account_sid": ACCOUNT_SID,
        "api_key_sid": API_KEY_SID,
        "api_key_secret": API_KEY_SECRET,
        "outgoing_application_sid": APP_SID,
        "incoming_allow": True,
        "home_region": "us1",
        "push_credentials": {
            "ios": {"production": "CR" + "a" * 32, "sandbox": "CR" + "b" * 32},
            "android": "CR" + "c" * 32,
        },
    },
    "token": {"ttl_seconds": 3600},
    "auth": {
        "type": "jwt",
        "algorithms": ["HS256"],
        "hs256_secret": HS_SECRET,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "identity_claim": "sub",
    },
    "cors": {"allow_origins": [ORIGIN]},
    "edges": {
        "default": ["ashburn", "umatilla", "roaming"],
        "by_country": {"IE": ["dublin", "frankfurt", "ashburn"]},
        "geo": True,
    },
    "rate_limit": {"per_identity": "1000/minute", "per_ip": "10000/minute"},
    "dev": True,
}


def merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``changes`` into a copy of ``base``; a value of None deletes the key."""
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_client(directory: Path, client_id: str = "app", **changes: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{client_id}.yaml"
    path.write_text(yaml.safe_dump(merge(BASE_CLIENT, changes), sort_keys=False))
    return path


def assertion(
    sub: str = "alice",
    *,
    secret: str = HS_SECRET,
    alg: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 300,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=alg, headers=headers)


def _timed_out(what: str, within: float, last: BaseException | None) -> AssertionError:
    error = AssertionError(f"{what or 'the condition'}: not true within {within}s")
    error.__cause__ = last
    return error


def wait_until(
    check: Callable[[], object], within: float, what: str = "", *, step: float = 0.02
) -> float:
    """Seconds until ``check()`` is truthy, polling every ``step``; after ``within`` seconds an
    AssertionError naming ``what`` (and chaining the check's last exception: one raised by
    ``check`` counts as "not yet", as when a server is still starting)."""
    started = time.monotonic()
    last: BaseException | None = None
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 -- not yet; chained to the timeout error
            last = exc
        if time.monotonic() - started > within:
            raise _timed_out(what, within, last)
        time.sleep(step)


async def eventually(
    check: Callable[[], object], within: float, what: str = "", *, step: float = 0.005
) -> float:
    """The async twin of ``wait_until``: polls without blocking the event loop."""
    started = time.monotonic()
    last: BaseException | None = None
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 -- not yet; chained to the timeout error
            last = exc
        if time.monotonic() - started > within:
            raise _timed_out(what, within, last)
        await asyncio.sleep(step)


def post_token(
    url: str, sub: str = "alice", *, client_id: str = "app", timeout: float = 5.0
) -> tuple[int, dict[str, Any]]:
    """POST a token request for caller ``sub`` to a running service; (status, JSON body)."""
    request = urllib.request.Request(
        f"{url}/v1/clients/{client_id}/token",
        method="POST",
        data=b"{}",
        headers={"Authorization": f"Bearer {assertion(sub)}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


class Served:
    """A ``tokensvc serve`` process on loopback, stopped by its PID."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, admin_port: int | None, log_path: Path
    ) -> None:
        self.process = process
        self.port = port
        self.admin_port = admin_port
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 15.0
) -> None:
    """Until ``url``/readyz answers 200; fails at once if ``process`` exits first."""

    def exited() -> bool:
        return process is not None and process.poll() is not None

    wait_until(
        lambda: exited() or 200 == get(url + "/readyz", timeout=0.5)[0],
        timeout,
        f"{url}/readyz answering 200",
        step=0.05,
    )
    if exited():
        assert process is not None
        raise AssertionError(f"server exited with {process.returncode}")


def serve_command(config_dir: Path, port: int, *options: str) -> list[str]:
    """The ``tokensvc serve`` command line for ``config_dir`` on ``port``, then ``options``."""
    command = [sys.executable, "-m", "tokensvc", "serve", "--config", str(config_dir)]
    return [*command, "--port", str(port), *options]


def scrubbed_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its TOKENSVC_* variables, then ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSVC_")}
    environ.update(env or {})
    return environ


def serve_until_exit(
    config_dir: Path,
    env: Mapping[str, str] | None = None,
    *options: str,
    port: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``tokensvc serve`` with only ``env`` as TOKENSVC_* variables (on ``port``, else a
    free one) and return once it exits: a refused start must, within 30 s."""
    return subprocess.run(
        serve_command(config_dir, port or free_port(), *options),
        capture_output=True,
        text=True,
        timeout=30,
        env=scrubbed_env(env),
    )


@contextmanager
def serve(
    config_dir: Path, tmp_path: Path, env: Mapping[str, str] | None = None, admin: bool = True
) -> Iterator[Served]:
    port = free_port()
    admin_port = free_port() if admin else None
    environ = scrubbed_env(
        {
            "TOKENSVC_LOG_FORMAT": "json",
            "TOKENSVC_RELOAD_INTERVAL": "0.2",
            "TOKENSVC_TWILIO_VERIFY": "off",  # no calls to the real Twilio
        }
    )
    if admin_port:
        environ["TOKENSVC_ADMIN_PORT"] = str(admin_port)
    environ.update(env or {})
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            serve_command(config_dir, port, "--host", "127.0.0.1"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    served = Served(process, port, admin_port, log_path)
    try:
        wait_ready(served.url, process)
        yield served
    finally:
        served.stop()


def make_client(config_dir: Path, **settings: object) -> TestClient:
    """The service over ASGI (enter it to run the lifespan), on in-memory state, with a
    fixed peer address; ``settings`` override the defaults."""
    values: dict[str, object] = {
        "config_dir": config_dir,
        "reload_interval": 0.0,
        "twilio_verify": "off",
    }  # no calls to the real Twilio
    values.update(settings)
    app = create_app(Settings(**values))  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:8080", client=("203.0.113.9", 5555))
