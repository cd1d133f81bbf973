"""The peer: a token server written the way Twilio's Voice quickstarts write it (Flask, gunicorn).

Deliberately faithful to the quickstart, including what /work/shared/style.md calls the
anti-model: credentials read from the environment inside the handler on every request, identity
taken from the request values with a fixed fallback, no caller authentication, no error handling.
The only changes: the route also answers the benchmark's POST path, and ``/readyz`` exists so
the harness can time start-up the same way for every configuration.

Run by the harness as::

    python3 -m gunicorn --workers 1 --bind 127.0.0.1:PORT flask_quickstart:app
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

app = Flask(__name__)

DEFAULT_IDENTITY = "alice"


@app.route("/token", methods=["GET", "POST"])
@app.route("/v1/clients/<client>/token", methods=["GET", "POST"])
def token(client: str = "") -> ResponseReturnValue:
    account_sid = os.environ.get("BENCH_ACCOUNT_SID", "")
    api_key = os.environ.get("BENCH_API_KEY_SID", "")
    api_key_secret = os.environ.get("BENCH_API_KEY_SECRET", "")
    app_sid = os.environ.get("BENCH_APP_SID", "")

    identity = request.values.get("identity") or DEFAULT_IDENTITY
    access_token = AccessToken(account_sid, api_key, api_key_secret, identity=identity)
    access_token.add_grant(VoiceGrant(outgoing_application_sid=app_sid, incoming_allow=True))
    return jsonify(identity=identity, token=access_token.to_jwt())


@app.route("/readyz")
def readyz() -> ResponseReturnValue:
    return jsonify(status="ok")
