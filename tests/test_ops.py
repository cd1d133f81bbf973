"""Operator tooling: drains and blocks written to every region, per-region reports, sync."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from redis_servers import Node
from support import eventually, write_client
from tokensvc.errors import ConfigError
from tokensvc.ops import Ops, Region, format_duration, load_ops_config, parse_duration
from tokensvc.ops_cli import add_ops_commands
from tokensvc.secret import Secret
from tokensvc.store.entries import DRAINS, Entry, merge
from tokensvc.store.redis import RedisStore
from tokensvc.store.shared import SharedState
from tokensvc.store.urls import Timeouts


def cli(*argv: str) -> int:
    """Run one ops command the way ``tokensvc`` does; return its exit status."""
    parser = argparse.ArgumentParser(prog="tokensvc")
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(list(argv))
    return int(ns.func(ns))


def write_ops_config(path: Path, regions: dict[str, str]) -> Path:
    path.write_text(json.dumps({"regions": regions}))  # JSON is YAML
    return path


@pytest.fixture
async def pods() -> AsyncIterator[Callable[[str], Awaitable[SharedState]]]:
    """Started SharedStates (one per region), stopped at teardown."""
    made: list[SharedState] = []

    async def make(url: str) -> SharedState:
        state = SharedState(RedisStore(url), refresh_interval=0.5)
        await state.start()
        made.append(state)
        return state

    yield make
    for state in made:
        await state.stop()


# -- pure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations are seconds, or numbers with s/m/h/d units, combinable."""
    assert seconds == parse_duration(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0m",
        "-5m",
        "5x",
        "m5",
        "1h 30m",
        "1.5h",
        "\uff11h",
        "\u0661\u0662",
        "1\uff10m",
        "99999999999d",
        "366d",
        "9" * 400,
        "+5m",
        "1_0m",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    """Empty, zero, negative, malformed, non-ASCII-digit (full-width, Arabic-Indic) and
    over-the-maximum (365d by default) durations are refused with ValueError."""
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_shows_two_largest_units() -> None:
    """Durations print compactly."""
    assert ["1h30m", "7d", "45s", "0s"] == [
        format_duration(5400),
        format_duration(7 * 86400),
        format_duration(45),
        format_duration(-3),
    ]


def test_merge_later_shorter_drain_wins_even_when_expired() -> None:
    """A later, shorter drain overrides an earlier, longer one, even once it has expired."""
    earlier_long = Entry(100.0, 100.0 + 86400, "long")
    later_short = Entry(200.0, 260.0, "short")
    assert {"dublin": later_short} == merge([{"dublin": earlier_long}, {"dublin": later_short}])


def test_merge_tombstone_beats_older_drain() -> None:
    """An undrain issued after a drain wins over it, in whatever order regions are read."""
    drain, undo = Entry(100.0, 2000.0), Entry.tombstone(150.0)
    assert [undo, undo] == [
        merge([{"x": drain}, {"x": undo}])["x"],
        merge([{"x": undo}, {"x": drain}])["x"],
    ]


def test_ops_config_forms_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions are URLs, or mappings whose url/password come from env or files."""
    monkeypatch.setenv("EU_URL", "redis://eu:6379/0")
    (tmp_path / "pw").write_text("s3cret\n")
    config = tmp_path / "ops.yaml"
    config.write_text(
        "regions:\n"
        "  us-east: redis+sentinel://a:1,b:2/tokensvc\n"
        f"  eu-west: {{url: {{env: EU_URL}}, password: {{file: {tmp_path / 'pw'}}}}}\n"
    )
    regions = load_ops_config(config, os.environ).regions
    assert (["us-east", "eu-west"], "s3cret") == (
        [r.name for r in regions],
        regions[1].password.reveal() if regions[1].password else "",
    )


def test_ops_config_reports_every_problem_without_secrets(tmp_path: Path) -> None:
    """Every bad region is reported at once; URLs (which may hold passwords) are not echoed."""
    config = write_ops_config(
        tmp_path / "ops.yaml",
        {
            "a": "http://:hunter2@x",
            "b": "redis+sentinel://h:1",
            "c d": "redis://x",
        },
    )
    with pytest.raises(ConfigError) as info:
        load_ops_config(config, {})
    assert (3, False) == (len(info.value.problems), "hunter2" in str(info.value))


@pytest.mark.parametrize(
    "argv",
    [
        ["edges", "drain", "dublin", "--for", "99999999999d"],
        ["edges", "drain", "dublin", "--for", "\uff11h"],
        ["edges", "drain", "frankfort"],
        ["edges", "drain", "roaming"],
        ["edges", "drain", "dublin", "--for", "soon"],
        ["edges", "drain", "dublin", "--for", "8d"],
        ["identities", "block", "Bad Client", "alice", "--for", "1h"],
        ["identities", "block", "acme", "", "--for", "1h"],
        ["identities", "block", "acme", "alice"],
        ["identities", "block", "acme", "alice", "--for", "99999999999d"],
        ["identities", "block", "acme", "alice", "--for", "\uff11h"],
        ["identities", "block", "acme", "alice", "--for", "366d"],
        ["identities", "block", "acme", "alice", "--for", "1h", "--permanent"],
    ],
)
def test_bad_input_exits_2_before_connecting(argv: list[str], tmp_path: Path) -> None:
    """Unknown edges, roaming, bad durations and bad names exit 2 (nothing is contacted: the
    ops config points at a port nobody listens on)."""
    config = write_ops_config(tmp_path / "ops.yaml", {"x": "redis://127.0.0.1:1/0"})
    assert 2 == cli(*argv, "--ops-config", str(config))


def test_no_ops_config_and_no_redis_url_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an ops config or TOKENSVC_REDIS_URL there is nowhere to write: exit 2."""
    monkeypatch.delenv("TOKENSVC_OPS_CONFIG", raising=False)
    monkeypatch.delenv("TOKENSVC_REDIS_URL", raising=False)
    assert 2 == cli("edges", "list")


# -- real regions ---------------------------------------------------------------------------


async def test_drain_reaches_both_regions_within_2s(
    node_factory: Callable[[], Node],
    pods: Callable[[str], Awaitable[SharedState]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One `edges drain`, two regions each with its own Redis: both pods drop the edge
    within 2 s, and the command reports ok for each region."""
    us, eu = node_factory(), node_factory()
    pod_us, pod_eu = await pods(us.url), await pods(eu.url)
    config = write_ops_config(tmp_path / "ops.yaml", {"us-east": us.url, "eu-west": eu.url})
    started = time.monotonic()
    status = await asyncio.to_thread(
        cli,
        "edges",
        "drain",
        "dublin",
        "--for",
        "30m",
        "--reason",
        "test",
        "--ops-config",
        str(config),
    )
    await eventually(
        lambda: all("dublin" in p.snapshot.drained(time.time()) for p in (pod_us, pod_eu)), 2.0
    )
    took = time.monotonic() - started
    out = capsys.readouterr().out
    with capsys.disabled():
        print(f"\n[figures] ops_drain_two_regions: {json.dumps({'seconds': round(took, 3)})}")
    assert (0, 2) == (status, out.count(" ok "))
    assert took < 2.0


async def test_region_down_is_reported_and_sync_catches_it_up(
    node_factory: Callable[[], Node],
    pods: Callable[[str], Awaitable[SharedState]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With one region's Redis down, drain exits 1 naming that region; once it is back
    (empty), `edges sync` exits 0 and its pod sees the drain."""
    us, eu = node_factory(), node_factory()
    config = write_ops_config(tmp_path / "ops.yaml", {"us-east": us.url, "eu-west": eu.url})
    await asyncio.to_thread(eu.kill)
    status_down = await asyncio.to_thread(
        cli, "edges", "drain", "tokyo", "--for", "1h", "--ops-config", str(config)
    )
    out_down = capsys.readouterr()
    await asyncio.to_thread(eu.restart)
    pod_eu = await pods(eu.url)
    before = pod_eu.snapshot.drained(time.time())
    status_sync = await asyncio.to_thread(cli, "edges", "sync", "--ops-config", str(config))
    await eventually(lambda: "tokyo" in pod_eu.snapshot.drained(time.time()), 2.0)
    assert (1, True, frozenset(), 0) == (
        status_down,
        "eu-west  FAILED" in out_down.out,
        before,
        status_sync,
    )


async def test_sync_does_not_resurrect_an_undrain(
    node_factory: Callable[[], Node],
    pods: Callable[[str], Awaitable[SharedState]],
) -> None:
    """A region that missed an undrain (paused) keeps its stale drain until sync, which
    applies the undrain there instead of copying the drain back to the others."""
    us, eu = node_factory(), node_factory()
    regions = [Region("us-east", Secret(us.url)), Region("eu-west", Secret(eu.url))]
    ops = Ops(regions, timeouts=Timeouts(call=0.5), region_timeout=1.0)
    await ops.drain("dublin", 3600, "")
    eu.pause()
    try:
        undrain = await ops.undrain("dublin")
    finally:
        eu.resume()
    pod_us, pod_eu = await pods(us.url), await pods(eu.url)
    stale = "dublin" in pod_eu.snapshot.drained(time.time())
    synced = await ops.sync(DRAINS)
    await eventually(lambda: "dublin" not in pod_eu.snapshot.drained(time.time()), 2.0)
    assert ([True, False], True, [True, True]) == (
        [r.ok for r in undrain],
        stale,
        [r.ok for r in synced],
    )
    assert frozenset() == pod_us.snapshot.drained(time.time())


async def test_commands_are_idempotent(node_factory: Callable[[], Node]) -> None:
    """Repeating a drain leaves one drain; a second sync has nothing left to write."""
    us, eu = node_factory(), node_factory()
    ops = Ops([Region("us", Secret(us.url)), Region("eu", Secret(eu.url))])
    await ops.drain("dublin", 600, "a")
    await ops.drain("dublin", 600, "a")
    first, second = await ops.sync(DRAINS), await ops.sync(DRAINS)
    shown = await ops.show(DRAINS)
    assert (["dublin"], ["dublin"]) == tuple(sorted(r.entries) for r in shown)
    assert ["0 written, 1 active"] * 2 == [r.detail for r in second]
    assert all(r.ok for r in first)


async def test_identities_block_list_unblock(
    node_factory: Callable[[], Node],
    pods: Callable[[str], Awaitable[SharedState]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """block makes the identity blocked in every region's pod, list shows it (JSON), and
    unblock lifts it everywhere."""
    us, eu = node_factory(), node_factory()
    pod_us, pod_eu = await pods(us.url), await pods(eu.url)
    config = str(write_ops_config(tmp_path / "ops.yaml", {"us": us.url, "eu": eu.url}))
    clients = str(tmp_path / "clients")
    write_client(tmp_path / "clients", "acme")

    def blocked() -> list[bool]:
        return [p.snapshot.is_blocked("acme", "mallory", time.time()) for p in (pod_us, pod_eu)]

    block = await asyncio.to_thread(
        cli,
        "identities",
        "block",
        "acme",
        "mallory",
        "--permanent",
        "--reason",
        "fraud",
        "--ops-config",
        config,
        "--config",
        clients,
    )
    await eventually(lambda: all(blocked()), 2.0)
    capsys.readouterr()
    listed = await asyncio.to_thread(cli, "identities", "list", "--json", "--ops-config", config)
    doc = json.loads(capsys.readouterr().out)
    unblock = await asyncio.to_thread(
        cli, "identities", "unblock", "acme", "mallory", "--ops-config", config, "--config", clients
    )
    await eventually(lambda: not any(blocked()), 2.0)
    entries = doc["regions"]["eu"]["entries"]
    assert (0, 0, 0) == (block, listed, unblock)
    assert [("acme", "mallory", "fraud", None)] == [
        (e["client"], e["identity"], e["reason"], e["until"]) for e in entries.values()
    ]


def test_single_region_from_env(
    redis_node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an ops config, TOKENSVC_REDIS_URL is the one region, named by TOKENSVC_REGION."""
    monkeypatch.delenv("TOKENSVC_OPS_CONFIG", raising=False)
    monkeypatch.setenv("TOKENSVC_REDIS_URL", redis_node.url)
    monkeypatch.setenv("TOKENSVC_REGION", "solo")
    status = cli("edges", "drain", "sydney", "--for", "5m")
    listed = cli("edges", "list")
    out = capsys.readouterr().out
    assert (0, 0, True, True) == (status, listed, "sydney" in out, "region solo: ok" in out)
