"""The tuned pyjwt and the HS* fast path accept and refuse exactly what stock pyjwt does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.types import Options

from support import AUDIENCE, HS_SECRET, ISSUER, assertion
from tokensvc import jwtlib
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


def service_outcome(decoder: jwt.PyJWT | None, token: str, alg: str, key: Any) -> object:
    """Decode with the options auth.py uses; ``None``: through ``jwtlib.decode`` (auth.py's)."""
    try:
        if decoder is None:
            return jwtlib.decode(token, key, alg, audience=AUDIENCE, issuer=ISSUER, leeway=30)
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
    hmac_key = public.encode() if isinstance(public, str) else public
    for token in (good, tampered):
        expected = service_outcome(STOCK, token, alg, public)
        assert expected == service_outcome(VERIFIER, token, alg, public)
        assert expected == service_outcome(None, token, alg, hmac_key)


def test_pyjwt_reads_a_string_exp_as_a_number() -> None:
    """Both verifiers accept ``"exp": " 1234 "`` (pyjwt calls int() on it): this is why
    auth.py refuses NumericDate claims that are not JSON numbers itself."""
    token = jwt.encode(_claims(int(time.time()))["exp_string"], _HMAC, algorithm="HS256")
    stock, tuned = (service_outcome(d, token, "HS256", _HMAC) for d in (STOCK, VERIFIER))
    assert (dict, dict) == (type(stock), type(tuned))


# --- the HS* fast path (jwtlib.decode_hmac) against stock pyjwt, over mutations -------------

_HS = ("HS256", "HS384", "HS512")
_KEYS = {"long": b"k" * 64, "short": b"k" * 8, "pem": b"-----BEGIN PUBLIC KEY-----\nMFkw\n"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _noncanonical(segment: str) -> str:
    """The same bytes with unused low bits set in the last character (pyjwt refuses it);
    unchanged when the segment has no unused bits."""
    if len(segment) % 4 in (0, 1):
        return segment
    return segment[:-1] + _B64URL[_B64URL.index(segment[-1]) + 1]


def _sign(
    header: object, claims: object, key: bytes, alg: str, *, noncanonical: bool = False
) -> str:
    """A token with exactly this header and payload JSON (pyjwt's encode would add its own);
    ``noncanonical``: the header segment's last character carries unused bits, signed so."""
    head = _b64(json.dumps(header).encode())
    body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    text = f"{_noncanonical(head) if noncanonical else head}.{_b64(body)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return f"{text}.{_b64(hmac.new(key, text.encode(), digest).digest())}"


def _compare(token: str, key: bytes, alg: str) -> None:
    """jwtlib.decode answers as stock pyjwt does: same claims or the same exception type; and
    the fast path never accepts what stock refuses, nor returns other claims."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        expected = service_outcome(STOCK, token, alg, key)
        actual = service_outcome(None, token, alg, key)
    assert expected == actual
    fast = jwtlib.decode_hmac(token, key, alg, audience=AUDIENCE, issuer=ISSUER, leeway=30)
    assert fast is None or expected == fast


_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)


def _date_value() -> st.SearchStrategy[object]:
    # the clock is read in map(), not in the strategy's bounds (Hypothesis replays choices)
    near = st.integers(min_value=-400, max_value=400).map(lambda d: int(time.time()) + d)
    return st.one_of(
        near,
        near.map(float),
        near.map(lambda n: n + 0.5),
        near.map(str),
        near.map(lambda n: f" {n} "),
        st.booleans(),
        st.none(),
        st.just(10**400),
        st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e300]),
        st.floats(),
        st.lists(st.integers(), max_size=2),
    )


_TAMPERS = ("signature", "padding", "noncanonical_header", "noncanonical_signature", "dots")


@st.composite
def _tokens(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """A valid HS* token with 0 to 3 mutations: of its key, header, claims or encoding."""
    now = int(time.time())
    alg = draw(st.sampled_from(_HS))
    key = "long"
    header: dict[str, object] = {"alg": alg, "typ": "JWT"}
    claims: dict[str, object] = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "sub": "al"}
    payload: object = claims
    tamper = None
    aud_values = st.one_of(
        st.sampled_from(
            [AUDIENCE, "other", "", [AUDIENCE], ["other", AUDIENCE], [], ["x"], [AUDIENCE, 1]]
        ),
        st.lists(st.one_of(st.just(AUDIENCE), _json_scalar), max_size=3),
        _json_scalar,
    )
    header_values: dict[str, st.SearchStrategy[object]] = {
        "alg": st.one_of(st.sampled_from([*_HS, "none", "RS256", ""]), _json_scalar),
        "typ": _json_scalar,
        "kid": st.one_of(st.just("k1"), _json_scalar),
        "crit": st.one_of(st.just(["b64"]), st.just([]), _json_scalar),
        "b64": _json_scalar,
        "jku": st.just("https://evil/"),
        "x-other": _json_scalar,
    }
    claim_values: dict[str, st.SearchStrategy[object]] = {
        "iss": st.one_of(st.sampled_from([ISSUER, ISSUER + "/", ""]), _json_scalar),
        "aud": aud_values,
        "exp": _date_value(),
        "iat": _date_value(),
        "nbf": _date_value(),
        "sub": _json_scalar,
        "jti": st.one_of(st.just("j1"), _json_scalar),
        "extra": _json_scalar,
    }
    kinds = ["key", "payload", "raw", "tamper", *(f"h:{n}" for n in header_values)]
    kinds += [f"c:{n}" for n in claim_values] + [f"-c:{n}" for n in claim_values]
    kinds += ["-h:typ", "-h:alg"]
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=3)):
        if kind == "key":
            key = draw(st.sampled_from(sorted(_KEYS)))
        elif kind == "payload":
            payload = draw(st.one_of(_json_scalar, st.lists(_json_scalar, max_size=2)))
        elif kind == "raw":  # the claims' JSON text, framed as pyjwt may or may not read it
            text = json.dumps(claims).encode()
            before, after = draw(
                st.sampled_from(
                    [(b" ", b""), (b"", b" \n"), (b"", b"x"), (b"\xef\xbb\xbf", b""), (b"", b"{}")]
                )
            )
            payload = before + text + after
        elif kind == "tamper":
            tamper = draw(st.sampled_from(_TAMPERS))
        else:
            op, name = kind.split(":")
            target = header if op.endswith("h") else claims
            if op.startswith("-"):
                target.pop(name, None)
            else:
                target[name] = draw(header_values[name] if target is header else claim_values[name])
    signing_alg = header.get("alg") if header.get("alg") in _HS else alg
    token = _sign(
        header, payload, _KEYS[key], str(signing_alg), noncanonical=tamper == "noncanonical_header"
    )
    head, _, sig = token.rpartition(".")
    if tamper == "signature":
        token = f"{head}.{'B' if sig[0] != 'B' else 'C'}{sig[1:]}"
    elif tamper == "padding":  # pyjwt accepts it
        token += "="
    elif tamper == "noncanonical_signature":  # the same bytes
        token = f"{head}.{_noncanonical(sig)}"
    elif tamper == "dots":
        token = token.replace(".", "..", 1)
    return token, _KEYS[key], alg


@settings(max_examples=1500, deadline=None)
@given(_tokens())
def test_fast_path_agrees_with_stock_over_mutations(case: tuple[str, bytes, str]) -> None:
    """Over mutated headers, claims, keys and encodings, auth.py's decoder gives stock pyjwt's
    answer, and the HS* fast path accepts only what stock accepts (with the same claims)."""
    _compare(*case)


@pytest.mark.parametrize("alg", _HS)
def test_fast_path_takes_the_ordinary_token(alg: str) -> None:
    """The fast path itself (not the pyjwt fallback) accepts an ordinary caller assertion."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, _KEYS["long"], algorithm=alg)
    fast = jwtlib.decode_hmac(
        token, _KEYS["long"], alg, audience=AUDIENCE, issuer=ISSUER, leeway=30
    )
    assert claims == fast


def test_fast_path_leaves_a_short_key_to_pyjwt() -> None:
    """A key pyjwt warns about is not taken by the fast path (pyjwt's warning still comes)."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        token = jwt.encode(claims, _KEYS["short"], algorithm="HS256")
    fast = jwtlib.decode_hmac(
        token, _KEYS["short"], "HS256", audience=AUDIENCE, issuer=ISSUER, leeway=30
    )
    assert fast is None
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        assert claims == jwtlib.decode(
            token, _KEYS["short"], "HS256", audience=AUDIENCE, issuer=ISSUER, leeway=30
        )
