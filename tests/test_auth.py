"""Caller verification: only a properly signed, unexpired token for this client passes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support import AUDIENCE, HS_SECRET, ISSUER, assertion
from tokensvc.auth import Authenticator
from tokensvc.clients import AuthConfig
from tokensvc.errors import Unauthenticated
from tokensvc.jwks import JwksSource
from tokensvc.secret import Secret

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)

HS = AuthConfig(
    type="jwt",
    algorithms=("HS256",),
    hmac_secret=Secret(HS_SECRET),
    issuer=ISSUER,
    audience=AUDIENCE,
)
RS = AuthConfig(
    type="jwt",
    algorithms=("RS256",),
    public_keys=(RSA_PUBLIC_PEM,),
    issuer=ISSUER,
    audience=AUDIENCE,
)


def rs_token(
    sub: str = "alice", key: Any = RSA_KEY, headers: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


def verify(
    config: AuthConfig,
    token: str | None,
    body_identity: str | None = None,
    jwks: JwksSource | None = None,
) -> str:
    auth = Authenticator.build(config, jwks)
    header = None if token is None else f"Bearer {token}"
    return asyncio.run(auth.verify(header, body_identity))


def reason(config: AuthConfig, token: str | None, jwks: JwksSource | None = None) -> str:
    with pytest.raises(Unauthenticated) as info:
        verify(config, token, jwks=jwks)
    return info.value.reason


def test_valid_hs256_token_gives_its_subject() -> None:
    """A correctly signed HS256 token yields the identity claim."""
    assert "alice" == verify(HS, assertion("alice"))


def test_valid_rs256_token_with_pem_key() -> None:
    """An RS256 token verified with a configured PEM public key yields its subject."""
    assert "bob" == verify(RS, rs_token("bob"))


def test_missing_credential() -> None:
    """No Authorization header is 401 (missing)."""
    assert "missing" == reason(HS, None)


def test_non_bearer_scheme() -> None:
    """A Basic credential is refused as malformed."""
    with pytest.raises(Unauthenticated):
        asyncio.run(Authenticator.build(HS).verify("Basic abc", None))


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg: none) is refused."""
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": int(time.time()) + 60},
        None,  # type: ignore[arg-type] # alg none: no key
        algorithm="none",
    )
    assert "algorithm" == reason(HS, token)


def test_hs_rs_confusion_is_refused() -> None:
    """An HS256 token signed with the RSA public key (as a secret) is refused for an RS client."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = base64.urlsafe_b64encode(
        json.dumps(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": int(time.time()) + 60}
        ).encode()
    )
    import hashlib
    import hmac

    signing_input = header.rstrip(b"=") + b"." + body.rstrip(b"=")
    sig = hmac.new(RSA_PUBLIC_PEM.encode(), signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64.urlsafe_b64encode(sig).rstrip(b"=")).decode()
    assert "algorithm" == reason(RS, token)


def test_expired_token() -> None:
    """A token expired beyond the leeway is refused."""
    assert "expired" == reason(HS, assertion(exp=int(time.time()) - 120))


def test_small_clock_skew_is_tolerated() -> None:
    """A token that expired 5 s ago passes within the 30 s leeway."""
    assert "alice" == verify(HS, assertion(exp=int(time.time()) - 5))


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil/"},
        {"exp": None},
        {"iss": None},
        {"aud": None},
    ],
)
def test_wrong_or_missing_registered_claims(claims: dict[str, Any]) -> None:
    """Wrong audience or issuer, or a missing exp/iss/aud, is refused."""
    assert "claims" == reason(HS, assertion(**claims))


def test_bad_signature() -> None:
    """A token signed with another secret is refused."""
    assert "signature" == reason(HS, assertion(secret="another-secret-0123456789abcdef-x"))


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "x5c"])
def test_key_location_headers_are_refused(header: str) -> None:
    """jku/x5u/jwk/x5c headers (attacker-chosen key locations) are refused."""
    token = assertion(headers={header: "https://evil.example/keys"})
    assert "header" == reason(HS, token)


def test_missing_identity_claim() -> None:
    """A valid token without the identity claim is refused."""
    no_sub: dict[str, Any] = {"sub": None}  # None deletes the claim
    assert "identity" == reason(HS, assertion(**no_sub))


def test_garbage_token() -> None:
    """A token that is not a JWT is refused as malformed."""
    assert "malformed" == reason(HS, "not-a-jwt")


def test_api_key_client_takes_identity_from_body() -> None:
    """An api_key client accepts its key and the identity named in the body."""
    config = AuthConfig(type="api_key", api_keys=(Secret("k1" * 20), Secret("k2" * 20)))
    assert "carol" == verify(config, "k2" * 20, "carol")
    with pytest.raises(Unauthenticated):
        verify(config, "wrong", "carol")


def test_es256_key_cannot_verify_rs256_pinned_client() -> None:
    """A token signed with an EC key and alg ES256 is refused by an RS256-pinned client."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": int(time.time()) + 60},
        ec_key,
        algorithm="ES256",
    )
    assert "algorithm" == reason(RS, token)


WEAK_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
WEAK_PUBLIC_PEM = (
    WEAK_RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def test_pem_rsa_key_under_2048_bits_is_refused() -> None:
    """A token signed by a configured 1024-bit RSA key is refused: the key is not used."""
    weak = AuthConfig(
        type="jwt",
        algorithms=("RS256",),
        public_keys=(WEAK_PUBLIC_PEM,),
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):  # pyjwt only warns when signing
        token = rs_token(key=WEAK_RSA_KEY)
    assert "unknown_key" == reason(weak, token)


def test_weak_pem_key_does_not_disable_a_strong_one() -> None:
    """Beside a refused 1024-bit key, the client's 2048-bit key still verifies."""
    both = AuthConfig(
        type="jwt",
        algorithms=("RS256",),
        public_keys=(WEAK_PUBLIC_PEM, RSA_PUBLIC_PEM),
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    assert "bob" == verify(both, rs_token("bob"))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_numeric_date_given_as_a_string_is_refused(claim: str) -> None:
    """exp/nbf/iat must be JSON numbers; a string pyjwt would read with int() is refused."""
    now = int(time.time())
    claims: dict[str, Any] = {"exp": f" {now + 300} ", "nbf": str(now - 10), "iat": str(now)}
    assert "claims" == reason(HS, assertion(**{claim: claims[claim]}))


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_numeric_date_given_as_a_boolean_is_refused(claim: str) -> None:
    """A JSON true is not a NumericDate (Python would count it as 1)."""
    claims: dict[str, Any] = {claim: True}
    assert reason(HS, assertion(**claims)) in ("claims", "expired")


def test_fractional_numeric_date_is_accepted() -> None:
    """NumericDate may carry a fraction (RFC 7519 §2)."""
    assert "alice" == verify(HS, assertion(exp=time.time() + 300.5))


LIMITED = AuthConfig(
    type="jwt",
    algorithms=("HS256",),
    hmac_secret=Secret(HS_SECRET),
    issuer=ISSUER,
    audience=AUDIENCE,
    max_token_lifetime=600,
)


def test_token_within_the_lifetime_bound_passes() -> None:
    """exp - iat = 300 s under a 600 s bound is accepted."""
    assert "alice" == verify(LIMITED, assertion())


def test_token_issued_for_longer_than_the_bound_is_refused() -> None:
    """exp - iat over max_token_lifetime is refused with reason lifetime."""
    now = int(time.time())
    assert "lifetime" == reason(LIMITED, assertion(iat=now - 3000, exp=now + 60))


def test_token_valid_further_ahead_than_the_bound_is_refused() -> None:
    """Without iat, exp - now over max_token_lifetime (+ leeway) is refused."""
    now = int(time.time())
    assert "lifetime" == reason(LIMITED, assertion(iat=None, exp=now + 7200))


def test_huge_exp_is_refused_by_the_lifetime_bound() -> None:
    """An exp too large for a float is a lifetime refusal, not an overflow."""
    assert "lifetime" == reason(LIMITED, assertion(exp=10**400))


def test_lifetime_bound_is_off_by_default() -> None:
    """A client without max_token_lifetime accepts a day-long token."""
    now = int(time.time())
    assert "alice" == verify(HS, assertion(iat=now, exp=now + 86400))
