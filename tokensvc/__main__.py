"""Command line: serve, check-config, settings, mint, dev-assertion, status-feed, and the ops
commands.

The process environment is read here, at the edge, and passed on as a mapping."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jwt

from tokensvc import __version__
from tokensvc.clients import describe, load_clients, scan_clients
from tokensvc.errors import ApiError, ConfigError
from tokensvc.identity import to_twilio_identity
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS, Minter
from tokensvc.settings import Settings, markdown_table
from tokensvc.settings import describe as describe_settings


def _print_problems(err: ConfigError) -> None:
    print(f"invalid configuration ({len(err.problems)} problem(s)):", file=sys.stderr)
    for problem in err.problems:
        print(f"  - {problem}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from tokensvc.startup import check_inputs

    # Every problem at once, exit 1, before anything is bound or forked.
    settings, problems = check_inputs(
        os.environ,
        config_dir=Path(args.config) if args.config else None,
        host=args.host,
        port=args.port,
    )
    if problems:
        _print_problems(ConfigError(problems))
        return 1
    from tokensvc.server import prepare_metrics_dir, run

    metrics_dir = prepare_metrics_dir(settings)  # before prometheus_client is imported
    from tokensvc.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    return run(settings, metrics_dir)


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    settings = Settings.from_env(os.environ)
    print("\n".join(describe_settings(settings, os.environ)))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    result = scan_clients(args.directory, os.environ)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.problems:
        _print_problems(ConfigError(result.problems))
        return 1
    for client in result.clients.values():
        print(json.dumps(describe(client)))
    print(f"ok: {len(result.clients)} client(s) in {args.directory}")
    return 0


def cmd_mint(args: argparse.Namespace) -> int:
    clients = load_clients(args.config, os.environ)
    client = clients.get(args.client)
    if client is None:
        print(
            f"unknown client {args.client!r} (have: {', '.join(sorted(clients))})", file=sys.stderr
        )
        return 2
    identity = to_twilio_identity(
        args.identity, client.auth.identity_encoding, client.auth.identity_prefix
    )
    minted = Minter(client.twilio, args.ttl or client.ttl_seconds).mint(
        identity, args.platform, args.apns_environment
    )
    print(minted.token)
    return 0


def cmd_dev_assertion(args: argparse.Namespace) -> int:
    """Sign a caller JWT with a dev client's own HS256 secret (dev: true clients only)."""
    clients = load_clients(args.config, os.environ)
    client = clients.get(args.client)
    if client is None:
        print(f"unknown client {args.client!r}", file=sys.stderr)
        return 2
    auth = client.auth
    if not client.dev or auth.type != "jwt" or auth.hmac_secret is None:
        print(
            "dev-assertion only works for a dev: true client with auth.hs256_secret",
            file=sys.stderr,
        )
        return 2
    now = int(time.time())
    claims = {
        "iss": auth.issuer,
        "aud": auth.audience,
        auth.identity_claim: args.identity,
        "iat": now,
        "exp": now + args.ttl,
    }
    print(jwt.encode(claims, auth.hmac_secret.reveal(), algorithm=auth.algorithms[0]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokensvc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tokensvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API with Hypercorn")
    serve.add_argument(
        "--config",
        help="client config directory (default ./clients_config, or TOKENSVC_CONFIG_DIR)",
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.set_defaults(func=cmd_serve)

    show = sub.add_parser(
        "settings", help="print the effective TOKENSVC_* settings (secrets masked)"
    )
    show.add_argument(
        "--markdown",
        action="store_true",
        help="print the table of every setting (the README's) instead",
    )
    show.set_defaults(func=cmd_settings)

    check = sub.add_parser("check-config", help="validate a client config directory")
    check.add_argument("directory", nargs="?", default="clients_config")
    check.set_defaults(func=cmd_check_config)

    mint = sub.add_parser("mint", help="print a Voice token (operator debugging aid)")
    mint.add_argument("--config", default="clients_config")
    mint.add_argument("--client", required=True)
    mint.add_argument("--identity", required=True)
    mint.add_argument("--platform", choices=PLATFORMS, default="browser")
    mint.add_argument("--apns-environment", choices=APNS_ENVIRONMENTS)
    mint.add_argument("--ttl", type=int, help="seconds (capped by the client's ttl rules)")
    mint.set_defaults(func=cmd_mint)

    dev = sub.add_parser(
        "dev-assertion", help="sign a caller JWT for a dev client (for curl walk-throughs)"
    )
    dev.add_argument("--config", default="clients_config")
    dev.add_argument("--client", default="example")
    dev.add_argument("--identity", default="alice")
    dev.add_argument("--ttl", type=int, default=600)
    dev.set_defaults(func=cmd_dev_assertion)

    from tokensvc.twilio_cli import add_check_twilio

    add_check_twilio(sub)

    from tokensvc.statusfeed.cli import add_status_feed_parser

    add_status_feed_parser(sub)

    try:
        from tokensvc.ops_cli import add_ops_commands
    except ImportError:  # pragma: no cover - ops tooling is optional in a stripped build
        pass
    else:
        add_ops_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as err:
        _print_problems(err)
        return 1
    except ApiError as err:
        print(f"error: {err.code}: {err.detail}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
