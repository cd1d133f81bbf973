"""tokensvc.twilio_hosts: the explicit REST host table and its validated overrides."""

from __future__ import annotations

import pytest

from tokensvc.errors import ConfigError
from tokensvc.settings import Settings
from tokensvc.twilio_hosts import DEFAULT_HOSTS, RegionHosts, parse_base_url
from tokensvc.verification import hosts_from_settings


def test_the_table_names_each_regions_documented_hosts() -> None:
    """us1, ie1 and au1 map to Twilio's 2026 hostnames, never api.{region}.twilio.com."""
    assert {
        "us1": RegionHosts("https://api.twilio.com", "https://notify.twilio.com"),
        "ie1": RegionHosts(
            "https://api.dublin.ie1.twilio.com", "https://notify.dublin.ie1.twilio.com"
        ),
        "au1": RegionHosts(
            "https://api.sydney.au1.twilio.com", "https://notify.sydney.au1.twilio.com"
        ),
    } == dict(DEFAULT_HOSTS)


def test_an_override_replaces_one_region_only() -> None:
    """TOKENSVC_TWILIO_API_URL_IE1 changes the ie1 api host; everything else stays."""
    settings = Settings.from_env({"TOKENSVC_TWILIO_API_URL_IE1": "https://proxy.example.com/"})
    hosts = hosts_from_settings(settings)
    assert (
        RegionHosts("https://proxy.example.com", "https://notify.dublin.ie1.twilio.com"),
        DEFAULT_HOSTS["us1"],
    ) == (hosts["ie1"], hosts["us1"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
        "https://api.example.com:8443",
    ],
)
def test_https_or_loopback_http_is_accepted(url: str) -> None:
    """https:// anywhere, http:// on loopback."""
    assert url == parse_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://proxy.example.com",
        "ftp://x",
        "https://",
        "https://user:pw@api.twilio.com",
        "https://api.twilio.com/v1",
        "https://api.twilio.com?x=1",
        "https://a:99999",
    ],
)
def test_other_base_urls_are_refused(url: str) -> None:
    """Plain http off loopback, paths, queries, credentials and bad ports are refused."""
    with pytest.raises(ValueError):
        parse_base_url(url)


def test_a_bad_override_is_a_config_error_naming_the_variable() -> None:
    """Settings refuse the value, naming the variable."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TOKENSVC_TWILIO_NOTIFY_URL_AU1": "http://notify.example.com"})
    assert ["TOKENSVC_TWILIO_NOTIFY_URL_AU1"] == [p.field for p in caught.value.problems]


def test_verify_mode_defaults_to_warn_and_is_validated() -> None:
    """TOKENSVC_TWILIO_VERIFY is off | warn | enforce, warn by default."""
    assert ("warn", 900.0) == (
        Settings.from_env({}).twilio_verify,
        Settings.from_env({}).twilio_verify_interval,
    )
    with pytest.raises(ConfigError):
        Settings.from_env({"TOKENSVC_TWILIO_VERIFY": "strict"})
