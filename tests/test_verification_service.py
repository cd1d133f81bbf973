"""The verifier inside the running service: enforce-mode key choice, outages never felt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from fake_twilio import OTHER_SECRET, OTHER_SID, FakeTwilio, world
from support import API_KEY_SECRET, API_KEY_SID, assertion, make_client, wait_until, write_client
from tokensvc.verification import VerificationRunner

BAD_FIRST = {
    "api_key_sid": None,
    "api_key_secret": None,
    "api_keys": [
        {"sid": OTHER_SID, "secret": OTHER_SECRET},
        {"sid": API_KEY_SID, "secret": API_KEY_SECRET},
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    twilio = world().start()
    yield twilio
    twilio.stop()


def settings(fake: FakeTwilio, mode: str) -> dict[str, Any]:
    urls = {
        f"twilio_{kind}_url_{region}": fake.base_url(region)
        for kind in ("api", "notify")
        for region in fake.ports
    }
    return {"twilio_verify": mode, "http_timeout": 1.0, **urls}


def runner(test_client: TestClient) -> VerificationRunner:
    found = test_client.app.state.verification  # type: ignore[attr-defined]
    assert isinstance(found, VerificationRunner)
    return found


def token(test_client: TestClient, client_id: str = "app") -> Any:
    return test_client.post(
        f"/v1/clients/{client_id}/token", headers={"Authorization": f"Bearer {assertion()}"}
    )


def test_enforce_signs_with_the_next_good_key(fake: FakeTwilio, tmp_path: Path) -> None:
    """A rejected first key: after one round the token's iss is the second key."""
    directory = tmp_path / "clients"
    write_client(directory, "app", twilio=BAD_FIRST)
    with make_client(directory, **settings(fake, "enforce")) as test_client:
        wait_until(lambda: runner(test_client).rounds >= 1, 10, "a verification round")
        response = token(test_client)
        claims = jwt.decode(response.json()["token"], API_KEY_SECRET, algorithms=["HS256"])
    assert (200, API_KEY_SID) == (response.status_code, claims["iss"])


def test_warn_mode_reports_but_keeps_the_first_key(fake: FakeTwilio, tmp_path: Path) -> None:
    """warn: the rejected key is reported and still signs (behaviour unchanged)."""
    directory = tmp_path / "clients"
    write_client(directory, "app", twilio=BAD_FIRST)
    with make_client(directory, **settings(fake, "warn")) as test_client:
        wait_until(lambda: runner(test_client).rounds >= 1, 10, "a verification round")
        claims = jwt.decode(token(test_client).json()["token"], OTHER_SECRET, algorithms=["HS256"])
        status = runner(test_client).health.status()
    assert ({"app": "rejected"}, OTHER_SID) == (status, claims["iss"])


def test_a_client_with_every_key_rejected_is_not_ready_alone(
    fake: FakeTwilio, tmp_path: Path
) -> None:
    """enforce: that client answers 503 not_ready; another client mints; the pod stays ready."""
    directory = tmp_path / "clients"
    write_client(directory, "app")
    write_client(
        directory,
        "broken",
        twilio={"api_key_secret": "wrong-secret"},
        auth={"identity_prefix": "b"},
    )
    write_client(directory, "app", auth={"identity_prefix": "a"})
    with make_client(directory, **settings(fake, "enforce")) as test_client:
        wait_until(lambda: runner(test_client).rounds >= 1, 10, "a verification round")
        broken, good = token(test_client, "broken"), token(test_client, "app")
        ready = test_client.get("/readyz").status_code
    assert (503, "not_ready", 200, 200) == (
        broken.status_code,
        broken.json()["code"],
        good.status_code,
        ready,
    )


@pytest.mark.parametrize("mode", ["hang", "fail"])
def test_a_twilio_outage_neither_fails_nor_slows_tokens(
    fake: FakeTwilio, tmp_path: Path, mode: str
) -> None:
    """While every Twilio call hangs or fails, every token request succeeds without waiting on
    Twilio: each one takes less than a single Twilio call's deadline (1 s), so none of them
    waited for the verifier (latency itself is measured in bench/, not here)."""
    directory = tmp_path / "clients"
    write_client(directory, "app")
    fake.mode = mode
    with make_client(directory, **settings(fake, "enforce")) as test_client:
        wait_until(
            lambda: len(fake.requests) >= 4, 10, "4 requests to Twilio"
        )  # the round is under way
        during = timed(test_client)
        if mode == "hang":  # 3 attempts x 1 s deadline: the round outlasts the requests
            assert 0 == runner(test_client).rounds
    assert ([200] * 30, True) == (during[0], max(during[1]) < 1.0)


def timed(test_client: TestClient) -> tuple[list[int], list[float]]:
    codes, seconds = [], []
    for _ in range(30):
        started = time.perf_counter()
        codes.append(token(test_client).status_code)
        seconds.append(time.perf_counter() - started)
    return codes, sorted(seconds)[:-3]  # the slowest few are scheduler noise on 2 shared cores


def test_a_good_reload_starts_a_round(fake: FakeTwilio, tmp_path: Path) -> None:
    """After a reload the new config is checked without waiting for the interval."""
    directory = tmp_path / "clients"
    write_client(directory, "app")
    with make_client(directory, **settings(fake, "enforce"), reload_interval=0.05) as tc:
        wait_until(lambda: runner(tc).health.status() == {"app": "ok"}, 10, "app verified ok")
        write_client(directory, "app", twilio={"api_key_secret": "wrong-secret"})
        wait_until(lambda: runner(tc).health.status() == {"app": "rejected"}, 10, "app rejected")
        assert 503 == token(tc).status_code
