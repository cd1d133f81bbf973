"""Minted tokens match the format twilio-python produces, with tokensvc's own rules."""

from __future__ import annotations

import time
import warnings
from typing import Any
from unittest import mock

import jwt
import jwt.warnings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from support import ACCOUNT_SID, API_KEY_SECRET, API_KEY_SID, APP_SID
from tokensvc.clients import ApiKey, PushCredentials, TwilioConfig
from tokensvc.errors import InvalidRequest
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS, Minter, VoiceTokenBuilder
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


SIDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
SECRETS = st.one_of(
    st.text(min_size=32, max_size=64),  # the specialised builder signs
    st.text(max_size=31),  # shorter than SHA-256: twilio-python signs (pyjwt warns)
    st.just("-----BEGIN PUBLIC KEY-----" + "A" * 40),  # refused by pyjwt: so by the minter
)


@settings(max_examples=300, deadline=None)
@given(
    identity=st.text(max_size=60),
    account_sid=SIDS,
    key_sid=SIDS.filter(bool),
    secret=SECRETS,
    app_sid=st.one_of(st.none(), SIDS),
    incoming=st.booleans(),
    region=st.sampled_from(["us1", "ie1", "au1", "jp1", "de1", "br1", "sg1", "in1", "\u00e91"]),
    push=st.tuples(*[st.one_of(st.none(), SIDS)] * 3),
    platform=st.sampled_from(PLATFORMS),
    apns=st.sampled_from([None, *APNS_ENVIRONMENTS]),
    ttl=st.integers(1, 2 * 86400),
    clock=st.floats(1e9, 4e9),
)
def test_minted_token_is_byte_for_byte_twilios(
    identity: str,
    account_sid: str,
    key_sid: str,
    secret: str,
    app_sid: str | None,
    incoming: bool,
    region: str,
    push: tuple[str | None, str | None, str | None],
    platform: str,
    apns: str | None,
    ttl: int,
    clock: float,
) -> None:
    """For the same inputs and clock, Minter.mint gives exactly the bytes of twilio-python's
    AccessToken(...).to_jwt() (with the VoiceGrant and options tokensvc always passes), or
    the same refusal."""
    key = ApiKey(key_sid, Secret(secret))
    config = TwilioConfig(account_sid, (key,), app_sid, incoming, region, PushCredentials(*push))
    minter = Minter(config, ttl)
    lifetime = min(ttl, 86400)
    expires_at = int(clock) + lifetime
    push_sid = minter.push_credential(platform, apns)

    def twilios() -> object:
        token = AccessToken(
            account_sid,
            key_sid,
            secret,
            identity=identity,
            ttl=lifetime,
            valid_until=expires_at,
            nbf=None,
            region=None if region == "us1" else region,
        )
        token.add_grant(
            VoiceGrant(
                outgoing_application_sid=app_sid,
                incoming_allow=incoming or None,
                push_credential_sid=push_sid,
            )
        )
        try:
            return token.to_jwt()
        except (jwt.InvalidKeyError, ValueError) as exc:  # no key, or one pyjwt refuses
            return type(exc)

    def ours() -> object:
        try:
            return minter.mint(identity, platform, apns).token
        except (jwt.InvalidKeyError, ValueError) as exc:  # no key, or one pyjwt refuses
            return type(exc)

    with mock.patch("time.time", return_value=clock), warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        assert twilios() == ours()


def test_builder_signs_a_twilio_length_key_itself() -> None:
    """A 32-character API key secret (Twilio's) is signed by the specialised builder, not by
    twilio-python (so the differential test above compares two implementations)."""
    key = twilio().api_keys[0]
    assert None is not VoiceTokenBuilder(twilio(), key).build("alice", None, 1, 2)
