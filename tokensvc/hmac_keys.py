"""Memoized HMAC key preparation for pyjwt, used by both caller verification and minting.

pyjwt (2.10+) prepares an HMAC key on every encode and decode: it tries to parse the secret as
a PEM, SSH, DER public key and X.509 certificate, and as JSON, to refuse asymmetric keys used as
HMAC secrets (the key-confusion defence). That costs tens of microseconds per call, twice per
token request (verify the caller, sign the Voice token), for a result that only depends on the
key bytes. ``install()`` re-registers HS256/384/512 on pyjwt's module-level JWS object (the one
twilio-python signs with) through pyjwt's public ``register_algorithm`` API, with a subclass
that runs the same checks once per distinct key and remembers the answer, including refusals.
The cache holds only configured secrets (callers cannot choose an HMAC key), bounded anyway.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

MAX_KEYS = 256
_installed = False
_lock = threading.Lock()


class MemoizedHMAC(HMACAlgorithm):
    """HMACAlgorithm whose ``prepare_key`` result (or refusal) is remembered per key."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._prepared: dict[bytes, bytes | InvalidKeyError] = {}

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


def install() -> None:
    """Idempotently replace pyjwt's HS256/HS384/HS512 with the memoized version."""
    global _installed
    with _lock:
        if _installed:
            return
        for name, hash_alg in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384),
                               ("HS512", hashlib.sha512)):
            jwt.unregister_algorithm(name)
            jwt.register_algorithm(name, MemoizedHMAC(hash_alg))
        _installed = True
