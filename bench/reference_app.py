"""The in-repo reference: a bare Starlette + Hypercorn endpoint that mints the same Voice token.

This is the "20-line demo" tokensvc is measured against (issue 7). It does only what a demo
does: no caller authentication, no edges, no rate limits, no logging, no metrics. The caller's
identity comes from the query string (``?identity=``), as in Twilio's quickstarts.

Credentials come from ``BENCH_*`` environment variables, read once at import; ``bench/run.py``
sets them to throwaway values generated per run (the token is signed locally and never sent to
Twilio, so fake SIDs cost exactly what real ones do).

Run by the harness as::

    python3 -m hypercorn --bind 127.0.0.1:PORT --workers N --worker-class uvloop reference_app:app
"""

from __future__ import annotations

import os

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


async def token(request: Request) -> JSONResponse:
    identity = request.query_params.get("identity", "alice")
    access_token = AccessToken(ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET, identity=identity, ttl=TTL)
    access_token.add_grant(VoiceGrant(outgoing_application_sid=APP_SID, incoming_allow=True))
    return JSONResponse(
        {"token": access_token.to_jwt(), "identity": identity, "ttl": TTL},
        headers={"cache-control": "no-store"},
    )


async def readyz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/clients/{client}/token", token, methods=["POST"]),
        Route("/readyz", readyz),
    ]
)
