"""Service-level settings: the only module that reads ``TOKENSVC_*`` environment variables.

Each setting is declared once, as a field of ``Settings``::

    port: int = setting(8080, parse_port, "Public listen port (`--port`).")

The declaration carries the default, the parser (raw string -> value, ``ValueError`` with a
message on bad input), the help text, and for secrets ``secret=True`` (masked as ``<SECRET>``)
and ``file=True`` (a ``<NAME>_FILE`` variant names a mounted file holding the value). The
variable is ``TOKENSVC_`` + the field name upper-cased unless ``env=`` says otherwise.
Everything else is derived from the declarations: ``Settings.from_env``, ``ENV_VARS`` (the list
of variables), ``markdown_table()`` (the README table, ``tokensvc settings --markdown``) and
``describe()`` (``tokensvc settings``).

Built once at startup and passed explicitly. Every problem, including a ``TOKENSVC_*`` name no
declaration knows (with the closest known one suggested), is reported at once as a
``ConfigError`` before any socket is bound. Per-client settings live in ``clients_config/``
(``tokensvc.clients``).

One variable that is not ours is read and written here too: ``PROMETHEUS_MULTIPROC_DIR``, which
prometheus-client itself reads; our supervisor sets it for its workers
(``prometheus_multiproc_dir``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from tokensvc.errors import ConfigError, Problem
from tokensvc.secret import Secret, read_secret_file
from tokensvc.twilio_hosts import parse_base_url

T = TypeVar("T")

PREFIX = "TOKENSVC_"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "text")
WORKER_CLASSES = ("asyncio", "uvloop")
TWILIO_VERIFY_MODES = ("off", "warn", "enforce")
_DECLARATION = "tokensvc.setting"


# -- parsers: raw string -> value, ValueError (its message shown to the operator) ------------


def parse_port(raw: str) -> int:
    if raw.startswith("tcp://"):
        raise ValueError(
            f"{raw!r} is a Kubernetes service link, not a port: name the Service "
            "differently or set enableServiceLinks: false"
        )
    value = parse_positive_int(raw)
    if value > 65535:
        raise ValueError(f"port must be 1..65535, got {raw!r}")
    return value


def parse_positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"expected a number >= 1, got {raw!r}")
    return value


def parse_nonneg_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected a finite number >= 0, got {raw!r}")
    return value


def parse_positive_float(raw: str) -> float:
    value = parse_nonneg_float(raw)
    if value == 0:
        raise ValueError(f"expected a number > 0, got {raw!r}")
    return value


def parse_choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def parse_region(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"region must be 1-64 of [A-Za-z0-9-_.], got {raw!r}")
    return value


_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{16,256}")


def parse_webhook_secret(raw: str) -> Secret:
    if not _WEBHOOK_SECRET.fullmatch(raw.strip()):
        raise ValueError("must be 16-256 of [A-Za-z0-9_-] (it is part of a URL path)")
    return Secret(raw.strip())


def parse_header_name(raw: str) -> str:
    value = raw.strip().lower()
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise ValueError(f"not a valid HTTP header name: {raw!r}")
    return value


# -- the declaration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    """One setting, as declared: what ``from_env`` reads and the README documents."""

    name: str  #: the environment variable, e.g. ``TOKENSVC_PORT``
    field: str  #: the ``Settings`` attribute, e.g. ``port``
    parse: Callable[[str], Any]
    default: Any
    help: str
    shown_default: str  #: the default as the README shows it (markdown)
    secret: bool = False  #: masked as <SECRET> when shown
    file: bool = False  #: ``<name>_FILE`` may name a file holding the value

    @property
    def file_name(self) -> str | None:
        return f"{self.name}_FILE" if self.file else None


@dataclass(frozen=True)
class _Spec:
    parse: Callable[[str], Any]
    help: str
    shown: str | None
    secret: bool
    file: bool
    env: str | None


def setting(
    default: T,
    parse: Callable[[str], T],
    help: str,
    *,
    shown: str | None = None,
    secret: bool = False,
    file: bool = False,
    env: str | None = None,
) -> T:
    """Declare a ``Settings`` field: its default, parser and help (see the module docstring).

    ``shown``: the default as the README shows it, when it is not the literal value
    (``"random per process"``). An empty variable counts as unset."""
    spec = _Spec(parse, help, shown, secret, file, env)
    return field(default=default, metadata={_DECLARATION: spec})


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    return f"`{_plain(value)}`"


def _plain(value: object) -> str:
    """A value as one would write it in the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Settings:
    """Everything the service needs that is not per client. Immutable, built once.

    The field order is the README's order."""

    config_dir: Path = setting(
        Path("clients_config"),
        Path,
        "Directory of client files (`--config`).",
        shown="`./clients_config`",
    )
    host: str = setting("127.0.0.1", str, "Public listen address (`--host`).")
    port: int = setting(8080, parse_port, "Public listen port (`--port`).")
    admin_port: int | None = setting(
        None,
        parse_port,
        "Admin port for `/metrics`, `/livez`, `/readyz`; unset serves `/metrics` nowhere.",
    )
    admin_host: str | None = setting(None, str, "Admin listen address.", shown="same as host")
    region: str = setting(
        "local", parse_region, "This deployment's region name, returned as `region`."
    )
    country_header: str | None = setting(
        None,
        parse_header_name,
        "Trusted header set by the load balancer with the caller's ISO country (e.g. "
        "`CloudFront-Viewer-Country`). Unset: only the body's `country` hint is used.",
    )
    client_ip_header: str | None = setting(
        None,
        parse_header_name,
        "Header carrying the caller IP for per-IP rate limits (e.g. `X-Forwarded-For`); unset "
        "uses the TCP peer.",
    )
    trusted_hops: int = setting(
        1,
        parse_positive_int,
        "With an `X-Forwarded-For`-style header: how many proxies append to it; the caller IP "
        "is the entry this many places from the right.",
    )
    log_level: str = setting(
        "info", parse_choice(LOG_LEVELS), "`debug`, `info`, `warning` or `error`."
    )
    log_format: str = setting(
        "auto",
        parse_choice(LOG_FORMATS),
        "`json`, `text`, or `auto` (text on a TTY, JSON otherwise).",
    )
    workers: int = setting(
        1, parse_positive_int, "Worker processes (a supervisor forwards signals to them)."
    )
    worker_class: str = setting("uvloop", parse_choice(WORKER_CLASSES), "`uvloop` or `asyncio`.")
    graceful_timeout: float = setting(
        10.0, parse_nonneg_float, "Seconds in-flight requests may take to finish after SIGTERM."
    )
    shutdown_delay: float = setting(
        0.0,
        parse_nonneg_float,
        "Seconds to keep serving (with `/readyz` at 503) after SIGTERM before closing the "
        "listeners; for load balancers without a preStop hook.",
    )
    keep_alive_timeout: float = setting(
        5.0, parse_positive_float, "Idle keep-alive connection timeout (s)."
    )
    max_body_bytes: int = setting(
        4096, parse_positive_int, "Largest accepted request body (413 above)."
    )
    body_timeout: float = setting(
        5.0, parse_positive_float, "Total seconds to receive a request body (408 after)."
    )
    max_header_bytes: int = setting(
        16384, parse_positive_int, "Largest accepted request head (431 above)."
    )
    reload_interval: float = setting(
        5.0,
        parse_nonneg_float,
        "Seconds between checks of the config directory for changes; 0 disables reload.",
    )
    jwks_refresh: float = setting(300.0, parse_positive_float, "Seconds between JWKS refreshes.")
    jwks_max_stale: float = setting(
        86400.0,
        parse_positive_float,
        "Seconds fetched JWKS keys stay usable while the identity provider is unreachable.",
    )
    http_timeout: float = setting(
        5.0, parse_positive_float, "Timeout (s) of every outgoing HTTP call (JWKS)."
    )
    redis_url: Secret | None = setting(
        None,
        Secret,
        "Unset: in-memory state. `redis://`, `rediss://`, or "
        "`redis+sentinel://h1:p1,h2:p2/<service>` ([docs/redis.md](docs/redis.md)).",
        secret=True,
    )
    redis_read_url: Secret | None = setting(
        None,
        Secret,
        "Optional local read replica (cross-region primary/replica topology).",
        secret=True,
    )
    redis_password: Secret | None = setting(
        None, Secret, "Redis password (or `TOKENSVC_REDIS_PASSWORD_FILE`).", secret=True, file=True
    )
    redis_sentinel_password: Secret | None = setting(
        None,
        Secret,
        "Sentinel password (or `TOKENSVC_REDIS_SENTINEL_PASSWORD_FILE`).",
        secret=True,
        file=True,
    )
    redis_budget_ms: float = setting(
        20.0,
        parse_positive_float,
        "Longest a token request waits on Redis; past it the request proceeds without it.",
    )
    redis_refresh: float = setting(
        2.0,
        parse_positive_float,
        "Seconds between background refreshes of the drains/blocks snapshot.",
    )
    rate_sync_ms: float = setting(
        100.0,
        parse_positive_float,
        "How often a pod sends its rate-limit counts to Redis (one round trip for all); the "
        "cross-pod over-admission bound grows with it.",
    )
    fingerprint_key: Secret | None = setting(
        None,
        Secret,
        "Key of the identity fingerprints in logs (or `TOKENSVC_FINGERPRINT_KEY_FILE`); set it "
        "to correlate one caller across pods.",
        shown="random per process",
        secret=True,
        file=True,
    )
    allow_dev: bool = setting(
        False,
        parse_bool,
        "Serve `dev: true` clients (published secrets) on a non-loopback address. Off: such a "
        "config is refused unless the service listens on loopback only.",
    )
    allow_http2: bool = setting(
        False,
        parse_bool,
        "Accept HTTP/2 (prior knowledge or an `h2c` upgrade) on the cleartext port. Off: 505, "
        "since behind a proxy that forwards `Upgrade` a caller could write its own "
        "forwarding and country headers on every stream.",
    )
    ops_config: Path | None = setting(
        None, Path, "Ops tooling: YAML file listing every region's Redis (`regions: {name: url}`)."
    )
    status_feed_config: Path | None = setting(
        None,
        Path,
        "Status-feed file: when set, the pods drain edges automatically, as short leases, while "
        "Twilio's status page reports them down ([docs/status-feed.md](docs/status-feed.md)).",
    )
    status_feed_webhook_secret: Secret | None = setting(
        None,
        parse_webhook_secret,
        "Enables `POST /statusfeed/webhook/<secret>` on the admin port (or the secret in an "
        "`X-Tokensvc-Webhook-Secret` header): a Statuspage push only polls the feed sooner. "
        "At least 16 of `[A-Za-z0-9_-]` (or `TOKENSVC_STATUS_FEED_WEBHOOK_SECRET_FILE`).",
        secret=True,
        file=True,
    )
    twilio_verify: str = setting(
        "warn",
        parse_choice(TWILIO_VERIFY_MODES),
        "Read-only check of every client's Twilio API keys, TwiML App and push credentials: "
        "`off` | `warn` (report only) | `enforce` (signing skips a key Twilio rejected; a client "
        "whose every key is rejected answers 503 `not_ready`).",
    )
    twilio_verify_interval: float = setting(
        900.0,
        parse_positive_float,
        "Seconds between verification rounds (jittered +-20 %); also run at start-up and after "
        "each client reload.",
    )
    twilio_api_url_us1: str | None = setting(
        None,
        parse_base_url,
        "Base URL of Twilio's api host for home region us1 (egress proxy, tests); "
        "`http://` only for loopback.",
        shown="Twilio's host",
    )
    twilio_api_url_ie1: str | None = setting(
        None,
        parse_base_url,
        "Base URL of Twilio's api host for home region ie1 (egress proxy, tests); "
        "`http://` only for loopback.",
        shown="Twilio's host",
    )
    twilio_api_url_au1: str | None = setting(
        None,
        parse_base_url,
        "Base URL of Twilio's api host for home region au1 (egress proxy, tests); "
        "`http://` only for loopback.",
        shown="Twilio's host",
    )
    twilio_notify_url_us1: str | None = setting(
        None,
        parse_base_url,
        "Base URL of Twilio's notify host for home region us1 (egress proxy, tests); "
        "`http://` only for loopback.",
        shown="Twilio's host",
    )
    twilio_notify_url_ie1: str | None = setting(
        None,
        parse_base_url,
        "Base URL of Twilio's notify host for home region ie1 (egress proxy, tests); "
        "`http://` only for loopback.",
        shown="Twilio's host",
    )
    twilio_notify_url_au1: str | None = setting(
        None,
        parse_base_url,
        "Base URL of Twilio's notify host for home region au1 (egress proxy, tests); "
        "`http://` only for loopback.",
        shown="Twilio's host",
    )

    @property
    def loopback_only(self) -> bool:
        hosts = {self.host, self.admin_host or self.host}
        return hosts <= {"127.0.0.1", "localhost", "::1"}

    def problems(self) -> list[Problem]:
        """Problems between settings (each one alone was valid)."""
        problems = []
        if not 0 < self.port < 65536:
            problems.append(Problem("settings", "port", f"must be 1..65535, got {self.port}"))
        if (
            self.admin_port is not None
            and self.admin_port == self.port
            and ((self.admin_host or self.host) == self.host)
        ):
            problems.append(
                Problem("environment", "TOKENSVC_ADMIN_PORT", "must differ from the public port")
            )
        return problems

    def check(self) -> None:
        """Raise ``ConfigError`` with every problem between settings."""
        if problems := self.problems():
            raise ConfigError(problems)

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> tuple[Settings, list[Problem]]:
        """Settings from ``environ`` and the problems of its variables (bad values, unknown
        names); a bad variable keeps its default so that the rest (the client directory, say)
        can still be checked. The checks between settings (``problems()``) are left to the
        caller, which may apply command-line overrides first."""
        problems: list[Problem] = []
        values: dict[str, Any] = {}
        for var in ENV_VARS:
            try:
                value = _read(var, environ)
            except _Bad as bad:
                problems.append(bad.problem)
                continue
            if value is not None:
                values[var.field] = value
        problems += unknown_variables(environ)
        return cls(**values), problems

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (default: the process environment); ``ConfigError`` with
        every problem."""
        settings, problems = cls.load(os.environ if environ is None else environ)
        problems += settings.problems()
        if problems:
            raise ConfigError(problems)
        return settings


class _Bad(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _read(var: Var, environ: Mapping[str, str]) -> Any:
    """The parsed value of one variable, None when unset."""
    raw = environ.get(var.name)
    if raw:
        try:
            return var.parse(raw)
        except ValueError as exc:
            raise _Bad(Problem("environment", var.name, str(exc))) from None
    path = environ.get(var.file_name) if var.file_name else None
    if var.file_name and path:
        try:
            secret = read_secret_file(path)
        except OSError as exc:
            raise _Bad(
                Problem("environment", var.file_name, f"cannot read file: {exc.strerror}")
            ) from None
        try:
            return var.parse(secret.reveal())
        except ValueError as exc:  # the message may quote the value: keep it out
            raise _Bad(Problem("environment", var.file_name, "invalid value in the file")) from exc
    return None


def _declarations() -> Iterator[Var]:
    for f in fields(Settings):
        spec = f.metadata.get(_DECLARATION)
        if not isinstance(spec, _Spec):
            raise TypeError(f"Settings.{f.name} is not declared with setting()")
        yield Var(
            name=spec.env or PREFIX + f.name.upper(),
            field=f.name,
            parse=spec.parse,
            default=f.default,
            help=spec.help,
            shown_default=spec.shown if spec.shown is not None else _shown(f.default),
            secret=spec.secret,
            file=spec.file,
        )


#: Every setting, in declaration (README) order.
ENV_VARS: tuple[Var, ...] = tuple(_declarations())

#: Variables the service reads that are not its settings: (name, default, meaning).
FOREIGN_VARS: tuple[tuple[str, str, str], ...] = (
    (
        "PROMETHEUS_MULTIPROC_DIR",
        "unset",
        "prometheus-client's own variable; set automatically with several workers so `/metrics` "
        "aggregates them.",
    ),
)

# -- unknown names -------------------------------------------------------------------------------

_SERVICE_LINK = re.compile(r"_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$")


def known_names() -> frozenset[str]:
    """Every ``TOKENSVC_*`` name the service reads (``_FILE`` variants included)."""
    names = {v.name for v in ENV_VARS} | {v.file_name for v in ENV_VARS if v.file_name}
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str]) -> list[Problem]:
    """A problem for each ``TOKENSVC_*`` variable no setting declares, naming the closest
    known one (a typo would otherwise be silently ignored)."""
    known = known_names()
    problems = []
    # Compared without the shared prefix, which would make every name look close.
    suffixes = {name.removeprefix(PREFIX): name for name in known}
    for name in sorted(n for n in environ if n.startswith(PREFIX) and n not in known):
        close = difflib.get_close_matches(
            name.removeprefix(PREFIX), sorted(suffixes), n=1, cutoff=0.6
        )
        if _SERVICE_LINK.search(name) or environ[name].startswith(("tcp://", "udp://")):
            message = (
                "unknown setting, probably a Kubernetes service link: set "
                "enableServiceLinks: false on the pod"
            )
        elif close:
            message = f"unknown setting; did you mean {suffixes[close[0]]}?"
        else:
            message = "unknown setting (see `tokensvc settings --markdown`)"
        problems.append(Problem("environment", name, message))
    return problems


# -- derived views ---------------------------------------------------------------------------


def markdown_table() -> str:
    """The README's settings table, one row per declaration (then the foreign variables)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{v.name}` | {v.shown_default} | {v.help} |" for v in ENV_VARS]
    rows += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in FOREIGN_VARS]
    return "\n".join(rows) + "\n"


def describe(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """The effective values as ``NAME=value  # source`` lines, secrets as ``<SECRET>``."""
    lines = []
    for var in ENV_VARS:
        value = getattr(settings, var.field)
        if value is None:
            shown = ""
        elif var.secret:
            shown = "<SECRET>"
        else:
            shown = _plain(value)
        if environ.get(var.name):
            source = "environment"
        elif var.file_name and environ.get(var.file_name):
            source = f"file from {var.file_name}"
        elif value is None:
            source = "unset"
        else:
            source = "default"
        lines.append(f"{var.name}={shown}  # {source}")
    return lines


# -- prometheus-client's variable ----------------------------------------------------------------


def prometheus_multiproc_dir(assign: str | None = None) -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR``: not our setting but prometheus-client's own, which it reads
    at import; the supervisor sets it (``assign``) so that forked workers and ``/metrics``
    share one directory. Returns the value in force. The one place that touches it."""
    if assign is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = assign
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
