"""``tokensvc check-twilio``: exit codes and output against the fake Twilio REST API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_twilio import FakeTwilio, world
from support import API_KEY_SECRET, API_KEY_SID, write_client
from tokensvc.__main__ import main


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    twilio = world().start()
    for name, value in twilio.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TOKENSVC_HTTP_TIMEOUT", "0.5")
    yield twilio
    twilio.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check-twilio", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_all_good_exits_0(
    fake: FakeTwilio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every check passed: exit 0 and the client reported ok."""
    write_client(tmp_path, "app")
    assert (0, "app: ok (1 key(s), 4 check(s))\n") == run(capsys, "--config", str(tmp_path))


def test_a_wrong_secret_exits_1_naming_client_and_key_but_not_the_secret(
    fake: FakeTwilio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1; the line names client, key SID and failed check; the secret is not printed."""
    write_client(tmp_path, "app", twilio={"api_key_secret": "wrong-secret-value"})
    code, out = run(capsys, "--config", str(tmp_path))
    first = out.splitlines()[0]
    assert (
        1,
        f"FAIL app key {API_KEY_SID}: application AP{'3' * 32}: rejected (401/20003)",
        False,
    ) == (code, first, "wrong-secret-value" in out)


def test_a_missing_app_exits_1_in_json(
    fake: FakeTwilio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: ok false, the client's status missing."""
    fake.apps.clear()
    write_client(tmp_path, "app")
    code, out = run(capsys, "--config", str(tmp_path), "--json")
    doc = json.loads(out)
    assert (1, False, "missing") == (code, doc["ok"], doc["clients"][0]["status"])
    assert API_KEY_SECRET not in out


def test_an_unreachable_twilio_exits_0_listing_the_undecided(
    fake: FakeTwilio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """500s everywhere decide nothing: exit 0, each undecided check listed."""
    fake.mode = "fail"
    write_client(tmp_path, "app", twilio={"push_credentials": None})
    code, out = run(capsys, "--config", str(tmp_path))
    assert (
        0,
        [
            f"UNDECIDED app key {API_KEY_SID}: application AP{'3' * 32}: HTTP 500/20500",
            "app: unknown (1 key(s), 1 check(s))",
        ],
    ) == (code, out.splitlines())


def test_client_selects_one_and_an_unknown_one_exits_2(
    fake: FakeTwilio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--client checks only that client; an unknown id exits 2."""
    write_client(tmp_path, "app", auth={"identity_prefix": "a"})
    write_client(
        tmp_path, "other", twilio={"api_key_secret": "wrong"}, auth={"identity_prefix": "o"}
    )
    assert 0 == run(capsys, "--config", str(tmp_path), "--client", "app")[0]
    assert 2 == run(capsys, "--config", str(tmp_path), "--client", "nope")[0]
