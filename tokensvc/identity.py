"""Map a verified caller identity onto a valid Twilio client identity.

Twilio accepts alphanumerics and underscore, at most 121 characters. Identity providers hand out
subjects such as ``auth0|12345`` or ``user@example.com``. Two encodings, chosen per client
(``auth.identity_encoding``):

- ``escape`` (default): ``_`` becomes ``__`` and every other byte outside ``[A-Za-z0-9]`` becomes
  ``_xx`` (two lower-case hex digits of its UTF-8 byte). Decoding is unambiguous, so the mapping
  is injective: two different callers never share a Twilio identity. ``auth0|12345`` becomes
  ``auth0_7c12345``. Plain alphanumeric subjects are unchanged.
- ``strict``: the subject must already be valid; anything else is refused (403).

An identity that is empty or longer than 121 characters after encoding is refused (403), never
truncated (truncation would break injectivity).

Across clients: clients that share a Twilio account share its identity namespace, so each of
them must set a distinct ``auth.identity_prefix``, none a prefix of another (checked at load).
Then ``p1 + x == p2 + y`` is impossible, and the mapping is injective across the account.
"""

from __future__ import annotations

import re

from tokensvc.errors import Forbidden

MAX_IDENTITY = 121
_VALID = re.compile(r"[A-Za-z0-9_]{1,121}")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def encode_identity(raw: str) -> str:
    """Injective escape encoding; raises UnicodeEncodeError on lone surrogates."""
    out: list[str] = []
    for byte in raw.encode("utf-8"):
        if byte in _SAFE:
            out.append(chr(byte))
        elif byte == 0x5F:  # "_"
            out.append("__")
        else:
            out.append(f"_{byte:02x}")
    return "".join(out)


def decode_identity(encoded: str) -> str:
    """Inverse of ``encode_identity`` (used by tests and operators reading logs)."""
    data = bytearray()
    i = 0
    while i < len(encoded):
        ch = encoded[i]
        if ch != "_":
            data.append(ord(ch))
            i += 1
        elif encoded[i + 1 : i + 2] == "_":
            data.append(0x5F)
            i += 2
        else:
            data.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
    return data.decode("utf-8")


def to_twilio_identity(raw: str, encoding: str, prefix: str = "") -> str:
    """``prefix`` + the encoded identity; Forbidden when that cannot be a Twilio identity."""
    if encoding == "strict":
        identity = prefix + raw
        if not raw or not _VALID.fullmatch(identity):
            raise Forbidden(
                "identity is not a valid Twilio identity "
                "(letters, digits and underscore, at most 121)"
            )
        return identity
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError:
        raise Forbidden("identity is not valid UTF-8") from None
    encoded = raw if _SAFE.issuperset(data) else encode_identity(raw)
    if not encoded or len(prefix) + len(encoded) > MAX_IDENTITY:
        raise Forbidden("identity is empty or too long once encoded for Twilio (121 max)")
    return prefix + encoded


def is_valid_twilio_identity(identity: str) -> bool:
    return _VALID.fullmatch(identity) is not None
