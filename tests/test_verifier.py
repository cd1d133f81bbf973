"""tokensvc.verifier and tokensvc.verification against a fake Twilio REST API on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_twilio import CR_ANDROID, CR_PROD, CR_SANDBOX, OTHER_SECRET, OTHER_SID, FakeTwilio, world
from support import ACCOUNT_SID, API_KEY_SECRET, API_KEY_SID, APP_SID, eventually, write_client
from tokensvc.clients import ClientConfig, load_clients
from tokensvc.errors import NotReady
from tokensvc.fetch import Fetcher
from tokensvc.minting import Minter
from tokensvc.twilio_hosts import region_hosts
from tokensvc.verification import VerificationRunner
from tokensvc.verifier import ClientReport, KeyHealth, TwilioVerifier


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    twilio = world().start()
    yield twilio
    twilio.stop()


@pytest.fixture
async def verifier(fake: FakeTwilio) -> AsyncIterator[TwilioVerifier]:
    fetcher = Fetcher()
    urls = {r: fake.base_url(r) for r in fake.ports}
    yield TwilioVerifier(fetcher, region_hosts(urls, urls), deadline=0.5, attempts=3, backoff=0.01)
    await fetcher.close()


def client(tmp_path: Path, **twilio: Any) -> ClientConfig:
    directory = tmp_path / "clients"
    write_client(directory, "app", twilio=twilio)
    return load_clients(directory, {})["app"]


def statuses(report: ClientReport) -> dict[str, str]:
    return {c.name: c.status for k in report.keys for c in k.checks}


async def test_a_correct_client_passes_every_check(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """Good key, app and credentials: every check ok, the client ok."""
    report = await verifier.check_client(client(tmp_path))
    assert (
        "ok",
        {
            "application": "ok",
            "push.ios.production": "ok",
            "push.ios.sandbox": "ok",
            "push.android": "ok",
        },
    ) == (report.status, statuses(report))


async def test_only_gets_and_never_accounts_or_keys(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """Every call is a GET of an Application or a Notify Credential with the key's Basic auth."""
    await verifier.check_client(client(tmp_path))
    paths = sorted((r.method, r.path, r.user) for r in fake.requests)
    assert [
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Applications/{APP_SID}.json", API_KEY_SID)
    ] + [
        ("GET", f"/v1/Credentials/{cr}", API_KEY_SID) for cr in (CR_PROD, CR_SANDBOX, CR_ANDROID)
    ] == paths


async def test_without_an_app_a_one_item_list_is_read(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """No outgoing_application_sid: the key is checked with Applications.json?PageSize=1."""
    report = await verifier.check_client(
        client(tmp_path, outgoing_application_sid=None, push_credentials=None)
    )
    assert ({"applications": "ok"}, [f"/2010-04-01/Accounts/{ACCOUNT_SID}/Applications.json"]) == (
        statuses(report),
        [r.path for r in fake.requests],
    )


async def test_a_wrong_secret_is_rejected(verifier: TwilioVerifier, tmp_path: Path) -> None:
    """401/20003 on a wrong secret marks the key and the client rejected."""
    report = await verifier.check_client(client(tmp_path, api_key_secret="wrong-secret"))
    assert ("rejected", "rejected", "401/20003") == (
        report.status,
        report.keys[0].status,
        report.keys[0].checks[0].detail,
    )


async def test_a_key_of_another_region_is_rejected(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """An ie1 client whose key was created in us1 is rejected by the ie1 host."""
    fake.apps.add(("ie1", APP_SID))
    report = await verifier.check_client(client(tmp_path, home_region="ie1", push_credentials=None))
    assert (["ie1"], "rejected") == (sorted({r.region for r in fake.requests}), report.status)


async def test_a_missing_app_is_missing(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """404/20404 for the TwiML App: the check and the client are missing; the key is ok."""
    fake.apps.clear()
    report = await verifier.check_client(client(tmp_path))
    assert ("missing", "ok", "missing") == (
        report.status,
        report.keys[0].status,
        statuses(report)["application"],
    )


async def test_a_swapped_sandbox_credential_is_a_mismatch(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """Production and sandbox APNs credentials swapped in the slots: both slots mismatch."""
    report = await verifier.check_client(
        client(tmp_path, push_credentials={"ios": {"production": CR_SANDBOX, "sandbox": CR_PROD}})
    )
    assert (
        "missing",
        {
            "application": "ok",
            "push.ios.production": "mismatch",
            "push.ios.sandbox": "mismatch",
            "push.android": "ok",
        },
    ) == (report.status, statuses(report))


async def test_an_fcm_slot_holding_an_apn_credential_is_a_mismatch(
    verifier: TwilioVerifier, tmp_path: Path
) -> None:
    """The android slot needs type fcm."""
    report = await verifier.check_client(client(tmp_path, push_credentials={"android": CR_PROD}))
    assert "mismatch" == statuses(report)["push.android"]


async def test_a_failing_twilio_is_retried_then_unknown(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """500s are retried on the same host (3 attempts) and leave the check unknown."""
    fake.mode = "fail"
    report = await verifier.check_client(client(tmp_path, push_credentials=None))
    assert ("unknown", "unknown", "HTTP 500/20500", 3) == (
        report.status,
        report.keys[0].status,
        report.keys[0].checks[0].detail,
        len(fake.requests),
    )


async def test_a_hanging_twilio_is_unknown_within_the_deadlines(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """A host that never answers costs at most attempts x deadline and leaves it unknown."""
    fake.mode = "hang"
    started = time.monotonic()
    report = await verifier.check_client(client(tmp_path, push_credentials=None))
    elapsed = time.monotonic() - started
    assert ("unknown", "timeout") == (report.status, report.keys[0].checks[0].detail)
    assert 1.5 <= elapsed < 2.5


async def test_an_outage_does_not_clear_a_rejection(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """Only definitive answers change state: rejected, then unknown, stays rejected."""
    health = KeyHealth("enforce")
    cfg = client(tmp_path, api_key_secret="wrong-secret", push_credentials=None)
    health.record(cfg, await verifier.check_client(cfg))
    fake.mode = "fail"
    after = health.record(cfg, await verifier.check_client(cfg))
    assert ("rejected", None) == (after.status, health.signing_key(cfg.twilio))


async def test_a_key_revoked_between_two_rounds_turns_rejected(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """The periodic runner sees a key deleted after its first round."""
    cfg = client(tmp_path, push_credentials=None)
    health = KeyHealth("warn")
    runner = VerificationRunner(verifier, health, lambda: {"app": cfg}, interval=0.1)
    runner.start()
    try:
        await eventually(lambda: runner.rounds >= 1, within=5)
        assert {"app": "ok"} == health.status()
        del fake.keys[API_KEY_SID]
        await eventually(lambda: health.status() == {"app": "rejected"}, within=5)
    finally:
        await runner.stop()


async def test_enforce_skips_a_rejected_key(
    verifier: TwilioVerifier, fake: FakeTwilio, tmp_path: Path
) -> None:
    """A bad new key first in api_keys: the next good key signs."""
    cfg = client(
        tmp_path,
        api_key_sid=None,
        api_key_secret=None,
        push_credentials=None,
        api_keys=[
            {"sid": OTHER_SID, "secret": OTHER_SECRET},
            {"sid": API_KEY_SID, "secret": API_KEY_SECRET},
        ],
    )
    health = KeyHealth("enforce")
    health.record(cfg, await verifier.check_client(cfg))
    key = Minter(cfg.twilio, 600, health).signing_key()
    assert (["rejected", "ok"], API_KEY_SID) == (
        [k.status for k in health.reports["app"].keys],
        key.sid,
    )


async def test_enforce_with_every_key_rejected_is_not_ready(
    verifier: TwilioVerifier, tmp_path: Path
) -> None:
    """Every key rejected: minting raises NotReady (503 not_ready); warn mode still signs."""
    cfg = client(tmp_path, api_key_secret="wrong-secret", push_credentials=None)
    enforce, warn = KeyHealth("enforce"), KeyHealth("warn")
    report = await verifier.check_client(cfg)
    enforce.record(cfg, report)
    warn.record(cfg, report)
    with pytest.raises(NotReady):
        Minter(cfg.twilio, 600, enforce).mint("alice")
    assert API_KEY_SID == Minter(cfg.twilio, 600, warn).signing_key().sid


async def test_a_corrected_secret_is_usable_again_at_once(
    verifier: TwilioVerifier, tmp_path: Path
) -> None:
    """A rejection belongs to the secret that was rejected, not to the key SID."""
    bad = client(tmp_path, api_key_secret="wrong-secret", push_credentials=None)
    health = KeyHealth("enforce")
    health.record(bad, await verifier.check_client(bad))
    good = client(tmp_path, push_credentials=None)
    assert API_KEY_SID == Minter(good.twilio, 600, health).signing_key().sid
