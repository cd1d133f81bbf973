"""The status feed inside the application (in-memory state: the process polls for itself):
the lifespan runs it, the webhook on the admin port only pokes it, and the edges route hands
out what the feed decided; a bad status-feed file stops ``serve`` before binding."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from drill.fake_statuspage import running
from support import make_client, write_client
from tokensvc.secret import Secret
from tokensvc.startup import check_inputs

SECRET = "s3cr3t-webhook-token-0123"
LISTED = ["ashburn", "umatilla", "roaming"]


def feed_file(path: Path, url: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "url": url,
                "poll_interval_seconds": 600,  # never within the test: only pokes poll
                "timeout_seconds": 1,
                "confirm_polls": 1,
                "clear_polls": 1,
                "lease_seconds": 1200,
                "max_stale_seconds": 1200,
                "components": {"ashburn00001": ["ashburn"]},
            }
        )
    )
    return path


def wait_for(check: object, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_webhook_pokes_the_feed_and_the_edge_is_drained(tmp_path: Path) -> None:
    """A right secret on the admin port answers 202 and polls now: the outage drains ashburn
    from the edges route; a wrong secret, or the public port, is a 404 and polls nothing."""
    write_client(tmp_path / "clients", edges={"default": LISTED})
    with running() as page:
        config = feed_file(tmp_path / "feed.yaml", page.url)
        client = make_client(
            tmp_path / "clients",
            admin_port=9090,
            status_feed_config=config,
            status_feed_webhook_secret=Secret(SECRET),
        )
        with client:
            assert wait_for(lambda: page.requests >= 1)  # the first poll, at start-up
            page.set_status("ashburn00001", "major_outage")
            wrong = client.post("http://127.0.0.1:9090/statusfeed/webhook/wrong-secret-0000000")
            public = client.post(f"/statusfeed/webhook/{SECRET}")
            polls_before = page.requests
            ok = client.post(f"http://127.0.0.1:9090/statusfeed/webhook/{SECRET}")
            drained = wait_for(
                lambda: client.get("/v1/clients/app/edges").json()["edges"] == LISTED[1:]
            )
            assert (404, 404, 202, True, True) == (
                wrong.status_code,
                public.status_code,
                ok.status_code,
                drained,
                page.requests > polls_before,
            )


def test_bad_status_feed_file_is_a_preflight_problem(tmp_path: Path) -> None:
    """serve's preflight names the status-feed file and the field."""
    write_client(tmp_path / "clients")
    bad = tmp_path / "feed.yaml"
    bad.write_text(
        json.dumps({"url": "http://x/api/v2/components.json", "components": {"c": ["roaming"]}})
    )
    _, problems = check_inputs(
        {"TOKENSVC_CONFIG_DIR": str(tmp_path / "clients"), "TOKENSVC_STATUS_FEED_CONFIG": str(bad)}
    )
    assert [str(bad)] == sorted({p.source for p in problems})


@pytest.mark.parametrize("value", ["short", "has/slash-0123456789"])
def test_webhook_secret_must_be_long_url_safe(value: str) -> None:
    """The webhook secret setting refuses short or non-URL-safe values."""
    _, problems = check_inputs({"TOKENSVC_STATUS_FEED_WEBHOOK_SECRET": value})
    assert ["TOKENSVC_STATUS_FEED_WEBHOOK_SECRET"] == [
        p.field for p in problems if "WEBHOOK" in p.field
    ]
