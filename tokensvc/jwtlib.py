"""pyjwt, tuned for the token hot path. Same checks, less Python per call.

Every token request verifies one caller JWT and signs one Voice token, both through pyjwt
(twilio-python signs with pyjwt's module-level functions). Two of pyjwt's per-call costs
depend only on inputs that rarely change, or are done byte by byte in Python:

- HMAC key preparation (pyjwt >= 2.10) tries to parse the secret as PEM, SSH, DER and X.509 and
  as JSON on every call, to refuse an asymmetric key used as an HMAC secret (the key-confusion
  defence). ``MemoizedHMAC`` runs the same checks once per distinct key and remembers the
  answer, refusals included. Its cache holds configured secrets only (callers never choose an
  HMAC key) and is bounded.
- Segment validation checks the base64url alphabet with a Python generator over every byte.
  ``_RegexSegmentJWS`` performs the same checks (padding rules, alphabet, canonical re-encoding)
  with one compiled regular expression.

- Most of what is left is Python around one HMAC: ``decode_hmac`` is an *accept-only* fast
  path for HS256/384/512. It accepts a token only when every condition under which stock
  pyjwt accepts it holds, checked here directly (canonical unpadded base64url segments, a
  header of only ``alg``/``typ``/``kid``, the HMAC compared in constant time, the required
  claims, ``iat``/``nbf``/``exp`` as pyjwt reads them, ``iss``, ``aud``, ``sub``, ``jti``),
  and returns the same claims. Anything else (every refusal, and every unusual but possibly
  valid token: padding, ``crit``, a string date, a short key...) goes to ``VERIFIER``, so a
  refusal is pyjwt's own, exception type and all. ``tests/test_jwtlib.py`` checks the two
  against stock pyjwt over every algorithm and claim rule and Hypothesis mutations.

``install()`` puts ``MemoizedHMAC`` on pyjwt's module-level object through the public
``register_algorithm`` API (this speeds up twilio-python's signing). ``VERIFIER`` is a
``jwt.PyJWT`` whose JWS layer is ``_RegexSegmentJWS``; if a future pyjwt no longer has the
method this relies on, ``VERIFIER`` is stock pyjwt (``tests/test_jwtlib.py`` checks both agree).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import threading
import time
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError, InvalidKeyError
from jwt.utils import base64url_decode, base64url_encode

MAX_KEYS = 256
HMAC_HASHES = (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512))
_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")
#: Three unpadded base64url segments, the third of one of the HMAC signature lengths
#: (32, 48, 64 bytes: 43, 64, 86 characters).
_COMPACT = re.compile(
    r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43}|[A-Za-z0-9_-]{64}|[A-Za-z0-9_-]{86})"
)
#: The last character of a canonical segment of length 2 or 3 mod 4 (unused bits zero).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_SAFE_HEADER = frozenset({"alg", "typ", "kid"})
_DIGESTS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
REQUIRED = ("exp", "iss", "aud")
#: The options tokensvc decodes with (``VERIFIER.decode(..., options=OPTIONS)``).
OPTIONS: dict[str, Any] = {"require": list(REQUIRED), "verify_signature": True}
_installed = False
_lock = threading.Lock()


class MemoizedHMAC(HMACAlgorithm):
    """HMACAlgorithm whose ``prepare_key`` result (or refusal) is remembered per key."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._prepared: dict[bytes, bytes | InvalidKeyError] = {}
        self._length_notes: dict[int, str | None] = {}

    def check_key_length(self, key: bytes) -> str | None:
        """Same answer as pyjwt's, remembered per key length (all it depends on)."""
        length = len(key)
        if length not in self._length_notes:
            self._length_notes[length] = super().check_key_length(key)
        return self._length_notes[length]

    def prepare_key(self, key: str | bytes) -> bytes:
        raw = key.encode("utf-8") if isinstance(key, str) else key
        found = self._prepared.get(raw)
        if found is None:
            try:
                found = super().prepare_key(raw)
            except InvalidKeyError as exc:
                found = exc
            if len(self._prepared) >= MAX_KEYS:
                self._prepared.clear()
            self._prepared[raw] = found
        if isinstance(found, InvalidKeyError):
            raise found
        return found


def _use_memoized_hmac(jws: PyJWS) -> None:
    for name, hash_alg in HMAC_HASHES:
        jws.unregister_algorithm(name)
        jws.register_algorithm(name, MemoizedHMAC(hash_alg))


def install() -> None:
    """Idempotently give pyjwt's module-level object (used by twilio) memoized HMAC keys."""
    global _installed
    with _lock:
        if not _installed:
            for name, hash_alg in HMAC_HASHES:
                jwt.unregister_algorithm(name)
                jwt.register_algorithm(name, MemoizedHMAC(hash_alg))
            _installed = True


class _RegexSegmentJWS(PyJWS):
    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if padding > 2 or (padding and len(segment) % 4 != 0):
            raise DecodeError(f"Invalid {name} padding")
        if len(stripped) % 4 == 1 or not _ALPHABET.fullmatch(stripped):
            raise DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64url_decode(stripped)
        except (TypeError, binascii.Error) as err:
            raise DecodeError(f"Invalid {name} padding") from err
        if base64url_encode(decoded) != stripped:
            raise DecodeError(f"Invalid {name} padding")
        return decoded


def _build_verifier() -> jwt.PyJWT:
    verifier = jwt.PyJWT()
    stock = getattr(verifier, "_jws", None)
    if isinstance(stock, PyJWS) and hasattr(PyJWS, "_decode_base64url_segment"):
        fast = _RegexSegmentJWS(options=dict(stock.options))  # type: ignore[arg-type]
        verifier._jws = fast
        _use_memoized_hmac(fast)
    return verifier


#: The PyJWT instance tokensvc verifies callers with.
VERIFIER = _build_verifier()


_MEMO = {name: MemoizedHMAC(hash_alg) for name, hash_alg in HMAC_HASHES}
_usable_keys: dict[tuple[str, bytes], bool] = {}


def _key_usable(alg: str, key: bytes) -> bool:
    """Stock pyjwt would take ``key`` for ``alg`` silently: no refusal, no short-key warning."""
    found = _usable_keys.get((alg, key))
    if found is None:
        algorithm = _MEMO[alg]
        try:
            found = algorithm.check_key_length(algorithm.prepare_key(key)) is None
        except InvalidKeyError:
            found = False
        if len(_usable_keys) >= MAX_KEYS:
            _usable_keys.clear()
        _usable_keys[(alg, key)] = found
    return found


def _segment(text: str) -> bytes | None:
    """A canonical unpadded base64url segment's bytes (alphabet checked by the caller)."""
    rest = len(text) % 4
    if rest == 1 or (rest and text[-1] not in _CANONICAL_LAST[rest]):
        return None
    return base64.urlsafe_b64decode(text + "==="[: (4 - rest) % 4])


def _date(value: object) -> int | None:
    """``int(value)`` as pyjwt computes it, for a JSON number only (else None: let pyjwt say)."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return int(value)
    return None


def _header_alg(segment: str) -> str | None:
    """The ``alg`` of a header segment made only of ``alg``, ``typ`` and a string ``kid``
    (canonical base64url, a JSON object), else None. Remembered per segment: a pure function
    of its text, and an IdP sends the same header with every token."""
    if segment in _headers:
        return _headers[segment]
    found: str | None = None
    raw = _segment(segment)
    if raw is not None:
        try:
            header = json.loads(raw)
        except (ValueError, RecursionError):
            header = None
        if (
            type(header) is dict
            and header.keys() <= _SAFE_HEADER
            and type(header.get("alg")) is str
            and type(header.get("kid", "")) is str
        ):
            found = header["alg"]
    if len(_headers) >= MAX_KEYS:
        _headers.clear()
    _headers[segment] = found
    return found


_headers: dict[str, str | None] = {}
_raw_decode = json.JSONDecoder().raw_decode


def _json_object(raw: bytes) -> Any:
    """``json.loads(raw)`` when ``raw`` is a UTF-8 JSON text starting with ``{`` and
    nothing after the value (``json.loads`` reads it as UTF-8 then: no BOM, no NUL in the
    first two bytes); None otherwise."""
    if raw[:1] != b"{" or raw[1:2] == b"\0":
        return None
    text = raw.decode("utf-8", "surrogatepass")
    value, end = _raw_decode(text)
    return value if end == len(text) else None


def decode_hmac(
    token: str, key: bytes, alg: str, *, audience: str, issuer: str, leeway: float
) -> dict[str, Any] | None:
    """The claims, when stock pyjwt's ``decode(token, key, algorithms=[alg],
    audience=audience, issuer=issuer, leeway=leeway, options=OPTIONS)`` would return them;
    None when it would refuse, or might: ask it (``decode``)."""
    digest = _DIGESTS.get(alg)
    match = _COMPACT.fullmatch(token)
    if digest is None or match is None or not _key_usable(alg, key):
        return None
    head, body, sig = match.groups()
    if _header_alg(head) != alg:
        return None
    try:
        signature = _segment(sig)
        if signature is None:
            return None
        mac = hmac.digest(key, token[: len(head) + 1 + len(body)].encode("ascii"), digest)
        if not hmac.compare_digest(mac, signature):
            return None
        payload = _segment(body)
        claims = None if payload is None else _json_object(payload)
    except (ValueError, binascii.Error, RecursionError):
        return None
    if type(claims) is not dict or any(claims.get(name) is None for name in REQUIRED):
        return None
    now = time.time()
    for name in ("iat", "nbf"):
        if name in claims:
            moment = _date(claims[name])
            if moment is None or moment > now + leeway:
                return None
    exp = _date(claims["exp"])
    if exp is None or exp <= now - leeway:
        return None
    aud = claims["aud"]
    if type(claims["iss"]) is not str or claims["iss"] != issuer:
        return None
    if type(aud) is str:
        if aud != audience:
            return None
    elif type(aud) is not list or not all(type(a) is str for a in aud) or audience not in aud:
        return None
    for name in ("sub", "jti"):
        if name in claims and type(claims[name]) is not str:
            return None
    return claims


def decode(
    token: str, key: Any, alg: str, *, audience: str | None, issuer: str | None, leeway: float
) -> dict[str, Any]:
    """Stock pyjwt's answer for tokensvc's options: the claims, or pyjwt's exception."""
    if type(key) is bytes and audience and issuer:
        claims = decode_hmac(token, key, alg, audience=audience, issuer=issuer, leeway=leeway)
        if claims is not None:
            return claims
    found: dict[str, Any] = VERIFIER.decode(
        token,
        key,
        algorithms=[alg],
        audience=audience,
        issuer=issuer,
        leeway=leeway,
        options=OPTIONS,  # type: ignore[arg-type]
    )
    return found
