"""Redis URLs: ``parse_url`` -> ``Endpoint`` (a parsed URL without secrets), and ``Timeouts``.

URL forms (``TOKENSVC_REDIS_URL``, ``TOKENSVC_REDIS_READ_URL``, ops config regions)::

    redis://[[user]:password@]host[:6379][/db]
    rediss://...                                           TLS
    redis+sentinel://[[user]:password@]h1[:26379],h2:p2,h3:p3/<service>[/db]
    rediss+sentinel://...                                  TLS to sentinels and nodes
    ?ssl_ca_certs=/path&ssl_certfile=/path&ssl_keyfile=/path&ssl_cert_reqs=required|optional|none
    &ssl_check_hostname=true|false                          TLS options (files are mounted)

A malformed URL (no host, no Sentinel service name, unknown option) is a ConfigError naming
its source, raised at construction, never a failure at first use. Messages never repeat the
URL (it may hold a password).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from tokensvc.errors import ConfigError, Problem

#: The URL schemes of a Redis backend: scheme -> (sentinel, tls).
SCHEMES = {
    "redis": (False, False),
    "rediss": (False, True),
    "redis+sentinel": (True, False),
    "rediss+sentinel": (True, True),
}
_TLS_OPTIONS = {
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Small on purpose: redis-py's defaults cost ~59 s per call on a dead server."""

    connect: float = 0.25  # TCP (and TLS) connect, data nodes
    socket: float = 0.5  # each read/write on an established connection
    sentinel: float = 0.25  # connect and read, each sentinel
    call: float = 1.0  # outer deadline of every Store call, whatever happens inside


@dataclass(frozen=True)
class Endpoint:
    """A parsed Redis URL, without secrets in its repr."""

    sentinel: bool
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    service: str | None
    db: int
    username: str | None
    tls_options: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        scheme = ("rediss" if self.tls else "redis") + ("+sentinel" if self.sentinel else "")
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"{scheme}://{hosts}/{self.service + '/' if self.service else ''}{self.db}"


def parse_url(url: str, *, source: str = "TOKENSVC_REDIS_URL") -> tuple[Endpoint, str | None]:
    """Parse a Redis URL into (Endpoint, password from the URL). Raises ConfigError.

    Messages never repeat the URL (it may hold a password)."""

    def bad(message: str) -> ConfigError:
        return ConfigError([Problem("environment", source, message)])

    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise bad("must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://")
    sentinel, tls = SCHEMES[scheme.lower()]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        hostlist, userinfo = netloc, ""
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    default_port = 26379 if sentinel else 6379
    hosts = tuple(_parse_host(h, default_port, bad) for h in hostlist.split(",") if h)
    if not hosts:
        raise bad("no host given")
    if not sentinel and len(hosts) > 1:
        raise bad("several hosts need redis+sentinel://")
    parts = [p for p in path.split("/") if p]
    service: str | None = None
    if sentinel:
        if not parts:
            raise bad(
                "a Sentinel URL needs the service name: redis+sentinel://h1:p1,h2:p2/<service>"
            )
        service, parts = unquote(parts[0]), parts[1:]
    if len(parts) > 1:
        raise bad("unexpected path after the database number")
    try:
        db = int(parts[0]) if parts else 0
    except ValueError:
        raise bad("the database must be a number") from None
    if db < 0:
        raise bad("the database must be >= 0")
    options: list[tuple[str, Any]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _TLS_OPTIONS:
            raise bad(f"unknown option {key!r} (known: {', '.join(sorted(_TLS_OPTIONS))})")
        if not tls:
            raise bad(f"option {key!r} needs a rediss:// URL")
        if key == "ssl_check_hostname":
            if value.lower() not in ("true", "false"):
                raise bad("ssl_check_hostname must be true or false")
            options.append((key, value.lower() == "true"))
        elif key == "ssl_cert_reqs":
            if value not in ("required", "optional", "none"):
                raise bad("ssl_cert_reqs must be required, optional or none")
            options.append((key, value))
        else:
            options.append((key, value))
    return Endpoint(sentinel, tls, hosts, service, db, username, tuple(options)), password


def _parse_host(raw: str, default_port: int, bad: Callable[[str], ConfigError]) -> tuple[str, int]:
    if raw.startswith("["):
        host, _, port_part = raw[1:].partition("]")
        port_text = port_part[1:] if port_part.startswith(":") else ""
    else:
        host, _, port_text = raw.partition(":")
    if not host:
        raise bad("empty host name")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad("port must be 1..65535")
    return host, int(port_text)
