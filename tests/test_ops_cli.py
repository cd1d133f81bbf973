"""The ops command line: what `identities block|unblock` store, and every refusal (exit 2, one
``error:`` line, no traceback, nothing contacted), listings that read no region (exit 1)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_servers import Node
from support import eventually, post_token, serve, write_client
from tokensvc.clients import load_clients
from tokensvc.ops import MAX_BLOCK_SECONDS, block_identity, parse_duration
from tokensvc.ops_cli import add_ops_commands

#: Nobody listens on port 1 of loopback: a command that got that far would fail (exit 1).
UNREACHABLE = "redis://127.0.0.1:1/0"
PREFIX = "acme_"


def cli(*argv: str) -> int:
    """Run one ops command the way ``tokensvc`` does; return its exit status."""
    parser = argparse.ArgumentParser(prog="tokensvc")
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(list(argv))
    return int(ns.func(ns))


def ops_config(path: Path, regions: dict[str, str], clients_dir: str | None = None) -> str:
    doc: dict[str, object] = {"regions": regions}
    if clients_dir is not None:
        doc["clients_dir"] = clients_dir
    path.write_text(json.dumps(doc))  # JSON is YAML
    return str(path)


@pytest.fixture
def clients(tmp_path: Path) -> Path:
    """A client directory holding ``app`` (escape encoding, prefix ``acme_``)."""
    directory = tmp_path / "clients"
    write_client(directory, "app", auth={"identity_prefix": PREFIX})
    return directory


# -- end to end ----------------------------------------------------------------------------


async def test_block_by_subject_stops_that_caller_only(
    redis_node: Node, clients: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running service on a real Valkey: `identities block app 'auth0|777' --for 1h` (client
    directory taken from the ops config's clients_dir) prints the Twilio identity the service
    issued to that caller, and the caller then gets 403; a different caller whose raw subject
    is that Twilio identity string still gets tokens."""
    config = ops_config(tmp_path / "ops.yaml", {"solo": redis_node.url}, clients_dir="clients")
    with serve(clients, tmp_path, env={"TOKENSVC_REDIS_URL": redis_node.url}) as served:
        before, issued = await asyncio.to_thread(post_token, served.url, "auth0|777")
        status = await asyncio.to_thread(
            cli, "identities", "block", "app", "auth0|777", "--for", "1h", "--ops-config", config
        )
        out = capsys.readouterr().out

        # The check makes a blocking request; nothing else runs on this event loop.
        await eventually(lambda: 403 == post_token(served.url, "auth0|777")[0], 5.0)
        other, other_body = await asyncio.to_thread(post_token, served.url, str(issued["identity"]))
    assert (200, 0, 200) == (before, status, other)
    assert f"twilio identity: {issued['identity']} (" in out
    assert PREFIX + "auth0_7c777" == issued["identity"]
    assert other_body["identity"] != issued["identity"]


# -- what a block stores ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "twilio", "expected"),
    [
        ("auth0|777", None, PREFIX + "auth0_7c777"),
        ("alice", None, PREFIX + "alice"),
        ("a_b", None, PREFIX + "a__b"),
        (None, PREFIX + "auth0_7c777", PREFIX + "auth0_7c777"),
    ],
)
def test_block_identity_is_what_the_token_path_issues(
    clients: Path, subject: str | None, twilio: str | None, expected: str
) -> None:
    """A subject is encoded and prefixed as the token path does; --twilio-identity is kept."""
    client = load_clients(clients, {})["app"]
    assert expected == block_identity(client, subject, twilio)


@pytest.mark.parametrize(
    ("subject", "twilio"),
    [
        (None, "auth0_7c777"),  # lacks the client's prefix: never issued
        (None, "auth0|777"),  # not a Twilio identity at all
        (None, PREFIX + "auth0_7C777"),  # upper-case escape: the encoding never writes it
        (None, PREFIX + "a_zz"),  # not a valid escape
        (None, PREFIX + "a_"),
        ("alice", PREFIX + "alice"),  # both
        (None, None),  # neither
        ("x" * 200, None),  # too long once encoded
    ],
)
def test_block_identity_refuses_what_is_never_issued(
    clients: Path, subject: str | None, twilio: str | None
) -> None:
    """A Twilio identity this client can never issue (so the block could never match), or a
    subject that can never get a token, is refused with ValueError."""
    client = load_clients(clients, {})["app"]
    with pytest.raises(ValueError):
        block_identity(client, subject, twilio)


# -- refusals: exit 2, a message, nothing contacted ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["identities", "block", "ap", "auth0|777", "--for", "1h"],
            "error: unknown client 'ap' in ",
        ),
        (["identities", "unblock", "ap", "auth0|777"], "did you mean app? known: app"),
        (
            ["identities", "block", "app", "auth0|777"],
            "error: a block must say how long it lasts: "
            "--for DURATION (at most 365d) or --permanent",
        ),
        (
            ["identities", "block", "app", "auth0|777", "--for", "99999999999d"],
            "error: 99999999999d is longer than the maximum, 365d",
        ),
        (
            ["edges", "drain", "dublin", "--for", "99999999999d"],
            "error: 99999999999d is longer than the maximum, 7d",
        ),
        (
            ["identities", "block", "app", "auth0|777", "--for", "\uff11h"],
            "error: not a duration: '\uff11h' (ASCII digits",
        ),
        (
            ["identities", "block", "app", "--twilio-identity", "auth0_7c777", "--permanent"],
            "error: every Twilio identity of client 'app' starts with 'acme_'",
        ),
        (
            ["identities", "block", "app", "--permanent"],
            "error: give the caller's SUBJECT, or --twilio-identity NAME (not both)",
        ),
    ],
)
def test_refusals_name_the_problem(
    argv: list[str], message: str, clients: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Misspelled clients (with the known ids), blocks without --for/--permanent, durations
    over the maximum or in non-ASCII digits, identities the client never issues: exit 2 with
    one error line, before any region is contacted."""
    config = ops_config(tmp_path / "ops.yaml", {"x": UNREACHABLE})
    status = (
        cli(*argv, "--ops-config", config, "--config", str(clients))
        if argv[0] == "identities"
        else cli(*argv, "--ops-config", config)
    )
    err = capsys.readouterr().err
    assert (2, True, False) == (status, message in err, "Traceback" in err)


def test_client_dir_defaults_to_tokensvc_config_dir(
    clients: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --config or clients_dir, the client files are those of TOKENSVC_CONFIG_DIR."""
    monkeypatch.setenv("TOKENSVC_CONFIG_DIR", str(clients))
    config = ops_config(tmp_path / "ops.yaml", {"x": UNREACHABLE})
    status = cli("identities", "block", "app", "bob", "--for", "1m", "--ops-config", config)
    out = capsys.readouterr().out
    assert (1, f"twilio identity: {PREFIX}bob") == (status, out.splitlines()[0].split(" (")[0])


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00", b"regions: [", b"clients_dir: 5\nregions: {x: 'redis://127.0.0.1:1/0'}"],
)
def test_bad_ops_config_exits_2(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ops config that is not UTF-8, not YAML, or has a wrong-typed clients_dir: exit 2."""
    path = tmp_path / "ops.yaml"
    path.write_bytes(content)
    status = cli("edges", "list", "--ops-config", str(path))
    assert (2, False) == (status, "Traceback" in capsys.readouterr().err)


# -- listings --------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["edges", "identities"])
def test_listing_that_read_no_region_says_so(
    group: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every region unreachable: the listing says it could not read any region and exits 1,
    never "no active drains"/"no active blocks"."""
    config = ops_config(tmp_path / "ops.yaml", {"us": UNREACHABLE, "eu": UNREACHABLE})
    status = cli(group, "list", "--ops-config", config)
    out, err = capsys.readouterr()
    assert (1, False, True) == (status, "no active" in out, "could not read any region" in err)


def test_listing_with_one_region_down_reports_per_region(
    redis_node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One region read, one not: the table for the readable one, the failed one named, exit 1."""
    config = ops_config(tmp_path / "ops.yaml", {"us": redis_node.url, "eu": UNREACHABLE})
    status = cli("edges", "list", "--ops-config", config)
    out = capsys.readouterr().out
    assert (1, True, True) == (status, "no active drains" in out, "region eu: FAILED" in out)


# -- no input gives a traceback --------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_duration_returns_bounded_seconds_or_value_error(text: str) -> None:
    """Any string is either a duration in (0, 365d] or a ValueError, nothing else."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert (True, True) == (0 < seconds <= MAX_BLOCK_SECONDS, text.strip(" \t").isascii())


ARG = st.text(max_size=20) | st.sampled_from(
    ["app", "1h", "99999999999d", "\uff11h", "-", "--permanent", "\udcff"]
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(command=st.sampled_from(["block", "unblock"]), args=st.lists(ARG, max_size=4), duration=ARG)
def test_identity_commands_never_raise(
    command: str, args: list[str], duration: str, clients: Path, tmp_path: Path
) -> None:
    """Arbitrary arguments to `identities block|unblock` end in an exit status (argparse's 2
    included), never an exception."""
    config = ops_config(tmp_path / "ops.yaml", {"x": UNREACHABLE})
    extra = ["--for", duration] if command == "block" else []
    try:
        status = cli(
            "identities", command, *args, *extra, "--ops-config", config, "--config", str(clients)
        )
    except SystemExit as exc:  # argparse refusing the arguments
        status = int(exc.code or 0)
    assert status in (0, 1, 2)
