"""The tuned pyjwt accepts and refuses exactly what stock pyjwt does."""

from __future__ import annotations

import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support import AUDIENCE, HS_SECRET, ISSUER, assertion
from tokensvc.jwtlib import VERIFIER, MemoizedHMAC, _RegexSegmentJWS

STOCK = jwt.PyJWT()
OPTIONS = {"require": ["exp", "iss", "aud"]}


def outcome(decoder: jwt.PyJWT, token: str) -> object:
    try:
        return decoder.decode(token, HS_SECRET, algorithms=["HS256"], audience=AUDIENCE,
                              issuer=ISSUER, options=OPTIONS)  # type: ignore[arg-type]
    except jwt.PyJWTError as exc:
        return type(exc)


def test_verifier_uses_the_regex_segment_check() -> None:
    """VERIFIER's JWS layer is the tuned one on this pyjwt version."""
    assert isinstance(VERIFIER._jws, _RegexSegmentJWS)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.!+/ ",
               max_size=60))
def test_segment_decoding_agrees_with_stock(segment: str) -> None:
    """Any segment is decoded, or refused, exactly as stock pyjwt does."""
    def run(decode: object) -> object:
        try:
            return decode(segment.encode(), "header")  # type: ignore[operator]
        except jwt.DecodeError:
            return "refused"

    assert run(jwt.api_jws.PyJWS._decode_base64url_segment) == run(
        _RegexSegmentJWS._decode_base64url_segment)


@pytest.mark.parametrize("mutate", [
    lambda t: t,
    lambda t: t + "=",
    lambda t: t[:-1],
    lambda t: t.replace(".", "!.", 1),
    lambda t: t[:10] + "=" + t[11:],
    lambda t: t + "==",
])
def test_whole_token_outcome_agrees_with_stock(mutate: object) -> None:
    """Valid and tampered tokens get the same answer from both decoders."""
    token = mutate(assertion("alice"))  # type: ignore[operator]
    assert outcome(STOCK, token) == outcome(VERIFIER, token)


def test_expired_token_still_refused() -> None:
    """The tuned verifier still checks exp."""
    assert jwt.ExpiredSignatureError == outcome(VERIFIER, assertion(
        exp=int(time.time()) - 3600))


def test_memoized_hmac_still_refuses_asymmetric_keys() -> None:
    """A PEM public key is refused as an HMAC secret, also the second time (from the memo)."""
    pem = (b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
           b"-----END PUBLIC KEY-----")
    alg = MemoizedHMAC(MemoizedHMAC.SHA256)
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError):
            alg.prepare_key(pem)
