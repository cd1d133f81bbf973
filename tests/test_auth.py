"""Caller verification: only a properly signed, unexpired token for this client passes."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support import AUDIENCE, HS_SECRET, ISSUER, assertion
from tokensvc.auth import Authenticator, JwksSource
from tokensvc.clients import AuthConfig
from tokensvc.errors import Unauthenticated
from tokensvc.secret import Secret

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

HS = AuthConfig(type="jwt", algorithms=("HS256",), hmac_secret=Secret(HS_SECRET),
                issuer=ISSUER, audience=AUDIENCE)
RS = AuthConfig(type="jwt", algorithms=("RS256",), public_keys=(RSA_PUBLIC_PEM,),
                issuer=ISSUER, audience=AUDIENCE)


def rs_token(sub: str = "alice", key: Any = RSA_KEY, headers: dict | None = None,
             **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


def verify(config: AuthConfig, token: str | None, body_identity: str | None = None,
           jwks: JwksSource | None = None) -> str:
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
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "eve",
                        "exp": int(time.time()) + 60}, None, algorithm="none")
    assert "algorithm" == reason(HS, token)


def test_hs_rs_confusion_is_refused() -> None:
    """An HS256 token signed with the RSA public key (as a secret) is refused for an RS client."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = base64.urlsafe_b64encode(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "eve",
                                                "exp": int(time.time()) + 60}).encode())
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


@pytest.mark.parametrize("claims", [{"aud": "someone-else"}, {"iss": "https://evil/"},
                                    {"exp": None}, {"iss": None}, {"aud": None}])
def test_wrong_or_missing_registered_claims(claims: dict) -> None:
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
    assert "identity" == reason(HS, assertion(sub=None))


def test_garbage_token() -> None:
    """A token that is not a JWT is refused as malformed."""
    assert "malformed" == reason(HS, "not-a-jwt")


def test_api_key_client_takes_identity_from_body() -> None:
    """An api_key client accepts its key and the identity named in the body."""
    config = AuthConfig(type="api_key", api_keys=(Secret("k1" * 20), Secret("k2" * 20)))
    assert "carol" == verify(config, "k2" * 20, "carol")
    with pytest.raises(Unauthenticated):
        verify(config, "wrong", "carol")


class Jwks:
    """A loopback HTTP server serving a JWKS document that tests can change or break."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def publish(self, key: Any, kid: str) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
        self.document["keys"].append(jwk)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.close()


JW = AuthConfig(type="jwt", algorithms=("RS256",), jwks_url="set-per-test",
                issuer=ISSUER, audience=AUDIENCE)


class SharedCache:
    """Stands in for the state store's JWKS cache (the real one is tested in test_state)."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    async def put(self, url: str, doc: bytes, seconds: float) -> None:
        self.entries[url] = doc

    async def get(self, url: str) -> bytes | None:
        return self.entries.get(url)


async def _started(url: str, **kwargs: Any) -> JwksSource:
    source = JwksSource(url, refresh=300, max_stale=3600, timeout=2, **kwargs)
    await source.start()
    return source


def test_jwks_key_verifies_token_with_its_kid(jwks_server: Jwks) -> None:
    """A token whose kid is in the JWKS verifies."""
    jwks_server.publish(RSA_KEY, "k1")

    async def run() -> str:
        source = await _started(jwks_server.url)
        try:
            return await Authenticator.build(JW, source).verify(
                f"Bearer {rs_token(headers={'kid': 'k1'})}", None)
        finally:
            await source.stop()

    assert "alice" == asyncio.run(run())


def test_unknown_kid_triggers_one_throttled_refresh(jwks_server: Jwks) -> None:
    """A rotated-in key is found by one refresh; a flood of unknown kids fetches only once."""
    jwks_server.publish(RSA_KEY, "k1")
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def run() -> tuple[str, int]:
        source = await _started(jwks_server.url)
        auth = Authenticator.build(JW, source)
        try:
            jwks_server.publish(new_key, "k2")
            ok = await auth.verify(f"Bearer {rs_token(key=new_key, headers={'kid': 'k2'})}",
                                   None)
            hits_after_rotation = jwks_server.hits
            for i in range(20):
                with pytest.raises(Unauthenticated):
                    await auth.verify(f"Bearer {rs_token(headers={'kid': f'hostile{i}'})}", None)
            return ok, jwks_server.hits - hits_after_rotation
        finally:
            await source.stop()

    identity, extra_fetches = asyncio.run(run())
    assert ("alice", 0) == (identity, extra_fetches)


def test_keys_survive_an_idp_outage(jwks_server: Jwks) -> None:
    """When the IdP fails, the keys already fetched keep verifying callers."""
    jwks_server.publish(RSA_KEY, "k1")

    async def run() -> str:
        source = await _started(jwks_server.url)
        try:
            jwks_server.fail = True
            assert not await source.refresh()
            return await Authenticator.build(JW, source).verify(
                f"Bearer {rs_token(headers={'kid': 'k1'})}", None)
        finally:
            await source.stop()

    assert "alice" == asyncio.run(run())


def test_restarted_pod_uses_shared_jwks_cache_when_idp_is_down(jwks_server: Jwks) -> None:
    """A new JwksSource loads keys from the shared cache when the IdP is unreachable."""
    jwks_server.publish(RSA_KEY, "k1")
    cache = SharedCache()
    get, put = cache.get, cache.put

    async def run() -> str:
        first = await _started(jwks_server.url, cache_get=get, cache_put=put)
        await first.stop()
        jwks_server.fail = True
        second = await _started(jwks_server.url, cache_get=get, cache_put=put)
        try:
            return await Authenticator.build(JW, second).verify(
                f"Bearer {rs_token(headers={'kid': 'k1'})}", None)
        finally:
            await second.stop()

    assert "alice" == asyncio.run(run())


def test_stale_keys_expire_after_max_stale(jwks_server: Jwks) -> None:
    """Keys older than max_stale are no longer used."""
    jwks_server.publish(RSA_KEY, "k1")

    async def run() -> bool:
        source = await _started(jwks_server.url)
        source.fetched_at -= 7200  # max_stale is 3600
        jwks_server.fail = True
        try:
            return source.usable
        finally:
            await source.stop()

    assert asyncio.run(run()) is False


def test_es256_key_cannot_verify_rs256_pinned_client() -> None:
    """A token signed with an EC key and alg ES256 is refused by an RS256-pinned client."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "eve",
                        "exp": int(time.time()) + 60}, ec_key, algorithm="ES256")
    assert "algorithm" == reason(RS, token)


def test_jwks_cache_keeps_the_original_fetch_time(jwks_server: Jwks) -> None:
    """Keys loaded from the shared cache expire max_stale after the original fetch."""
    jwks_server.publish(RSA_KEY, "k1")
    cache = SharedCache()
    get, put = cache.get, cache.put

    async def run() -> bool:
        first = await _started(jwks_server.url, cache_get=get, cache_put=put)
        await first.stop()
        stamp, _, doc = cache.entries[jwks_server.url].partition(b"\n")
        cache.entries[jwks_server.url] = str(float(stamp) - 7200).encode() + b"\n" + doc
        jwks_server.fail = True
        second = await _started(jwks_server.url, cache_get=get, cache_put=put)
        try:
            return second.usable
        finally:
            await second.stop()

    assert asyncio.run(run()) is False


def test_jwks_redirect_is_not_followed(jwks_server: Jwks) -> None:
    """A JWKS URL that redirects is a failed fetch, not followed."""
    from tokensvc.auth import _http_get

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", jwks_server.url)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(urllib.error.HTTPError):
            _http_get(f"http://127.0.0.1:{server.server_address[1]}/", 2)
    finally:
        server.shutdown()
        server.server_close()
