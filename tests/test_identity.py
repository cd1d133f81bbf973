"""Caller identities become valid, injective Twilio identities."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokensvc.errors import Forbidden
from tokensvc.identity import (
    decode_identity,
    encode_identity,
    is_valid_twilio_identity,
    to_twilio_identity,
)


def test_plain_alphanumeric_identity_is_unchanged() -> None:
    """A subject that is already valid is used as is."""
    assert "alice42" == to_twilio_identity("alice42", "escape")


def test_auth0_style_subject_is_escaped() -> None:
    """auth0|12345 becomes auth0_7c12345 (| is byte 0x7c)."""
    assert "auth0_7c12345" == to_twilio_identity("auth0|12345", "escape")


def test_underscore_is_doubled_so_escapes_cannot_collide() -> None:
    """A literal 'auth0_7c12345' subject does not collide with the escaped 'auth0|12345'."""
    assert to_twilio_identity("auth0_7c12345", "escape") != to_twilio_identity(
        "auth0|12345", "escape"
    )


@given(st.text(min_size=1, max_size=30))
def test_escape_round_trips(raw: str) -> None:
    """Decoding an encoded identity gives the original back (so encoding is injective)."""
    try:
        encoded = encode_identity(raw)
    except UnicodeEncodeError:
        return
    assert raw == decode_identity(encoded)


@given(st.text(max_size=60))
def test_result_is_always_a_valid_twilio_identity_or_refused(raw: str) -> None:
    """Whatever the claim, the result is a valid Twilio identity, or Forbidden."""
    try:
        identity = to_twilio_identity(raw, "escape")
    except Forbidden:
        return
    assert is_valid_twilio_identity(identity)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_different_callers_never_share_an_identity(a: str, b: str) -> None:
    """Two different subjects never map to the same Twilio identity."""
    try:
        ia, ib = to_twilio_identity(a, "escape"), to_twilio_identity(b, "escape")
    except Forbidden:
        return
    assert (a == b) == (ia == ib)


def test_strict_refuses_invalid_identity() -> None:
    """identity_encoding strict refuses a subject outside Twilio's alphabet."""
    with pytest.raises(Forbidden):
        to_twilio_identity("user@example.com", "strict")


def test_too_long_after_encoding_is_refused_not_truncated() -> None:
    """An identity over 121 characters once encoded is refused."""
    with pytest.raises(Forbidden):
        to_twilio_identity("|" * 50, "escape")


def test_lone_surrogate_is_refused() -> None:
    """A claim with a lone surrogate (invalid UTF-8) is refused, not a crash."""
    with pytest.raises(Forbidden):
        to_twilio_identity("a\ud800", "escape")
