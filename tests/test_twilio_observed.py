"""What the verifier shows: ``/readyz`` per client and key, and the Prometheus gauges.

Unit tests drive ``KeyHealth.readiness`` and ``Telemetry.twilio_round``; the last tests run a
real ``tokensvc serve`` against the fake Twilio (the issue's "Done when").
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from prometheus_client import CollectorRegistry

from fake_twilio import OTHER_SECRET, OTHER_SID, FakeTwilio, world
from support import (
    API_KEY_SECRET,
    API_KEY_SID,
    APP_SID,
    assertion,
    get,
    serve,
    wait_until,
    write_client,
)
from tokensvc.clients import load_clients
from tokensvc.observability import AccessLog, Metrics, Telemetry
from tokensvc.verifier import Check, ClientReport, KeyHealth, KeyReport

BAD_FIRST = {
    "api_key_sid": None,
    "api_key_secret": None,
    "api_keys": [
        {"sid": OTHER_SID, "secret": OTHER_SECRET},
        {"sid": API_KEY_SID, "secret": API_KEY_SECRET},
    ],
}
WRONG = "wrong-secret-never-shown-0123456789"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    twilio = world().start()
    yield twilio
    twilio.stop()


def rejected_report(client_id: str = "app") -> ClientReport:
    checks = (Check("application", APP_SID, "rejected", "401/20003"),)
    return ClientReport(client_id, "rejected", (KeyReport(API_KEY_SID, "rejected", checks),))


def test_readiness_says_unknown_before_the_first_round() -> None:
    """A configured client not yet checked is unknown, with no key detail."""
    assert {"mode": "warn", "clients": {"app": {"status": "unknown", "keys": []}}} == KeyHealth(
        "warn"
    ).readiness(["app"])


def test_readiness_names_the_key_and_the_failed_check(tmp_path: Path) -> None:
    """After a report: the client's status, each key's SID and status, what failed and why."""
    write_client(tmp_path, "app", twilio={"api_key_secret": WRONG})
    config = load_clients(tmp_path, {})["app"]
    health = KeyHealth("warn")
    health.record(config, rejected_report())
    shown = health.readiness(["app"])
    assert {
        "mode": "warn",
        "clients": {
            "app": {
                "status": "rejected",
                "keys": [
                    {
                        "sid": API_KEY_SID,
                        "status": "rejected",
                        "checks": {"application": "rejected"},
                        "failed": [
                            {
                                "check": "application",
                                "resource": APP_SID,
                                "result": "rejected",
                                "detail": "401/20003",
                            }
                        ],
                    }
                ],
            }
        },
    } == shown
    assert WRONG not in json.dumps(shown)


def telemetry() -> tuple[Telemetry, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return Telemetry(metrics, AccessLog(logging.getLogger("test")), "us1"), metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_round_sets_one_result_per_check() -> None:
    """The current result is 1, every other result of that check 0; the client likewise."""
    tel, m = telemetry()
    tel.twilio_round({"app": "rejected"}, [("app", API_KEY_SID, "application", "rejected")])
    check = {"client": "app", "key_sid": API_KEY_SID, "check": "application"}
    assert ((1.0, 0.0, 0.0), (1.0, 0.0)) == (
        (
            sample(m, "tokensvc_twilio_check", **check, result="rejected"),
            sample(m, "tokensvc_twilio_check", **check, result="ok"),
            sample(m, "tokensvc_twilio_check", **check, result="unknown"),
        ),
        (
            sample(m, "tokensvc_twilio_client_status", client="app", status="rejected"),
            sample(m, "tokensvc_twilio_client_status", client="app", status="ok"),
        ),
    )


def test_a_key_or_client_that_left_the_config_drops_to_zero() -> None:
    """A rotated-out rejected key and a removed client stop firing the alert."""
    tel, m = telemetry()
    tel.twilio_round(
        {"app": "rejected", "old": "missing"},
        [("app", OTHER_SID, "application", "rejected"), ("old", API_KEY_SID, "applications", "ok")],
    )
    tel.twilio_round({"app": "ok"}, [("app", API_KEY_SID, "application", "ok")])
    gone = {"client": "app", "key_sid": OTHER_SID, "check": "application", "result": "rejected"}
    assert (0.0, 0.0, 1.0, 2.0) == (
        sample(m, "tokensvc_twilio_check", **gone),
        sample(m, "tokensvc_twilio_client_status", client="old", status="missing"),
        sample(m, "tokensvc_twilio_client_status", client="app", status="ok"),
        sample(m, "tokensvc_twilio_verification_rounds_total"),
    )


# --- the real process ------------------------------------------------------------------------


def readyz(url: str) -> dict[str, Any]:
    status, body = get(url + "/readyz")
    assert 200 == status  # information only: a rejected key never makes the pod unready
    found: dict[str, Any] = json.loads(body)
    return found


def client_status(url: str) -> str:
    status: str = readyz(url)["checks"]["twilio"]["clients"]["app"]["status"]
    return status


def metrics_text(served: Any) -> str:
    return get(f"http://127.0.0.1:{served.admin_port}/metrics")[1].decode()


def post_token(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/v1/clients/app/token",
        method="POST",
        data=b"{}",
        headers={"Authorization": f"Bearer {assertion()}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        e.close()
        return e.code, body


def service_env(fake: FakeTwilio, mode: str) -> dict[str, str]:
    return {**fake.env(), "TOKENSVC_TWILIO_VERIFY": mode, "TOKENSVC_HTTP_TIMEOUT": "1"}


@pytest.mark.process
def test_a_running_service_shows_a_wrong_secret_in_readyz_and_metrics(
    fake: FakeTwilio, tmp_path: Path
) -> None:
    """tokensvc serve (warn): after the start-up round /readyz (still 200) says the client
    is rejected naming the key, and /metrics carries the rejected check; no secret shown."""
    config = tmp_path / "clients"
    write_client(config, "app", twilio={"api_key_secret": WRONG})
    with serve(config, tmp_path, service_env(fake, "warn")) as served:
        wait_until(lambda: client_status(served.url) != "unknown", 15, "a verification round")
        shown = readyz(served.url)["checks"]["twilio"]["clients"]["app"]
        text = metrics_text(served)
        log = served.log()
    check = re.search(
        r'tokensvc_twilio_check\{check="application",client="app",key_sid="'
        + API_KEY_SID
        + r'",result="rejected"\} 1\.0',
        text,
    )
    client = 'tokensvc_twilio_client_status{client="app",status="rejected"} 1.0'
    assert ("rejected", [API_KEY_SID], True, True, False) == (
        shown["status"],
        [k["sid"] for k in shown["keys"] if k["status"] == "rejected"],
        check is not None,
        client in text,
        WRONG in text + json.dumps(shown) + log,
    )


@pytest.mark.process
def test_enforce_in_a_running_service_signs_with_the_next_key_without_a_failed_request(
    fake: FakeTwilio, tmp_path: Path
) -> None:
    """tokensvc serve (enforce), bad key first: every request during and after the first
    round is 200, and once the round is in, the token's iss is the second (good) key."""
    config = tmp_path / "clients"
    write_client(config, "app", twilio=BAD_FIRST)
    codes: list[int] = []
    with serve(config, tmp_path, service_env(fake, "enforce")) as served:

        def healed() -> bool:
            status, body = post_token(served.url)
            codes.append(status)
            iss = jwt.decode(body["token"], options={"verify_signature": False})["iss"]
            return status == 200 and iss == API_KEY_SID

        wait_until(healed, 15, "the second key to sign")
        status, body = post_token(served.url)
        claims = jwt.decode(body["token"], API_KEY_SECRET, algorithms=["HS256"])
        key_states = {
            k["sid"]: k["status"]
            for k in readyz(served.url)["checks"]["twilio"]["clients"]["app"]["keys"]
        }
    assert (set(), 200, API_KEY_SID, {OTHER_SID: "rejected", API_KEY_SID: "ok"}) == (
        set(codes) - {200},
        status,
        claims["iss"],
        key_states,
    )
