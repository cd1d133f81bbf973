"""Redis URL parsing (tokensvc.store.urls): forms, TLS options, errors without secrets."""

from __future__ import annotations

import pytest

from tokensvc.errors import ConfigError
from tokensvc.store.redis import RedisStore
from tokensvc.store.urls import parse_url


@pytest.mark.parametrize(
    ("url", "sentinel", "hosts", "service", "db"),
    [
        ("redis://h", False, (("h", 6379),), None, 0),
        ("rediss://:pw@h:6380/2", False, (("h", 6380),), None, 2),
        ("redis+sentinel://a:1,b,c:3/svc", True, (("a", 1), ("b", 26379), ("c", 3)), "svc", 0),
        ("redis+sentinel://u:p@[::1]:5/svc/4", True, (("::1", 5),), "svc", 4),
    ],
)
def test_parse_url_forms(
    url: str, sentinel: bool, hosts: tuple[tuple[str, int], ...], service: str | None, db: int
) -> None:
    """Each documented URL form parses to its hosts, Sentinel service and database."""
    endpoint, _ = parse_url(url)
    assert (sentinel, hosts, service, db) == (
        endpoint.sentinel,
        endpoint.hosts,
        endpoint.service,
        endpoint.db,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://h",
        "redis+sentinel://a:1,b:2",
        "redis://a,b",
        "redis://h:99999",
        "redis://:hunter2@h/x",
        "redis://h?ssl_ca_certs=/x",
        "rediss://h?bogus=1",
    ],
)
def test_parse_url_rejects_bad_urls_without_echoing_them(url: str) -> None:
    """A malformed URL is a ConfigError at construction; the message never contains the URL
    (nor its password)."""
    with pytest.raises(ConfigError) as info:
        RedisStore(url)
    assert "hunter2" not in str(info.value) and url not in str(info.value)


def test_parse_url_takes_password_from_userinfo() -> None:
    """The URL's password is returned apart, and the endpoint's repr has none."""
    endpoint, password = parse_url("redis://user:s%40cret@h:1/0")
    assert ("s@cret", "user") == (password, endpoint.username)
    assert "cret" not in repr(endpoint)


def test_tls_options_apply_to_rediss() -> None:
    """rediss:// query options become TLS settings."""
    endpoint, _ = parse_url("rediss://h?ssl_ca_certs=/ca.pem&ssl_check_hostname=false")
    assert (True, (("ssl_ca_certs", "/ca.pem"), ("ssl_check_hostname", False))) == (
        endpoint.tls,
        endpoint.tls_options,
    )
