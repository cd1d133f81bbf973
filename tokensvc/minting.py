"""Build Twilio Voice Access Tokens. The only module that imports ``twilio``.

Tokens are HS256 JWTs as twilio-python's ``AccessToken`` writes them (``cty: twilio-fpa;v=1``,
``twr`` for a non-US1 home region), signed by the client's first API key, or, when a
:class:`KeyChooser` is given (``TOKENSVC_TWILIO_VERIFY=enforce``), by the first key it finds
usable; ``None`` from it (every key rejected by Twilio) is ``NotReady``, a 503 that sends the
caller to another region. The chooser is a synchronous in-memory lookup: the check that feeds
it runs in the background and never delays a token.

The token is built by ``VoiceTokenBuilder``: the bytes twilio-python's
``AccessToken(...).to_jwt()`` produces for the same inputs and clock (header and grant JSON
serialized once per key and push credential, the claims formatted into one string, the HMAC
key schedule computed once per key), at a fraction of its cost. ``tests/test_minting.py``
compares the two byte for byte over generated identities, grants, regions, push credentials,
keys and TTLs; twilio's ``AccessToken`` stays the reference, and signs itself for a key pyjwt
would warn about or refuse (shorter than the hash, or shaped like an asymmetric key).

Clock skew: ``nbf`` is omitted. twilio-python would set it to "now", and a Twilio server whose
clock is a second behind ours would reject the token as not yet valid (20105/20155). Without
``nbf`` a token is valid from issue until ``exp``; the lifetime is capped at 86400 s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Protocol

import jwt
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from tokensvc import jwtlib
from tokensvc.clients import MAX_TTL, ApiKey, TwilioConfig
from tokensvc.errors import InvalidRequest, NotReady

jwtlib.install()

PLATFORMS = ("browser", "ios", "android")
APNS_ENVIRONMENTS = ("production", "sandbox")


@dataclass(frozen=True)
class Minted:
    token: str
    expires_at: int  # unix seconds


class KeyChooser(Protocol):
    """Which of a client's API keys signs: the first usable one, or None when none is."""

    def signing_key(self, twilio: TwilioConfig) -> ApiKey | None: ...


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class VoiceTokenBuilder:
    """One signing key's Voice tokens, as ``AccessToken.to_jwt()`` writes them.

    ``build`` gives ``None`` when this key must go through twilio-python (see the module
    docstring)."""

    __slots__ = ("_grants", "_header", "_iss", "_mac", "_sub", "_twilio", "key")

    def __init__(self, twilio: TwilioConfig, key: ApiKey) -> None:
        self.key = key
        self._twilio = twilio
        self._mac: hmac.HMAC | None = None
        secret = key.secret.reveal()
        algorithm = jwtlib.MemoizedHMAC(hashlib.sha256)
        try:
            prepared = algorithm.prepare_key(secret)
        except jwt.InvalidKeyError:
            prepared = None
        if prepared is not None and algorithm.check_key_length(prepared) is None:
            self._mac = hmac.new(prepared, digestmod=hashlib.sha256)
        region = None if twilio.home_region == "us1" else twilio.home_region
        header: dict[str, str] = {"typ": "JWT", "alg": "HS256", "cty": "twilio-fpa;v=1"}
        if region:
            header["twr"] = region
        self._header = _b64(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        self._iss = encode_basestring_ascii(key.sid)
        self._sub = (
            f',"sub":{encode_basestring_ascii(twilio.account_sid)}' if twilio.account_sid else ""
        )
        self._grants: dict[str | None, str] = {}

    def _voice(self, push_credential: str | None) -> str:
        found = self._grants.get(push_credential)
        if found is None:
            grant = VoiceGrant(
                outgoing_application_sid=self._twilio.outgoing_application_sid,
                incoming_allow=self._twilio.incoming_allow or None,
                push_credential_sid=push_credential,
            )
            found = json.dumps(grant.to_payload(), separators=(",", ":"))
            if len(self._grants) < 8:  # at most four push credentials per client
                self._grants[push_credential] = found
        return found

    def build(
        self, identity: str, push_credential: str | None, now: int, expires_at: int
    ) -> str | None:
        if self._mac is None:
            return None
        jti = encode_basestring_ascii(f"{self.key.sid}-{now}")
        named = f',"identity":{encode_basestring_ascii(identity)}' if identity else ""
        claims = (
            f'{{"jti":{jti},"grants":{{"voice":{self._voice(push_credential)}{named}}},'
            f'"iss":{self._iss},"exp":{expires_at}{self._sub}}}'
        )
        signing_input = self._header + b"." + _b64(claims.encode())
        mac = self._mac.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _b64(mac.digest())).decode()


@dataclass(frozen=True)
class Minter:
    """Mints tokens for one client; everything but identity and push is fixed at load."""

    twilio: TwilioConfig
    ttl: int
    keys: KeyChooser | None = None
    _builders: dict[str, VoiceTokenBuilder] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def builder(self, key: ApiKey) -> VoiceTokenBuilder:
        """The builder of ``key`` (one per API key of this client, made on first use)."""
        found = self._builders.get(key.sid)
        if found is None or found.key is not key:
            found = self._builders[key.sid] = VoiceTokenBuilder(self.twilio, key)
        return found

    def signing_key(self) -> ApiKey:
        if self.keys is None:
            return self.twilio.api_keys[0]
        key = self.keys.signing_key(self.twilio)
        if key is None:
            raise NotReady("every Twilio API key of this client is rejected by Twilio")
        return key

    def push_credential(self, platform: str, apns_environment: str | None) -> str | None:
        push = self.twilio.push
        if platform == "ios":
            env = apns_environment or "production"
            return push.ios_sandbox if env == "sandbox" else push.ios_production
        if platform == "android":
            return push.android
        return None

    def mint(
        self, identity: str, platform: str = "browser", apns_environment: str | None = None
    ) -> Minted:
        if platform not in PLATFORMS:
            raise InvalidRequest(f"platform must be one of {', '.join(PLATFORMS)}")
        if apns_environment is not None and apns_environment not in APNS_ENVIRONMENTS:
            raise InvalidRequest("apns_environment must be production or sandbox")
        key = self.signing_key()
        ttl = min(self.ttl, MAX_TTL)
        now = int(time.time())
        expires_at = now + ttl
        push = self.push_credential(platform, apns_environment)
        built = self.builder(key).build(identity, push, now, expires_at)
        if built is not None:
            return Minted(built, expires_at)
        return Minted(self.reference_token(key, identity, push, ttl, expires_at), expires_at)

    def reference_token(
        self, key: ApiKey, identity: str, push: str | None, ttl: int, expires_at: int
    ) -> str:
        """The token as twilio-python's ``AccessToken`` builds it (the reference)."""
        region = None if self.twilio.home_region == "us1" else self.twilio.home_region
        token = AccessToken(
            self.twilio.account_sid,
            key.sid,
            key.secret.reveal(),
            identity=identity,
            ttl=ttl,
            valid_until=expires_at,
            nbf=None,
            region=region,
        )
        token.add_grant(
            VoiceGrant(
                outgoing_application_sid=self.twilio.outgoing_application_sid,
                incoming_allow=self.twilio.incoming_allow or None,
                push_credential_sid=push,
            )
        )
        jwt_text: str = token.to_jwt()
        return jwt_text
