"""`status-feed components` and `status-feed check` (tokensvc.statusfeed.cli) against the
fake Statuspage, run as processes (python -m tokensvc.statusfeed.cli) and in-process."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from drill.fake_statuspage import FakeStatuspage, running
from fake_lease_store import FakeClock, MemoryLeaseStore
from support import write_client
from tokensvc.statusfeed.cli import main_check

pytestmark = pytest.mark.process  # the CLI runs as a subprocess


@pytest.fixture
def fake() -> Iterator[FakeStatuspage]:
    with running() as page:
        yield page


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokensvc.statusfeed.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def feed_file(tmp_path: Path, fake: FakeStatuspage, **changes: object) -> Path:
    doc: dict[str, object] = {
        "url": fake.url,
        "timeout_seconds": 1,
        "poll_interval_seconds": 10,
        "lease_seconds": 60,
        "components": {
            "ashburn00001": ["ashburn"],
            "dublin000001": ["dublin"],
            "frankfurt001": ["frankfurt"],
        },
    }
    doc.update(changes)
    path = tmp_path / "feed.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_components_lists_id_group_name_status(fake: FakeStatuspage) -> None:
    """Discovery prints a header and one tab-separated row per component."""
    fake.set_status("dublin000001", "partial_outage")
    done = cli("status-feed", "components", "--url", fake.url)
    lines = done.stdout.splitlines()
    assert (0, "id\tgroup\tname\tstatus") == (done.returncode, lines[0])
    assert "dublin000001\tVoice Edge Locations\tDublin (ie1)\tpartial_outage" in lines


def test_components_exits_1_when_the_feed_fails(fake: FakeStatuspage) -> None:
    """A 500 is reported on stderr with exit status 1."""
    fake.mode = "500"
    done = cli("status-feed", "components", "--url", fake.url)
    assert (1, "cannot read the feed: http_500\n") == (done.returncode, done.stderr)


def test_check_prints_the_drain_and_its_rule(fake: FakeStatuspage, tmp_path: Path) -> None:
    """An outage: check names the edge it would drain and the rule (confirmed)."""
    fake.set_status("ashburn00001", "major_outage")
    done = cli("status-feed", "check", "--config", str(feed_file(tmp_path, fake)))
    assert 0 == done.returncode
    assert "drain    ashburn       rule=confirmed ashburn00001 (major_outage)" in (
        done.stdout.splitlines()
    )


def test_check_reports_a_demotion_for_a_client_list(fake: FakeStatuspage, tmp_path: Path) -> None:
    """min_edges_kept=2 and a client default [ashburn, umatilla, roaming]: ashburn is
    demoted in that client's list rather than removed."""
    write_client(tmp_path / "clients", "app")
    fake.set_status("ashburn00001", "major_outage")
    done = cli(
        "status-feed",
        "check",
        "--config",
        str(feed_file(tmp_path, fake, min_edges_kept=2)),
        "--clients",
        str(tmp_path / "clients"),
    )
    assert 0 == done.returncode, done.stderr
    assert (
        "demote   ashburn       rule=min_edges_kept: client app keeps it last (min_edges_kept=2)"
    ) in done.stdout.splitlines()


@pytest.mark.parametrize("mode", ["garbage", "hang", "redirect"])
def test_check_exits_1_when_it_cannot_read_the_feed(
    mode: str, fake: FakeStatuspage, tmp_path: Path
) -> None:
    """Feed unreadable: exit 1, and the output says nothing would be renewed."""
    fake.mode = mode
    done = cli("status-feed", "check", "--config", str(feed_file(tmp_path, fake)))
    assert (1, "feed: down -> nothing would be renewed; feed leases expire by themselves\n") == (
        done.returncode,
        done.stdout,
    )


def test_check_refuses_an_invalid_config(tmp_path: Path) -> None:
    """A roaming mapping: exit 1, the file and field on stderr, no traceback."""
    path = tmp_path / "feed.yaml"
    path.write_text(
        "url: http://127.0.0.1:1/api/v2/components.json\ncomponents: {abc: [roaming]}\n"
    )
    done = cli("status-feed", "check", "--config", str(path))
    assert 1 == done.returncode
    assert f"{path}: components.abc.0: roaming can never be drained" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_with_a_store_shows_operator_precedence(
    fake: FakeStatuspage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given the store, an operator's drain on the failing edge is reported as left alone."""
    store = MemoryLeaseStore(FakeClock(time.time()))
    store.operator_drain("ashburn")
    fake.set_status("ashburn00001", "major_outage")
    args = argparse.Namespace(config=str(feed_file(tmp_path, fake)), clients=None)
    code = main_check(args, store)
    lines = capsys.readouterr().out.splitlines()
    assert 0 == code
    assert "skip     ashburn       rule=operator_drain ashburn00001 (major_outage)" in lines
