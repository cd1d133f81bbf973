"""``edges pin|unpin`` written to every region, and ``edges list`` showing feed leases and
pins, on two real valkey-servers; ``sync`` leaves each region's feed leases alone."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from redis_servers import Node
from tokensvc.ops_cli import add_ops_commands
from tokensvc.store.entries import DRAINS, PINS, PREFIX, Entry

LEASE = "statusfeed:ashburn00001:major_outage"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tokensvc")
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(list(argv))
    return int(ns.func(ns))


@pytest.fixture
def regions(tmp_path: Path, node_factory: Callable[[], Node]) -> tuple[str, Node, Node]:
    east, west = node_factory(), node_factory()
    path = tmp_path / "ops.yaml"
    path.write_text(json.dumps({"regions": {"east": east.url, "west": west.url}}))
    return str(path), east, west


def test_pin_is_written_to_every_region_and_unpin_ends_it(
    regions: tuple[str, Node, Node],
) -> None:
    """A pin is an expiring entry in every region; unpin leaves a tombstone everywhere."""
    config, east, west = regions
    pinned = cli(
        "edges", "pin", "ashburn", "--for", "2h", "--reason", "false alarm", "--ops-config", config
    )
    stored = [
        Entry.from_json(n.client().hget(PREFIX + PINS, "ashburn") or b"") for n in (east, west)
    ]
    unpinned = cli("edges", "unpin", "ashburn", "--ops-config", config)
    after = [
        Entry.from_json(n.client().hget(PREFIX + PINS, "ashburn") or b"") for n in (east, west)
    ]
    assert (0, ["false alarm"] * 2, 0, [True, True]) == (
        pinned,
        [e.reason if e else None for e in stored],
        unpinned,
        [bool(e and e.deleted) for e in after],
    )


@pytest.mark.parametrize("duration", ["8d", "0", "2 h", "\u0661h"])
def test_pin_refuses_bad_durations(regions: tuple[str, Node, Node], duration: str) -> None:
    """More than 7 days, zero, spaces or non-ASCII digits: exit 2, nothing written."""
    config, east, _ = regions
    code = cli("edges", "pin", "ashburn", "--for", duration, "--ops-config", config)
    assert (2, False) == (code, bool(east.client().hexists(PREFIX + PINS, "ashburn")))


def test_pin_refuses_roaming(regions: tuple[str, Node, Node]) -> None:
    """roaming is never drained, so pinning it is refused (exit 2)."""
    assert 2 == cli("edges", "pin", "roaming", "--for", "1h", "--ops-config", regions[0])


def test_list_marks_feed_leases_and_shows_pins(
    regions: tuple[str, Node, Node], capsys: pytest.CaptureFixture[str]
) -> None:
    """`edges list` marks a region's feed lease as such and lists pins; --json has both."""
    config, east, _ = regions
    east.client().hset(PREFIX + DRAINS, "dublin", Entry(1.0, 4e9, LEASE).to_json())
    cli("edges", "pin", "ashburn", "--for", "2h", "--ops-config", config)
    capsys.readouterr()
    codes = [cli("edges", "list", "--ops-config", config)]
    text = capsys.readouterr().out
    codes.append(cli("edges", "list", "--json", "--ops-config", config))
    doc = json.loads(capsys.readouterr().out)
    dublin = doc["regions"]["east"]["entries"].get("dublin", {})
    assert ([0, 0], True, True, True, {"ashburn"}) == (
        codes,
        "feed lease (east)" in text,
        "PINNED EDGE" in text,
        dublin.get("feed_lease"),
        set(doc["pins"]["west"]["entries"]),
    ), f"{text}\n{json.dumps(doc)}"


def test_sync_neither_copies_nor_removes_feed_leases(regions: tuple[str, Node, Node]) -> None:
    """A lease in east is not copied to west, and west's newer tombstone does not remove it."""
    config, east, west = regions
    east.client().hset(PREFIX + DRAINS, "dublin", Entry(2e9, 4e9, LEASE).to_json())
    west.client().hset(PREFIX + DRAINS, "dublin", Entry.tombstone(3e9).to_json())
    code = cli("edges", "sync", "--ops-config", config)
    east_now = Entry.from_json(east.client().hget(PREFIX + DRAINS, "dublin") or b"")
    west_now = Entry.from_json(west.client().hget(PREFIX + DRAINS, "dublin") or b"")
    assert (0, LEASE, True) == (
        code,
        east_now.reason if east_now else None,
        bool(west_now and west_now.deleted),
    )
