"""Verify a caller's credential and return the identity it proves.

    Authenticator (per client)
    ├── jwt       signature with pinned algorithms (HS* secret, PEM keys, or a JWKS), exp/iss/aud
    │             required; jku/x5u/jwk/x5c headers refused; identity from ``identity_claim``
    ├── api_key   the caller's backend presents a shared key and names the identity in the body
    └── none      dev only: the body names the identity

JWT rules beyond signature, ``iss`` and ``aud`` (stock pyjwt's, through ``jwtlib.decode``: its
HS* fast path accepts only what pyjwt accepts, and leaves every refusal to pyjwt):

- ``exp`` is required; ``exp``, ``nbf`` and ``iat`` must be JSON numbers (RFC 7519 NumericDate).
  pyjwt accepts any string ``int()`` can read (``" 99999999999 "``); this module refuses it.
- A client with ``max_token_lifetime`` refuses a token whose ``exp - iat`` exceeds it (when
  ``iat`` is present) or whose ``exp - now`` exceeds it plus the leeway: a stolen long-lived
  token is no use here, whatever the IdP was configured to issue. Reason ``lifetime``.
- Keys: RSA under 2048 bits is refused (``jwks.key_problem``), from a JWKS or a PEM file.

JWKS keys come from ``tokensvc.jwks.JwksSource`` (background refresh, bounded forced refresh for
an unknown kid, shared cache, max_stale).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tokensvc.clients import AuthConfig
from tokensvc.errors import Unauthenticated
from tokensvc.jwks import JwksSource, key_problem
from tokensvc.jwtlib import decode

log = logging.getLogger("tokensvc.auth")

MAX_CREDENTIAL = 8192
MAX_KID = 256
MAX_HEADER_SEGMENT = 2048  # a real JOSE header is a few hundred bytes
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
NUMERIC_DATES = ("exp", "nbf", "iat")


def bearer(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer`` header, or 401."""
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer credential", reason="missing")
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("expected Authorization: Bearer <credential>", reason="malformed")
    if len(credential) > MAX_CREDENTIAL:
        raise Unauthenticated("credential too long", reason="malformed")
    return credential


@dataclass(frozen=True)
class Authenticator:
    """Verifies callers of one client."""

    config: AuthConfig
    jwks: JwksSource | None = None
    pem_keys: tuple[Any, ...] = ()

    @classmethod
    def build(cls, config: AuthConfig, jwks: JwksSource | None = None) -> Authenticator:
        """The verifier of one client; a PEM key that fails the key policy is left out (and
        logged), so a token it signed is refused as signed by an unknown key."""
        pems = []
        for pem in config.public_keys:
            key = load_pem_public_key(pem.encode())
            problem = key_problem(key)
            if problem is None:
                pems.append(key)
            else:
                log.warning("public key refused", extra={"problem": problem})
        return cls(config, jwks, tuple(pems))

    @property
    def ready(self) -> bool:
        return self.jwks is None or self.jwks.usable

    async def verify(self, authorization: str | None, body_identity: str | None) -> str:
        """The caller's raw (not yet Twilio-encoded) identity, or Unauthenticated."""
        kind = self.config.type
        if kind == "none":
            return _body_identity(body_identity)
        credential = bearer(authorization)
        if kind == "api_key":
            # compare against every key so timing does not reveal which one matched
            matched = False
            for key in self.config.api_keys:
                matched |= hmac.compare_digest(credential.encode(), key.reveal().encode())
            if not matched:
                raise Unauthenticated("invalid API key", reason="invalid_key")
            return _body_identity(body_identity)
        return await self._verify_jwt(credential)

    async def _verify_jwt(self, token: str) -> str:
        cfg = self.config
        header = _peek_header(token)
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise Unauthenticated("token algorithm not accepted", reason="algorithm")
        if any(h in header for h in FORBIDDEN_HEADERS):
            raise Unauthenticated("token header not accepted", reason="header")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID):
            raise Unauthenticated("token key id not accepted", reason="unknown_key")
        keys = await self._keys(kid)
        if not keys:
            raise Unauthenticated("token signed by an unknown key", reason="unknown_key")
        claims: dict[str, Any] | None = None
        failure = "signature"
        for key in keys:
            try:
                claims = decode(
                    token,
                    key,
                    alg,
                    audience=cfg.audience,
                    issuer=cfg.issuer,
                    leeway=cfg.leeway_seconds,
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                failure = "expired"
                break
            except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
                failure = "claims"
                break
        if claims is None:
            raise Unauthenticated(f"token rejected ({failure})", reason=failure)
        _check_dates(claims, cfg.max_token_lifetime, cfg.leeway_seconds)
        identity = claims.get(cfg.identity_claim)
        if not isinstance(identity, str) or not identity:
            raise Unauthenticated("token has no identity claim", reason="identity")
        return identity

    async def _keys(self, kid: str | None) -> list[Any]:
        if self.config.hmac_secret is not None:
            return [self.config.hmac_secret.reveal().encode()]
        if self.jwks is not None:
            return await self.jwks.key_for(kid)
        return list(self.pem_keys)


def _check_dates(claims: dict[str, Any], max_lifetime: int | None, leeway: int) -> None:
    """NumericDate claims are numbers; the token lives no longer than the client allows."""
    for name in NUMERIC_DATES:
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Unauthenticated(f"token {name} is not a number", reason="claims")
    if max_lifetime is None:
        return
    exp: float = claims["exp"]
    iat: float | None = claims.get("iat")
    # Comparisons, not differences: a JSON integer may be too large for a float.
    if exp > time.time() + max_lifetime + leeway or (iat is not None and exp > iat + max_lifetime):
        raise Unauthenticated(
            f"token lifetime over this client's {max_lifetime} s", reason="lifetime"
        )


_peeked: dict[str, dict[str, Any]] = {}
MAX_PEEKED = 256


def _peek_header(token: str) -> dict[str, Any]:
    """The token's JOSE header, read without verifying anything (pyjwt verifies it all again);
    cheaper than ``jwt.get_unverified_header``, which decodes every segment. Remembered per
    header segment (a pure function of its text; an IdP sends one header with every token);
    callers only read it."""
    head, sep, _ = token.partition(".")
    if not sep or len(head) > MAX_HEADER_SEGMENT:
        raise Unauthenticated("malformed token", reason="malformed")
    found = _peeked.get(head)
    if found is None:
        found = _parse_header(head)
        if len(_peeked) >= MAX_PEEKED:
            _peeked.clear()
        _peeked[head] = found
    return found


def _parse_header(head: str) -> dict[str, Any]:
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise Unauthenticated("malformed token", reason="malformed") from None
    if not isinstance(header, dict):
        raise Unauthenticated("malformed token", reason="malformed")
    return header


def _body_identity(identity: str | None) -> str:
    if not identity:
        raise Unauthenticated(
            'this client names the identity in the body: {"identity": "..."}', reason="identity"
        )
    return identity
