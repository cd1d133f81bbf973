"""The tuned pyjwt accepts and refuses exactly what stock pyjwt does."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from jwt.types import Options

from support import AUDIENCE, HS_SECRET, ISSUER, assertion
from tokensvc.jwtlib import VERIFIER, MemoizedHMAC, _RegexSegmentJWS

STOCK = jwt.PyJWT()
OPTIONS: Options = {"require": ["exp", "iss", "aud"]}


def outcome(decoder: jwt.PyJWT, token: str) -> object:
    try:
        return decoder.decode(
            token,
            HS_SECRET,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options=OPTIONS,
        )
    except jwt.PyJWTError as exc:
        return type(exc)


def test_verifier_uses_the_regex_segment_check() -> None:
    """VERIFIER's JWS layer is the tuned one on this pyjwt version."""
    assert isinstance(VERIFIER._jws, _RegexSegmentJWS)


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.!+/ ",
        max_size=60,
    )
)
def test_segment_decoding_agrees_with_stock(segment: str) -> None:
    """Any segment is decoded, or refused, exactly as stock pyjwt does."""

    def run(decode: object) -> object:
        try:
            return decode(segment.encode(), "header")  # type: ignore[operator]
        except jwt.DecodeError:
            return "refused"

    assert run(jwt.api_jws.PyJWS._decode_base64url_segment) == run(
        _RegexSegmentJWS._decode_base64url_segment
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t,
        lambda t: t + "=",
        lambda t: t[:-1],
        lambda t: t.replace(".", "!.", 1),
        lambda t: t[:10] + "=" + t[11:],
        lambda t: t + "==",
    ],
)
def test_whole_token_outcome_agrees_with_stock(mutate: object) -> None:
    """Valid and tampered tokens get the same answer from both decoders."""
    token = mutate(assertion("alice"))  # type: ignore[operator]
    assert outcome(STOCK, token) == outcome(VERIFIER, token)


def test_expired_token_still_refused() -> None:
    """The tuned verifier still checks exp."""
    assert jwt.ExpiredSignatureError == outcome(VERIFIER, assertion(exp=int(time.time()) - 3600))


def test_memoized_hmac_still_refuses_asymmetric_keys() -> None:
    """A PEM public key is refused as an HMAC secret, also the second time (from the memo)."""
    pem = (
        b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        b"-----END PUBLIC KEY-----"
    )
    alg = MemoizedHMAC(MemoizedHMAC.SHA256)
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError):
            alg.prepare_key(pem)


# Every algorithm the client schema accepts, with a key of an acceptable size.
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_HMAC = "h" * 64  # 64 bytes: no pyjwt short-key warning even for HS512
SIGNING_KEYS: dict[str, tuple[Any, Any]] = {
    **{alg: (_HMAC, _HMAC) for alg in ("HS256", "HS384", "HS512")},
    **{
        alg: (_RSA, _RSA.public_key())
        for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    },
}
for _alg, _curve in (
    ("ES256", ec.SECP256R1()),
    ("ES384", ec.SECP384R1()),
    ("ES512", ec.SECP521R1()),
):
    _key = ec.generate_private_key(_curve)
    SIGNING_KEYS[_alg] = (_key, _key.public_key())
_ED = ed25519.Ed25519PrivateKey.generate()
SIGNING_KEYS["EdDSA"] = (_ED, _ED.public_key())


def _claims(now: int) -> dict[str, dict[str, Any]]:
    """Each claim rule auth.py relies on, as a payload that exercises it."""
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    return {
        "valid": base,
        "expired": {**base, "exp": now - 120},
        "expired_within_leeway": {**base, "exp": now - 5},
        "no_exp": {k: v for k, v in base.items() if k != "exp"},
        "no_iss": {k: v for k, v in base.items() if k != "iss"},
        "no_aud": {k: v for k, v in base.items() if k != "aud"},
        "wrong_iss": {**base, "iss": "https://evil/"},
        "wrong_aud": {**base, "aud": "other"},
        "aud_list": {**base, "aud": ["other", AUDIENCE]},
        "nbf_future": {**base, "nbf": now + 600},
        "nbf_within_leeway": {**base, "nbf": now + 10},
        "iat_future": {**base, "iat": now + 600},
        "exp_string": {**base, "exp": f" {now + 300} "},
        "exp_garbage": {**base, "exp": "soon"},
        "iat_string": {**base, "iat": str(now)},
        "nbf_string": {**base, "nbf": str(now)},
        "exp_huge": {**base, "exp": 10**400},
        "exp_float": {**base, "exp": now + 300.5},
    }


def service_outcome(decoder: jwt.PyJWT, token: str, alg: str, key: Any) -> object:
    """Decode with the options auth.py uses."""
    try:
        return decoder.decode(
            token,
            key,
            algorithms=[alg],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=30,
            options={"require": ["exp", "iss", "aud"], "verify_signature": True},
        )
    except jwt.PyJWTError as exc:
        return type(exc)


@pytest.mark.parametrize("alg", sorted(SIGNING_KEYS))
@pytest.mark.parametrize("case", sorted(_claims(0)))
def test_every_algorithm_and_claim_rule_agrees_with_stock(alg: str, case: str) -> None:
    """For each algorithm the service accepts and each claim rule it relies on, the tuned
    verifier gives stock pyjwt's answer, for the intact token and a tampered signature."""
    private, public = SIGNING_KEYS[alg]
    good = jwt.encode(_claims(int(time.time()))[case], private, algorithm=alg)
    head, body, sig = good.split(".")
    tampered = f"{head}.{body}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    for token in (good, tampered):
        assert service_outcome(STOCK, token, alg, public) == service_outcome(
            VERIFIER, token, alg, public
        )


def test_pyjwt_reads_a_string_exp_as_a_number() -> None:
    """Both verifiers accept ``"exp": " 1234 "`` (pyjwt calls int() on it): this is why
    auth.py refuses NumericDate claims that are not JSON numbers itself."""
    token = jwt.encode(_claims(int(time.time()))["exp_string"], _HMAC, algorithm="HS256")
    stock, tuned = (service_outcome(d, token, "HS256", _HMAC) for d in (STOCK, VERIFIER))
    assert (dict, dict) == (type(stock), type(tuned))
