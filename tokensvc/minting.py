"""Build Twilio Voice Access Tokens. The only module that imports ``twilio``.

Tokens are HS256 JWTs as twilio-python's ``AccessToken`` writes them (``cty: twilio-fpa;v=1``,
``twr`` for a non-US1 home region), signed by the client's first API key, or, when a
:class:`KeyChooser` is given (``TOKENSVC_TWILIO_VERIFY=enforce``), by the first key it finds
usable; ``None`` from it (every key rejected by Twilio) is ``NotReady``, a 503 that sends the
caller to another region. The chooser is a synchronous in-memory lookup: the check that feeds
it runs in the background and never delays a token.

Clock skew: ``nbf`` is omitted. twilio-python would set it to "now", and a Twilio server whose
clock is a second behind ours would reject the token as not yet valid (20105/20155). Without
``nbf`` a token is valid from issue until ``exp``; the lifetime is capped at 86400 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

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


@dataclass(frozen=True)
class Minter:
    """Mints tokens for one client; everything but identity and push is fixed at load."""

    twilio: TwilioConfig
    ttl: int
    keys: KeyChooser | None = None

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
        region = None if self.twilio.home_region == "us1" else self.twilio.home_region
        expires_at = int(time.time()) + ttl
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
                push_credential_sid=self.push_credential(platform, apns_environment),
            )
        )
        jwt_text: str = token.to_jwt()
        return Minted(jwt_text, expires_at)
