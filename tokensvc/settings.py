"""Service-level settings: the only module that reads ``TOKENSVC_*`` environment variables.

Built once at startup (``Settings.from_env``) and passed explicitly. Every problem is reported
at once, as a ``ConfigError``, before any socket is bound. Per-client settings live in
``clients_config/`` and are loaded by ``tokensvc.clients``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from tokensvc.errors import ConfigError, Problem
from tokensvc.secret import Secret, read_secret_file
from tokensvc.twilio_hosts import parse_base_url

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "text")
WORKER_CLASSES = ("asyncio", "uvloop")
TWILIO_VERIFY_MODES = ("off", "warn", "enforce")


@dataclass(frozen=True)
class EnvVar:
    """Documentation of one environment variable (rendered into the README table)."""

    name: str
    default: str
    help: str


#: Every variable the service reads, in the order the README documents them.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("TOKENSVC_CONFIG_DIR", "./clients_config", "Directory of client files (`--config`)."),
    EnvVar("TOKENSVC_HOST", "127.0.0.1", "Public listen address (`--host`)."),
    EnvVar("TOKENSVC_PORT", "8080", "Public listen port (`--port`)."),
    EnvVar("TOKENSVC_ADMIN_PORT", "(unset)",
           "Admin port for `/metrics`, `/livez`, `/readyz`; unset serves `/metrics` nowhere."),
    EnvVar("TOKENSVC_ADMIN_HOST", "same as host", "Admin listen address."),
    EnvVar("TOKENSVC_REGION", "local", "This deployment's region name, returned as `region`."),
    EnvVar("TOKENSVC_COUNTRY_HEADER", "(unset)",
           "Trusted header set by the load balancer with the caller's ISO country "
           "(e.g. `CloudFront-Viewer-Country`). Unset: only the body's `country` hint is used."),
    EnvVar("TOKENSVC_CLIENT_IP_HEADER", "(unset)",
           "Header carrying the caller IP for per-IP rate limits (e.g. `X-Forwarded-For`); "
           "unset uses the TCP peer."),
    EnvVar("TOKENSVC_TRUSTED_HOPS", "1",
           "With an `X-Forwarded-For`-style header: how many proxies append to it; the "
           "caller IP is the entry this many places from the right."),
    EnvVar("TOKENSVC_LOG_LEVEL", "info", "debug | info | warning | error."),
    EnvVar("TOKENSVC_LOG_FORMAT", "auto", "json | text | auto (text on a TTY, JSON otherwise)."),
    EnvVar("TOKENSVC_WORKERS", "1", "Hypercorn worker processes."),
    EnvVar("TOKENSVC_WORKER_CLASS", "uvloop", "Hypercorn worker class: uvloop | asyncio."),
    EnvVar("TOKENSVC_GRACEFUL_TIMEOUT", "10",
           "Seconds Hypercorn lets in-flight requests finish after SIGTERM."),
    EnvVar("TOKENSVC_SHUTDOWN_DELAY", "0",
           "Seconds to keep serving (with `/readyz` at 503) after SIGTERM before closing the "
           "listeners; for load balancers without a preStop hook."),
    EnvVar("TOKENSVC_KEEP_ALIVE_TIMEOUT", "5", "Idle keep-alive connection timeout (s)."),
    EnvVar("TOKENSVC_MAX_BODY_BYTES", "4096", "Largest accepted request body (413 above)."),
    EnvVar("TOKENSVC_BODY_TIMEOUT", "5", "Total seconds to receive a request body (408 after)."),
    EnvVar("TOKENSVC_MAX_HEADER_BYTES", "16384", "Largest accepted request head (Hypercorn)."),
    EnvVar("TOKENSVC_RELOAD_INTERVAL", "5",
           "Seconds between checks of the config directory for changes; 0 disables reload."),
    EnvVar("TOKENSVC_JWKS_REFRESH", "300", "Seconds between JWKS refreshes."),
    EnvVar("TOKENSVC_JWKS_MAX_STALE", "86400",
           "Seconds fetched JWKS keys stay usable while the identity provider is unreachable."),
    EnvVar("TOKENSVC_HTTP_TIMEOUT", "5", "Timeout (s) of every outgoing HTTP call (JWKS)."),
    EnvVar("TOKENSVC_REDIS_URL", "(unset)",
           "Unset: in-memory state. `redis://`, `rediss://`, or "
           "`redis+sentinel://h1:p1,h2:p2/<service>`."),
    EnvVar("TOKENSVC_REDIS_READ_URL", "(unset)",
           "Optional local read replica (cross-region primary/replica topology)."),
    EnvVar("TOKENSVC_REDIS_PASSWORD", "(unset)",
           "Redis password (or `TOKENSVC_REDIS_PASSWORD_FILE`)."),
    EnvVar("TOKENSVC_REDIS_SENTINEL_PASSWORD", "(unset)",
           "Sentinel password (or `TOKENSVC_REDIS_SENTINEL_PASSWORD_FILE`)."),
    EnvVar("TOKENSVC_REDIS_BUDGET_MS", "20",
           "Longest a token request waits on Redis; past it the request proceeds without it."),
    EnvVar("TOKENSVC_REDIS_REFRESH", "2",
           "Seconds between background refreshes of the drains/blocks snapshot."),
    EnvVar("TOKENSVC_RATE_SYNC_MS", "100",
           "How often a pod sends its rate-limit counts to Redis (one round trip for all); "
           "the cross-pod over-admission bound grows with it."),
    EnvVar("TOKENSVC_FINGERPRINT_KEY", "(random per process)",
           "Key of the identity fingerprints in logs (or `TOKENSVC_FINGERPRINT_KEY_FILE`); "
           "set it to correlate one caller across pods."),
    EnvVar("TOKENSVC_ALLOW_DEV", "false",
           "Serve `dev: true` clients (published secrets) on a non-loopback address. Off: "
           "such a config is refused unless the service listens on loopback only."),
    EnvVar("TOKENSVC_TWILIO_VERIFY", "warn",
           "Read-only check of every client's Twilio API keys, TwiML App and push credentials: "
           "off | warn (report only) | enforce (signing skips a key Twilio rejected; a client "
           "whose every key is rejected answers 503 not_ready)."),
    EnvVar("TOKENSVC_TWILIO_VERIFY_INTERVAL", "900",
           "Seconds between verification rounds (jittered +-20 %); also run at start-up and "
           "after each client reload."),
    *(EnvVar(f"TOKENSVC_TWILIO_{kind.upper()}_URL_{region.upper()}", "(Twilio's host)",
             f"Base URL of Twilio's {kind} host for home region {region} (egress proxy, "
             "tests); `http://` only for loopback.")
      for kind in ("api", "notify") for region in ("us1", "ie1", "au1")),
    EnvVar("TOKENSVC_OPS_CONFIG", "(unset)",
           "Ops tooling: YAML file listing every region's Redis (`regions: {name: url}`)."),
    EnvVar("PROMETHEUS_MULTIPROC_DIR", "(unset)",
           "Set automatically with several workers so `/metrics` aggregates them."),
)


@dataclass(frozen=True)
class Settings:
    """Everything the service needs that is not per client. Immutable, built once."""

    config_dir: Path = Path("clients_config")
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str | None = None
    admin_port: int | None = None
    region: str = "local"
    country_header: str | None = None
    client_ip_header: str | None = None
    trusted_hops: int = 1
    log_level: str = "info"
    log_format: str = "auto"
    workers: int = 1
    worker_class: str = "uvloop"
    graceful_timeout: float = 10.0
    shutdown_delay: float = 0.0
    keep_alive_timeout: float = 5.0
    max_body_bytes: int = 4096
    body_timeout: float = 5.0
    max_header_bytes: int = 16384
    reload_interval: float = 5.0
    jwks_refresh: float = 300.0
    jwks_max_stale: float = 86400.0
    http_timeout: float = 5.0
    redis_url: Secret | None = None
    redis_read_url: Secret | None = None
    redis_password: Secret | None = None
    redis_sentinel_password: Secret | None = None
    redis_budget_ms: float = 20.0
    redis_refresh: float = 2.0
    rate_sync_ms: float = 100.0
    ops_config: Path | None = None
    fingerprint_key: Secret | None = None
    allow_dev: bool = False
    twilio_verify: str = "warn"
    twilio_verify_interval: float = 900.0
    twilio_api_url_us1: str | None = None
    twilio_api_url_ie1: str | None = None
    twilio_api_url_au1: str | None = None
    twilio_notify_url_us1: str | None = None
    twilio_notify_url_ie1: str | None = None
    twilio_notify_url_au1: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with command-line overrides applied, checked again as a whole."""
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        updated.check()
        return updated

    @property
    def loopback_only(self) -> bool:
        hosts = {self.host, self.admin_host or self.host}
        return hosts <= {"127.0.0.1", "localhost", "::1"}

    def check(self) -> None:
        """Problems between settings (each one alone was valid)."""
        problems = []
        if not 0 < self.port < 65536:
            problems.append(Problem("settings", "port", f"must be 1..65535, got {self.port}"))
        if self.admin_port is not None and self.admin_port == self.port and (
                (self.admin_host or self.host) == self.host):
            problems.append(Problem("environment", "TOKENSVC_ADMIN_PORT",
                                    "must differ from the public port"))
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        d = cls()
        settings = cls(
            config_dir=Path(reader.get("TOKENSVC_CONFIG_DIR", str, str(d.config_dir))),
            host=reader.get("TOKENSVC_HOST", str, d.host),
            port=reader.get("TOKENSVC_PORT", _port, d.port),
            admin_host=reader.optional("TOKENSVC_ADMIN_HOST", str),
            admin_port=reader.optional("TOKENSVC_ADMIN_PORT", _port),
            region=reader.get("TOKENSVC_REGION", _region, d.region),
            country_header=reader.optional("TOKENSVC_COUNTRY_HEADER", _header_name),
            client_ip_header=reader.optional("TOKENSVC_CLIENT_IP_HEADER", _header_name),
            trusted_hops=reader.get("TOKENSVC_TRUSTED_HOPS", _positive_int, d.trusted_hops),
            log_level=reader.get("TOKENSVC_LOG_LEVEL", _choice(LOG_LEVELS), d.log_level),
            log_format=reader.get("TOKENSVC_LOG_FORMAT", _choice(LOG_FORMATS), d.log_format),
            workers=reader.get("TOKENSVC_WORKERS", _positive_int, d.workers),
            worker_class=reader.get(
                "TOKENSVC_WORKER_CLASS", _choice(WORKER_CLASSES), d.worker_class
            ),
            graceful_timeout=reader.get(
                "TOKENSVC_GRACEFUL_TIMEOUT", _nonneg_float, d.graceful_timeout
            ),
            shutdown_delay=reader.get(
                "TOKENSVC_SHUTDOWN_DELAY", _nonneg_float, d.shutdown_delay
            ),
            keep_alive_timeout=reader.get(
                "TOKENSVC_KEEP_ALIVE_TIMEOUT", _positive_float, d.keep_alive_timeout
            ),
            max_body_bytes=reader.get("TOKENSVC_MAX_BODY_BYTES", _positive_int, d.max_body_bytes),
            body_timeout=reader.get("TOKENSVC_BODY_TIMEOUT", _positive_float, d.body_timeout),
            max_header_bytes=reader.get(
                "TOKENSVC_MAX_HEADER_BYTES", _positive_int, d.max_header_bytes
            ),
            reload_interval=reader.get(
                "TOKENSVC_RELOAD_INTERVAL", _nonneg_float, d.reload_interval
            ),
            jwks_refresh=reader.get("TOKENSVC_JWKS_REFRESH", _positive_float, d.jwks_refresh),
            jwks_max_stale=reader.get(
                "TOKENSVC_JWKS_MAX_STALE", _positive_float, d.jwks_max_stale
            ),
            http_timeout=reader.get("TOKENSVC_HTTP_TIMEOUT", _positive_float, d.http_timeout),
            redis_url=reader.secret("TOKENSVC_REDIS_URL", with_file=False),
            redis_read_url=reader.secret("TOKENSVC_REDIS_READ_URL", with_file=False),
            redis_password=reader.secret("TOKENSVC_REDIS_PASSWORD"),
            redis_sentinel_password=reader.secret("TOKENSVC_REDIS_SENTINEL_PASSWORD"),
            redis_budget_ms=reader.get(
                "TOKENSVC_REDIS_BUDGET_MS", _positive_float, d.redis_budget_ms
            ),
            redis_refresh=reader.get("TOKENSVC_REDIS_REFRESH", _positive_float, d.redis_refresh),
            rate_sync_ms=reader.get("TOKENSVC_RATE_SYNC_MS", _positive_float, d.rate_sync_ms),
            ops_config=reader.optional("TOKENSVC_OPS_CONFIG", Path),
            fingerprint_key=reader.secret("TOKENSVC_FINGERPRINT_KEY"),
            allow_dev=reader.get("TOKENSVC_ALLOW_DEV", _boolean, d.allow_dev),
            twilio_verify=reader.get(
                "TOKENSVC_TWILIO_VERIFY", _choice(TWILIO_VERIFY_MODES), d.twilio_verify
            ),
            twilio_verify_interval=reader.get(
                "TOKENSVC_TWILIO_VERIFY_INTERVAL", _positive_float, d.twilio_verify_interval
            ),
            twilio_api_url_us1=reader.optional("TOKENSVC_TWILIO_API_URL_US1", parse_base_url),
            twilio_api_url_ie1=reader.optional("TOKENSVC_TWILIO_API_URL_IE1", parse_base_url),
            twilio_api_url_au1=reader.optional("TOKENSVC_TWILIO_API_URL_AU1", parse_base_url),
            twilio_notify_url_us1=reader.optional(
                "TOKENSVC_TWILIO_NOTIFY_URL_US1", parse_base_url),
            twilio_notify_url_ie1=reader.optional(
                "TOKENSVC_TWILIO_NOTIFY_URL_IE1", parse_base_url),
            twilio_notify_url_au1=reader.optional(
                "TOKENSVC_TWILIO_NOTIFY_URL_AU1", parse_base_url),
        )
        if reader.problems:
            raise ConfigError(reader.problems)
        settings.check()
        return settings


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        value = self.optional(name, parse)
        return default if value is None else value

    def optional(self, name: str, parse: Callable[[str], T]) -> T | None:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(Problem("environment", name, str(exc)))
            return None

    def secret(self, name: str, *, with_file: bool = True) -> Secret | None:
        raw = self.env.get(name)
        if raw:
            return Secret(raw)
        file_name = f"{name}_FILE"
        path = self.env.get(file_name) if with_file else None
        if path:
            try:
                return read_secret_file(path)
            except OSError as exc:
                self.problems.append(
                    Problem("environment", file_name, f"cannot read file: {exc.strerror}")
                )
        return None


def _port(raw: str) -> int:
    if raw.startswith("tcp://"):
        raise ValueError(f"{raw!r} is a Kubernetes service link, not a port: name the Service "
                         "differently or set enableServiceLinks: false")
    value = _positive_int(raw)
    if value > 65535:
        raise ValueError(f"port must be 1..65535, got {raw!r}")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"expected a number >= 1, got {raw!r}")
    return value


def _nonneg_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected a finite number >= 0, got {raw!r}")
    return value


def _positive_float(raw: str) -> float:
    value = _nonneg_float(raw)
    if value == 0:
        raise ValueError(f"expected a number > 0, got {raw!r}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _region(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"region must be 1-64 of [A-Za-z0-9-_.], got {raw!r}")
    return value


def _header_name(raw: str) -> str:
    value = raw.strip().lower()
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise ValueError(f"not a valid HTTP header name: {raw!r}")
    return value
