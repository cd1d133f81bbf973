"""The in-repo reference: a bare Starlette + Hypercorn endpoint that mints the same Voice token.

This is the "20-line demo" tokensvc is measured against (issue 7). It does only what a demo
does: no caller authentication, no edges, no rate limits, no logging, no metrics. The caller's
identity comes from the query string (``?identity=``), as in Twilio's quickstarts.

Credentials come from ``BENCH_*`` environment variables, read once at import; ``bench/run.py``
sets them to throwaway values generated per run (the token is signed locally and never sent to
Twilio, so fake SIDs cost exactly what real ones do).

Run by the harness as::

    python3 -m hypercorn --bind 127.0.0.1:PORT --workers N --worker-class uvloop reference_app:app

With ``BENCH_REFERENCE_SHAPE=tokensvc`` (the ``reference-shaped`` configuration) the same bare
endpoint answers in tokensvc's shape, still with none of its features: it reads and parses the
JSON body, and its 200 has tokensvc's fields (``expires_at``, ``refresh_in``, a three-edge
list, regions) and headers (``Pragma``, ``X-Request-Id``). The difference between the two
references is what the API's request and response cost the server, whatever the application.
"""

from __future__ import annotations

import itertools
import json
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

ACCOUNT_SID = os.environ["BENCH_ACCOUNT_SID"]
API_KEY_SID = os.environ["BENCH_API_KEY_SID"]
API_KEY_SECRET = os.environ["BENCH_API_KEY_SECRET"]
APP_SID = os.environ["BENCH_APP_SID"]
TTL = 3600
SHAPE = os.environ.get("BENCH_REFERENCE_SHAPE", "demo")
EDGES = ["dublin", "frankfurt", "ashburn"]
_ids = itertools.count(1)


def mint(identity: str) -> str:
    """The Voice token, as Twilio's quickstarts build it."""
    access_token = AccessToken(ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET, identity=identity, ttl=TTL)
    access_token.add_grant(VoiceGrant(outgoing_application_sid=APP_SID, incoming_allow=True))
    jwt_text: str = access_token.to_jwt()
    return jwt_text


async def token(request: Request) -> JSONResponse:
    identity = request.query_params.get("identity", "alice")
    return JSONResponse(
        {"token": mint(identity), "identity": identity, "ttl": TTL},
        headers={"cache-control": "no-store"},
    )


async def token_shaped(request: Request) -> JSONResponse:
    """``token`` with tokensvc's request body and response shape (no feature behind them)."""
    json.loads(await request.body())
    identity = request.query_params.get("identity", "alice")
    expires = int(time.time()) + TTL
    document = {
        "token": mint(identity),
        "identity": identity,
        "ttl": TTL,
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        "refresh_in": TTL * 4 // 5,
        "edges": EDGES,
        "region": "bench",
        "home_region": "us1",
    }
    request_id = f"{next(_ids):016x}"
    headers = {"cache-control": "no-store", "pragma": "no-cache", "x-request-id": request_id}
    return JSONResponse(document, headers=headers)


async def readyz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route(
            "/v1/clients/{client}/token",
            token_shaped if SHAPE == "tokensvc" else token,
            methods=["POST"],
        ),
        Route("/readyz", readyz),
    ]
)
