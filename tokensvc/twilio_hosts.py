"""Twilio REST base URLs per home region: an explicit table, overridable per region.

    region   api                                   notify
    us1      https://api.twilio.com                https://notify.twilio.com
    ie1      https://api.dublin.ie1.twilio.com     https://notify.dublin.ie1.twilio.com
    au1      https://api.sydney.au1.twilio.com     https://notify.sydney.au1.twilio.com

Keys, TwiML Apps and push credentials belong to one home region, so every REST call for a
client goes to its home region's hosts. The table is written out rather than derived: the
``api.{region}.twilio.com`` form stopped working on 2026-04-28 and the helper libraries changed
their derivation twice in a year. The edge label in these names does not choose where a request
enters Twilio (its CDN routes by geo-DNS), so there is one host per region and no rotation.

Overrides (tests, egress proxies) are base URLs ``scheme://host[:port]`` with no path, query,
fragment or credentials; ``http://`` only for a loopback host. :func:`parse_base_url` is the one
validator, used by the settings reader.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class RegionHosts:
    """The REST base URLs of one home region (no trailing slash)."""

    api: str
    notify: str


DEFAULT_HOSTS: Mapping[str, RegionHosts] = {
    "us1": RegionHosts("https://api.twilio.com", "https://notify.twilio.com"),
    "ie1": RegionHosts("https://api.dublin.ie1.twilio.com", "https://notify.dublin.ie1.twilio.com"),
    "au1": RegionHosts("https://api.sydney.au1.twilio.com", "https://notify.sydney.au1.twilio.com"),
}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_base_url(raw: str) -> str:
    """A validated base URL without a trailing slash; ValueError says what is wrong."""
    value = raw.strip().rstrip("/")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"not a URL: {raw!r}") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"expected https://host[:port], got {raw!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a base URL must not carry credentials")
    if parts.path or parts.query or parts.fragment:
        raise ValueError(f"expected a base URL without path, query or fragment, got {raw!r}")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(f"http:// is accepted only for a loopback host, got {raw!r}")
    del port
    return value


def region_hosts(
    api: Mapping[str, str | None], notify: Mapping[str, str | None]
) -> dict[str, RegionHosts]:
    """The table with the given per-region overrides (missing or None: the default)."""
    return {
        region: RegionHosts(api.get(region) or default.api, notify.get(region) or default.notify)
        for region, default in DEFAULT_HOSTS.items()
    }
