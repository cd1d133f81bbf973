"""``tokensvc edges ...`` and ``tokensvc identities ...``: the operator commands.

    edges drain EDGE [--for 30m] [--reason TEXT]       edges undrain EDGE
    edges pin EDGE --for 2h [--reason TEXT]            edges unpin EDGE
    edges list [--json]                                edges sync
    identities block CLIENT (SUBJECT | --twilio-identity NAME) (--for D | --permanent)
                     [--reason TEXT] [--config DIR]
    identities unblock CLIENT (SUBJECT | --twilio-identity NAME) [--config DIR]
    identities list [--json]                           identities sync

Each takes ``--ops-config FILE`` (default ``TOKENSVC_OPS_CONFIG``); without one, the single
Redis of ``TOKENSVC_REDIS_URL`` is used, as the region named by ``TOKENSVC_REGION``.
``identities block|unblock`` also read the client files (``--config DIR``, else the ops
config's ``clients_dir``, else ``TOKENSVC_CONFIG_DIR``) to check the client exists and to map
the subject to the Twilio identity the service compares blocks with; they print that identity
before writing anything.

``edges pin`` keeps the status feed from draining an edge (a known false alarm) for at most
7 days; ``edges list`` shows operator drains, feed leases (marked ``feed lease``) and pins.

Exit status: 0 every region done, 1 some region failed (re-run, or ``sync`` later) or, for a
listing, no region could be read at all; 2 bad input (unknown edge or client, bad duration,
block without ``--for`` or ``--permanent``, bad ops config), before any region is contacted.
Bad input is one ``error: ...`` line, never a traceback. URLs and passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tokensvc.errors import ConfigError
from tokensvc.ops import (
    MAX_BLOCK_SECONDS,
    MAX_DRAIN_SECONDS,
    Ops,
    OpsConfig,
    RegionResult,
    block_identity,
    find_client,
    format_duration,
    load_ops_config,
    parse_duration,
    regions_from_env,
)
from tokensvc.store.entries import BLOCKS, DRAINS, PINS, Entry, parse_block_field

if TYPE_CHECKING:
    from tokensvc.settings import Settings

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2

_CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # as client file names (tokensvc.clients)
_MAX_IDENTITY = 256
_MAX_REASON = 200

Handler = Callable[[argparse.Namespace], int]
_WHAT = {DRAINS: "drains", BLOCKS: "blocks", PINS: "pins"}


def add_ops_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``edges`` and ``identities`` (with their sub-commands) on a CLI."""
    edges = subparsers.add_parser("edges", help="drain/undrain edges in every region")
    edge_cmds = edges.add_subparsers(dest="edges_command", required=True, metavar="COMMAND")

    p = _command(
        edge_cmds, "drain", "remove an edge from every edge list, for a while", _edges_drain
    )
    p.add_argument("edge", metavar="EDGE", help="an edge name from the SDK catalogue")
    p.add_argument(
        "--for",
        dest="duration",
        default="30m",
        help="how long (e.g. 30m, 2h; at most 7d; default 30m): drains always expire",
    )
    p.add_argument("--reason", default="", help="shown by `edges list`")

    p = _command(edge_cmds, "undrain", "put a drained edge back", _edges_undrain)
    p.add_argument("edge", metavar="EDGE")

    p = _command(
        edge_cmds, "pin", "keep the status feed from draining an edge, for a while", _edges_pin
    )
    p.add_argument("edge", metavar="EDGE", help="an edge name from the SDK catalogue")
    p.add_argument(
        "--for",
        dest="duration",
        required=True,
        help="how long (e.g. 2h; at most 7d): pins always expire",
    )
    p.add_argument("--reason", default="", help="shown by `edges list`")

    p = _command(edge_cmds, "unpin", "let the status feed act on an edge again", _edges_unpin)
    p.add_argument("edge", metavar="EDGE")

    p = _command(edge_cmds, "list", "active drains, feed leases and pins, per region", _edges_list)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    _command(edge_cmds, "sync", "reconcile regions that missed drains/undrains", _edges_sync)

    identities = subparsers.add_parser("identities", help="block/unblock identities everywhere")
    id_cmds = identities.add_subparsers(dest="identities_command", required=True, metavar="COMMAND")

    p = _command(id_cmds, "block", "refuse tokens (403) for an identity of a client", _block)
    _identity_arguments(p)
    p.add_argument(
        "--for",
        dest="duration",
        default=None,
        metavar="DURATION",
        help=f"how long (e.g. 1h, 7d; at most {format_duration(MAX_BLOCK_SECONDS)})",
    )
    p.add_argument(
        "--permanent",
        action="store_true",
        help="no expiry: until `identities unblock` (give this or --for)",
    )
    p.add_argument("--reason", default="", help="shown by `identities list`")

    p = _command(id_cmds, "unblock", "lift a block", _unblock)
    _identity_arguments(p)

    p = _command(id_cmds, "list", "active blocks, per region", _blocks_list)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    _command(id_cmds, "sync", "reconcile regions that missed blocks/unblocks", _blocks_sync)


def _identity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client", metavar="CLIENT", help="the client id (its file name)")
    parser.add_argument(
        "subject",
        metavar="SUBJECT",
        nargs="?",
        default=None,
        help="the caller's raw identity as the identity provider sends it "
        "(e.g. auth0|777), mapped as the token path maps it",
    )
    parser.add_argument(
        "--twilio-identity",
        default=None,
        metavar="NAME",
        help="the exact Twilio identity instead of SUBJECT (as in token responses and logs)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="DIR",
        help="client directory (default: clients_dir of the ops config, else TOKENSVC_CONFIG_DIR)",
    )


def _command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--ops-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML listing every region's Redis (default: TOKENSVC_OPS_CONFIG)",
    )
    parser.set_defaults(func=handler)
    return parser


# -- handlers -------------------------------------------------------------------------------


def _edge_for_a_while(
    verb: str, write: Callable[[Ops, str, float, str], Coroutine[Any, Any, list[RegionResult]]]
) -> Handler:
    """``edges drain`` and ``edges pin``: an expiring entry for one edge, in every region."""

    def handler(ns: argparse.Namespace) -> int:
        try:
            edge = _edge(ns.edge)
            seconds = parse_duration(ns.duration, MAX_DRAIN_SECONDS)
            _reason(ns.reason)
        except ValueError as exc:
            return _usage(exc)
        return _run_ns(
            ns,
            lambda ops: write(ops, edge, seconds, ns.reason),
            f"{verb} {edge} for {format_duration(seconds)}",
            "edges",
        )

    return handler


def _edge_ended(
    verb: str, end: Callable[[Ops, str], Coroutine[Any, Any, list[RegionResult]]]
) -> Handler:
    """``edges undrain`` and ``edges unpin``: a tombstone for one edge, in every region."""

    def handler(ns: argparse.Namespace) -> int:
        try:
            edge = _edge(ns.edge)
        except ValueError as exc:
            return _usage(exc)
        return _run_ns(ns, lambda ops: end(ops, edge), f"{verb} {edge}", "edges")

    return handler


_edges_drain = _edge_for_a_while("drain", Ops.drain)
_edges_undrain = _edge_ended("undrain", Ops.undrain)
_edges_pin = _edge_for_a_while("pin", Ops.pin)
_edges_unpin = _edge_ended("unpin", Ops.unpin)


def _edges_list(ns: argparse.Namespace) -> int:
    return _run_list(ns, DRAINS)


def _edges_sync(ns: argparse.Namespace) -> int:
    return _run_ns(ns, lambda ops: ops.sync(DRAINS), "sync drains", "edges")


def _block(ns: argparse.Namespace) -> int:
    try:
        client = _client(ns.client)
        if ns.permanent and ns.duration is not None:
            raise ValueError("give --for DURATION or --permanent, not both")
        if not ns.permanent and ns.duration is None:
            raise ValueError(
                "a block must say how long it lasts: --for DURATION (at most "
                f"{format_duration(MAX_BLOCK_SECONDS)}) or --permanent"
            )
        seconds = None if ns.permanent else parse_duration(ns.duration, MAX_BLOCK_SECONDS)
        _reason(ns.reason)
    except ValueError as exc:
        return _usage(exc)
    target = _target(ns, client)
    if isinstance(target, int):
        return target
    config, identity = target
    span = "until unblocked" if seconds is None else f"for {format_duration(seconds)}"
    return _run(
        config,
        lambda ops: ops.block(client, identity, seconds, ns.reason),
        f"block {client}/{identity} {span}",
        "identities",
    )


def _unblock(ns: argparse.Namespace) -> int:
    try:
        client = _client(ns.client)
    except ValueError as exc:
        return _usage(exc)
    target = _target(ns, client)
    if isinstance(target, int):
        return target
    config, identity = target
    return _run(
        config,
        lambda ops: ops.unblock(client, identity),
        f"unblock {client}/{identity}",
        "identities",
    )


def _target(ns: argparse.Namespace, client_id: str) -> tuple[OpsConfig, str] | int:
    """The ops config and the Twilio identity to block, printed; or the exit status."""
    config = _ops_config(ns)
    if isinstance(config, int):
        return config
    environ = os.environ  # the CLI edge
    try:
        for given in (ns.subject, ns.twilio_identity):
            if given is not None:
                _identity(given)
        directory = ns.config or config.clients_dir or _settings(environ).config_dir
        client = find_client(directory, client_id, environ)
        identity = block_identity(client, ns.subject, ns.twilio_identity)
    except (ValueError, ConfigError) as exc:
        return _usage(exc)
    how = (
        "as given"
        if ns.subject is None
        else f"from subject {ns.subject!r}, {client.auth.identity_encoding} encoding"
        + (f", prefix {client.auth.identity_prefix!r}" if client.auth.identity_prefix else "")
    )
    print(f"twilio identity: {identity} ({how})")
    return config, identity


def _blocks_list(ns: argparse.Namespace) -> int:
    return _run_list(ns, BLOCKS)


def _blocks_sync(ns: argparse.Namespace) -> int:
    return _run_ns(ns, lambda ops: ops.sync(BLOCKS), "sync blocks", "identities")


# -- plumbing -------------------------------------------------------------------------------


def _edge(name: str) -> str:
    from tokensvc.edges import EDGES, ROAMING

    edge = name.strip().lower()
    if edge == ROAMING:
        raise ValueError(
            "roaming is the fallback when every listed edge is drained; it cannot be drained"
        )
    if edge not in EDGES:
        raise ValueError(f"unknown edge {name!r}; known: {', '.join(sorted(EDGES))}")
    return edge


def _client(name: str) -> str:
    if not _CLIENT_ID.fullmatch(name):
        raise ValueError(f"not a client id: {name!r} (lower-case letters, digits, -)")
    return name


def _identity(identity: str) -> str:
    if not identity or len(identity) > _MAX_IDENTITY or not _printable(identity):
        raise ValueError(f"identity must be 1-{_MAX_IDENTITY} printable characters")
    return identity


def _reason(reason: str) -> str:
    if len(reason) > _MAX_REASON or not _printable(reason):
        raise ValueError(f"--reason must be at most {_MAX_REASON} printable characters")
    return reason


def _printable(text: str) -> bool:
    # Lone surrogates (undecodable argv bytes) would fail when printed or stored.
    return text.isprintable() and not any("\ud800" <= ch <= "\udfff" for ch in text)


def _usage(exc: Exception, out: TextIO | None = None) -> int:
    print(f"error: {exc}", file=out or sys.stderr)
    return EXIT_USAGE


def _settings(environ: os._Environ[str]) -> Settings:
    from tokensvc.settings import Settings

    return Settings.from_env(environ)


def _ops_config(ns: argparse.Namespace) -> OpsConfig | int:
    """The ops config of ``--ops-config`` / TOKENSVC_OPS_CONFIG, else the one region of
    TOKENSVC_REDIS_URL; or exit status 2 with the problems."""
    environ = os.environ  # the CLI edge: the one place ops commands take the environment
    try:
        path: Path | None = ns.ops_config or _settings(environ).ops_config
        return load_ops_config(path, environ) if path is not None else regions_from_env(environ)
    except ConfigError as exc:
        return _usage(exc)


def _run_ns(
    ns: argparse.Namespace,
    action: Callable[[Ops], Coroutine[Any, Any, list[RegionResult]]],
    what: str,
    group: str,
) -> int:
    config = _ops_config(ns)
    return config if isinstance(config, int) else _run(config, action, what, group)


def _run(
    config: OpsConfig,
    action: Callable[[Ops], Coroutine[Any, Any, list[RegionResult]]],
    what: str,
    group: str,
) -> int:
    results = asyncio.run(action(Ops(config.regions)))
    print(what)
    width = max(len(r.region) for r in results)
    for r in results:
        print(f"  {r.region:<{width}}  {'ok    ' if r.ok else 'FAILED'}  {r.detail}")
    return _exit(results, group)


def _exit(results: list[RegionResult], group: str) -> int:
    failed = [r.region for r in results if not r.ok]
    if not failed:
        return EXIT_OK
    print(
        f"{len(failed)} of {len(results)} regions failed ({', '.join(failed)}); re-run, or "
        f"run `tokensvc {group} sync` once they are reachable",
        file=sys.stderr,
    )
    return EXIT_PARTIAL


def _run_list(ns: argparse.Namespace, kind: str) -> int:
    """List one kind in every region; for drains, the pins too (``pins`` in the JSON)."""
    config = _ops_config(ns)
    if isinstance(config, int):
        return config
    ops = Ops(config.regions)
    results = asyncio.run(ops.show(kind))
    pins = asyncio.run(ops.show(PINS)) if kind == DRAINS else []
    now = time.time()
    what = _WHAT[kind]

    def regions(kind: str, results: list[RegionResult]) -> dict[str, object]:
        return {
            r.region: {
                "ok": r.ok,
                "detail": r.detail,
                "entries": {k: _entry_json(kind, k, e) for k, e in r.entries.items()},
            }
            for r in results
        }

    if ns.json:
        doc = {"regions": regions(kind, results)}
        if kind == DRAINS:
            doc["pins"] = regions(PINS, pins)
        print(json.dumps(doc, indent=2))
    elif any(r.ok for r in results):
        _print_table(kind, results, now)
        if any(r.ok for r in pins):
            print()
            _print_table(PINS, pins, now)
    if not any(r.ok for r in results):
        # Nothing was read: "no active drains" would be a claim nobody checked.
        for r in results:
            print(f"region {r.region}: FAILED ({r.detail})", file=sys.stderr)
        print(f"could not read any region: active {what} unknown", file=sys.stderr)
        return EXIT_PARTIAL
    return _exit(results, "identities" if kind == BLOCKS else "edges")


def _entry_json(kind: str, key: str, entry: Entry) -> dict[str, object]:
    doc: dict[str, object] = {
        "until": _rfc3339(entry.until),
        "reason": entry.reason,
        "issued_at": _rfc3339(entry.at),
    }
    if kind == DRAINS:
        doc["feed_lease"] = entry.is_lease
    if kind == BLOCKS:
        client_identity = parse_block_field(key)
        if client_identity is not None:
            doc["client"], doc["identity"] = client_identity
    return doc


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_table(kind: str, results: list[RegionResult], now: float) -> None:
    reachable = [r for r in results if r.ok]
    latest: dict[str, Entry] = {}
    for r in reachable:
        for key, entry in r.entries.items():
            if key not in latest or entry.wins_over(latest[key]):
                latest[key] = entry
    label = "CLIENT/IDENTITY" if kind == BLOCKS else ("PINNED EDGE" if kind == PINS else "EDGE")
    rows = [(label, "UNTIL (UTC)", "LEFT", "REASON", "NOTE")]
    for key in sorted(latest):
        entry = latest[key]
        name = key
        if kind == BLOCKS:
            pair = parse_block_field(key)
            name = f"{pair[0]}/{pair[1]}" if pair else key
        missing = [r.region for r in reachable if r.entries.get(key) != entry]
        note = f"out of sync in {', '.join(missing)}" if missing else ""
        if entry.is_lease:  # the region's own feed lease: per region by design
            holders = [r.region for r in reachable if r.entries.get(key) == entry]
            note = f"feed lease ({', '.join(holders)})"
        rows.append(
            (
                name,
                _rfc3339(entry.until) or "until undone",
                "-" if entry.until is None else format_duration(entry.until - now),
                entry.reason,
                note,
            )
        )
    if len(rows) == 1:
        print(f"no active {_WHAT[kind]}")
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])
    for r in results:
        print(f"region {r.region}: {'ok' if r.ok else 'FAILED'} ({r.detail})")
