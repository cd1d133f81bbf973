"""Start-up checks of ``tokensvc serve``: every input problem at once, before binding or forking.

``check_inputs(environ, **overrides)`` returns the settings and every problem found in, in turn:
the ``TOKENSVC_*`` variables (bad values, unknown names), the command-line overrides, both Redis
URLs (parsed as the store will parse them, with the TLS files they name readable), the client
files, the dev-client rule, and the status-feed file (``TOKENSVC_STATUS_FEED_CONFIG``). The
caller prints them together and exits 1 when there is any; nothing here binds a socket,
forks, or connects anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tokensvc.clients import scan_clients
from tokensvc.clientset import dev_problems
from tokensvc.errors import ConfigError, Problem
from tokensvc.secret import Secret
from tokensvc.settings import Settings
from tokensvc.store.urls import parse_url

#: URL query options that name a file the TLS client reads.
TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def check_inputs(environ: Mapping[str, str], **overrides: Any) -> tuple[Settings, list[Problem]]:
    """Settings (with ``overrides`` applied, None meaning "not given") and every problem."""
    settings, problems = Settings.load(environ)
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    problems += settings.problems()
    problems += redis_problems(settings)
    result = scan_clients(settings.config_dir, environ)
    problems += result.problems + dev_problems(settings, result.clients)
    problems += status_feed_problems(settings)
    return settings, problems


def status_feed_problems(settings: Settings) -> list[Problem]:
    """Problems of the status-feed file (each naming the file and the field), when set."""
    if settings.status_feed_config is None:
        return []
    from tokensvc.statusfeed.config import load_config

    try:
        load_config(settings.status_feed_config)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def redis_problems(settings: Settings) -> list[Problem]:
    """Problems of ``TOKENSVC_REDIS_URL`` and ``TOKENSVC_REDIS_READ_URL``, when set."""
    problems: list[Problem] = []
    urls: tuple[tuple[str, Secret | None], ...] = (
        ("TOKENSVC_REDIS_URL", settings.redis_url),
        ("TOKENSVC_REDIS_READ_URL", settings.redis_read_url),
    )
    for name, url in urls:
        if url is None:
            continue
        try:
            endpoint, _ = parse_url(url.reveal(), source=name)
        except ConfigError as exc:
            problems += exc.problems
            continue
        for option, value in endpoint.tls_options:
            if option in TLS_FILE_OPTIONS:
                problem = _unreadable(str(value))
                if problem:
                    problems.append(Problem("environment", name, f"{option}: {problem}"))
    return problems


def _unreadable(path: str) -> str | None:
    try:
        with Path(path).open("rb"):
            return None
    except OSError as exc:
        return f"cannot read file {path}: {exc.strerror}"
