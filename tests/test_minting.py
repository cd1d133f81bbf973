"""Minted tokens match the format twilio-python produces, with tokensvc's own rules."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from support import ACCOUNT_SID, API_KEY_SECRET, API_KEY_SID, APP_SID
from tokensvc.clients import ApiKey, PushCredentials, TwilioConfig
from tokensvc.errors import InvalidRequest
from tokensvc.minting import Minter
from tokensvc.secret import Secret

PUSH = PushCredentials("CR" + "a" * 32, "CR" + "b" * 32, "CR" + "c" * 32)


def twilio(region: str = "us1", keys: int = 1) -> TwilioConfig:
    api_keys = tuple(
        ApiKey(f"SK{i:032x}" if i else API_KEY_SID, Secret(API_KEY_SECRET + str(i)))
        for i in range(keys)
    )
    return TwilioConfig(ACCOUNT_SID, api_keys, APP_SID, True, region, PUSH)


def decode(token: str, secret: str = API_KEY_SECRET + "0") -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": True})
    return header, claims


def test_header_is_twilio_fpa_hs256_without_region_for_us1() -> None:
    """A US1 token has the header twilio-python writes, and no twr."""
    header, _ = decode(Minter(twilio(), 3600).mint("alice").token)
    assert {"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"} == header


def test_non_us1_home_region_adds_twr() -> None:
    """An IE1 client's token carries twr: ie1."""
    header, _ = decode(Minter(twilio("ie1"), 3600).mint("alice").token)
    assert "ie1" == header["twr"]


def test_claims_follow_twilio_access_token_format() -> None:
    """jti, iss, sub, exp and the voice grant are what twilio-python's AccessToken produces."""
    before = int(time.time())
    minted = Minter(twilio(), 600).mint("alice")
    _, claims = decode(minted.token)
    assert claims["iss"] == API_KEY_SID
    assert claims["sub"] == ACCOUNT_SID
    assert claims["jti"].startswith(API_KEY_SID + "-")
    assert before + 600 <= claims["exp"] == minted.expires_at <= int(time.time()) + 600
    assert {
        "identity": "alice",
        "voice": {"incoming": {"allow": True}, "outgoing": {"application_sid": APP_SID}},
    } == (claims["grants"])


def test_nbf_is_omitted_so_a_slow_twilio_clock_accepts_the_token() -> None:
    """No nbf claim: a Twilio server whose clock is behind ours never sees 'not yet valid'."""
    _, claims = decode(Minter(twilio(), 600).mint("alice").token)
    assert "nbf" not in claims


def test_ttl_is_capped_at_twilio_maximum() -> None:
    """A lifetime above 86400 s is capped at 86400 s."""
    minted = Minter(twilio(), 100_000).mint("alice")
    assert 86400 >= minted.expires_at - int(time.time()) >= 86399


def test_first_api_key_signs() -> None:
    """With several API keys (rotation), the first one signs."""
    token = Minter(twilio(keys=2), 600).mint("alice").token
    _, claims = decode(token, API_KEY_SECRET + "0")
    assert API_KEY_SID == claims["iss"]


@pytest.mark.parametrize(
    ("platform", "apns", "expected"),
    [
        ("ios", None, "CR" + "a" * 32),
        ("ios", "production", "CR" + "a" * 32),
        ("ios", "sandbox", "CR" + "b" * 32),
        ("android", None, "CR" + "c" * 32),
        ("browser", None, None),
    ],
)
def test_push_credential_follows_platform_and_apns_environment(
    platform: str, apns: str | None, expected: str | None
) -> None:
    """iOS picks the APNs environment's credential, Android its FCM one, browsers none."""
    _, claims = decode(Minter(twilio(), 600).mint("alice", platform, apns).token)
    assert expected == claims["grants"]["voice"].get("push_credential_sid")


def test_unknown_platform_is_invalid_request() -> None:
    """A platform other than browser/ios/android is refused."""
    with pytest.raises(InvalidRequest):
        Minter(twilio(), 600).mint("alice", "fax")
