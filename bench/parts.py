"""Microbenchmarks: each part of the token path beside its floor, measured in isolation.

    python3 bench/parts.py            # every part, best of 5 runs, µs per call
    taskset -c 0 python3 bench/parts.py

Each row is what tokensvc runs for one request next to the least a part could cost in Python
(the floor): for HS256 verification the HMAC, base64 and JSON it cannot avoid; for minting
one HMAC over a preformatted token; for the access line one string write. Run it pinned to
one core on a quiet machine; the ratios matter more than the absolute figures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import os
import sys
import tempfile
import time
import timeit
import warnings
from collections.abc import Callable

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "")  # single-process values unless asked

import jwt
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from tokensvc import jwtlib, observability
from tokensvc.clients import ApiKey, PushCredentials, TwilioConfig
from tokensvc.minting import Minter
from tokensvc.observability import AccessLog, Metrics, RequestFacts, request_fields
from tokensvc.ratelimit import RateCounter
from tokensvc.render import _encode
from tokensvc.secret import Secret

SECRET = "s" * 40
KEY_SECRET = "k" * 32
ACCOUNT, KEY_SID, APP = "AC" + "0" * 32, "SK" + "1" * 32, "AP" + "2" * 32
AUD, ISS = "tokensvc", "https://idp.example"


def per_call(fn: Callable[[], object], number: int = 2000) -> float:
    """Best of 5 runs, µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def caller_jwt(i: int) -> str:
    now = int(time.time())
    claims = {"sub": f"user-{i}", "aud": AUD, "iss": ISS, "exp": now + 600, "iat": now}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def hs256_floor(token: str) -> dict[str, object]:
    """The least HS256 verification does: split, one HMAC, compare, decode the claims."""
    head, _, rest = token.rpartition(".")
    mac = hmac.new(SECRET.encode(), head.encode(), hashlib.sha256).digest()
    sig = base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4))
    if not hmac.compare_digest(mac, sig):
        raise ValueError
    payload = head.partition(".")[2]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims


def main() -> None:
    rows: list[tuple[str, str, float, float]] = []
    token = caller_jwt(1)
    stock = jwt.PyJWT()
    options = {"require": ["exp", "iss", "aud"], "verify_signature": True}

    def verify(decoder: jwt.PyJWT) -> Callable[[], object]:
        return lambda: decoder.decode(
            token, SECRET, algorithms=["HS256"], audience=AUD, issuer=ISS, options=options
        )

    rows.append(
        ("caller JWT (HS256)", "pyjwt stock / tokensvc jwtlib", per_call(verify(stock)), 0.0)
    )
    rows.append(
        (
            "",
            "jwtlib VERIFIER vs floor",
            per_call(verify(jwtlib.VERIFIER)),
            per_call(lambda: hs256_floor(token)),
        )
    )
    key = SECRET.encode()
    rows.append(
        (
            "",
            "jwtlib.decode (HS* fast path) vs floor",
            per_call(
                lambda: jwtlib.decode(token, key, "HS256", audience=AUD, issuer=ISS, leeway=30)
            ),
            per_call(lambda: hs256_floor(token)),
        )
    )

    twilio = TwilioConfig(
        ACCOUNT, (ApiKey(KEY_SID, Secret(KEY_SECRET)),), APP, True, "us1", PushCredentials()
    )
    minter = Minter(twilio, 3600)

    def stock_mint() -> str:
        t = AccessToken(ACCOUNT, KEY_SID, KEY_SECRET, identity="alice", ttl=3600, nbf=None)
        t.add_grant(VoiceGrant(outgoing_application_sid=APP, incoming_allow=True))
        text: str = t.to_jwt()
        return text

    mac = hmac.new(KEY_SECRET.encode(), digestmod=hashlib.sha256)
    signing_input = minter.mint("alice").token.rpartition(".")[0].encode()

    def mint_floor() -> bytes:
        h = mac.copy()
        h.update(signing_input)
        return base64.urlsafe_b64encode(h.digest())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows.append(("minting", "twilio AccessToken.to_jwt", per_call(stock_mint), 0.0))
    rows.append(
        (
            "",
            "VoiceTokenBuilder vs one HMAC",
            per_call(lambda: minter.mint("alice")),
            per_call(mint_floor),
        )
    )

    document = {
        "token": signing_input.decode(),
        "identity": "alice",
        "ttl": 3600,
        "expires_at": "2026-12-01T23:00:00Z",
        "refresh_in": 2900,
        "edges": ["ashburn", "dublin", "roaming"],
        "region": "us1",
        "home_region": "us1",
    }
    rows.append(
        (
            "JSON response",
            "JSONEncoder.encode vs bytes join",
            per_call(lambda: _encode(document).encode()),
            per_call(lambda: b"".join((signing_input, b"x"))),
        )
    )

    facts = RequestFacts(
        "abcd0000001",
        "POST",
        "/v1/clients/bench/token",
        "token",
        status=200,
        client="bench",
        identity_fp="0123456789abcdef",
        edge="ashburn",
    )
    logger = logging.getLogger("tokensvc.request")
    logger.setLevel(logging.INFO)
    observability._json_lines = True
    log = AccessLog(logger)
    real_stdout, sys.stdout = sys.stdout, io.StringIO()
    try:
        old = per_call(lambda: log.write(request_fields(facts, 0.001234, "us1")))
        new = per_call(lambda: log.request(facts, 0.001234, "us1"))
        floor = per_call(lambda: sys.stdout.write("x" * 300))
        sys.stdout.truncate(0)
    finally:
        sys.stdout = real_stdout
    rows.append(("access log line", "dict + json (before) / one string (after)", old, 0.0))
    rows.append(("", "one string vs a 300-byte write", new, floor))

    metrics = Metrics()
    child = metrics.requests.labels("bench", "ok", "200")
    cell = metrics.child(metrics.requests, "bench", "ok", "200")
    rows.append(("metric increment", "prometheus child (1 process)", per_call(child.inc), 0.0))
    with tempfile.TemporaryDirectory() as directory:
        from prometheus_client import values

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            value = values.MultiProcessValue(lambda: 1)(  # type: ignore[no-untyped-call]
                "counter", "x", "x_total", (), (), ""
            )
            rows.append(
                ("", "prometheus multiprocess value (mmap)", per_call(lambda: value.inc(1.0)), 0.0)
            )
        finally:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = ""
    rows.append(("", "tokensvc CounterCell vs float add", per_call(cell.inc), 0.0))

    from tokensvc.paths import classify
    from tokensvc.token_endpoint import RequestHeaders

    raw = [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", b"Bearer " + token.encode()),
        (b"x-country", b"IE"),
        (b"content-type", b"application/json"),
        (b"content-length", b"22"),
    ]

    class _S:
        client_ip_header = None
        country_header = "x-country"
        trusted_hops = 1

    headers = RequestHeaders(_S())  # type: ignore[arg-type]
    rows.append(
        (
            "headers",
            "RequestHeaders.parse vs dict(raw)",
            per_call(lambda: headers.parse(raw)),
            per_call(lambda: dict(raw)),
        )
    )
    rows.append(
        ("routing", "paths.classify", per_call(lambda: classify("/v1/clients/bench/token")), 0.0)
    )

    counter = RateCounter()
    rows.append(
        (
            "rate limit",
            "RateCounter.check",
            per_call(lambda: counter.check("bench:id:alice", 10**9, 60)),
            0.0,
        )
    )

    fp = observability.Fingerprinter(b"k")
    rows.append(
        ("identity fingerprint", "keyed BLAKE2b", per_call(lambda: fp("bench", "alice")), 0.0)
    )

    print(f"{'part':22} {'what':44} {'µs/call':>9} {'floor µs':>9}")
    for part, what, us, floor_us in rows:
        print(f"{part:22} {what:44} {us:9.2f} {floor_us or float('nan'):9.2f}")


if __name__ == "__main__":
    main()
