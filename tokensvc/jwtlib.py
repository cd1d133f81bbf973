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

``install()`` puts ``MemoizedHMAC`` on pyjwt's module-level object through the public
``register_algorithm`` API (this speeds up twilio-python's signing). ``VERIFIER`` is a
``jwt.PyJWT`` whose JWS layer is ``_RegexSegmentJWS``; if a future pyjwt no longer has the
method this relies on, ``VERIFIER`` is stock pyjwt (``tests/test_jwtlib.py`` checks both agree).
"""

from __future__ import annotations

import binascii
import hashlib
import re
import threading
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError, InvalidKeyError
from jwt.utils import base64url_decode, base64url_encode

MAX_KEYS = 256
HMAC_HASHES = (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512))
_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")
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
