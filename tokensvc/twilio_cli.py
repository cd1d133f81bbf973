"""``tokensvc check-twilio``: the service's Twilio checks, run once from the command line.

Exit 1 when any check gave a definitive failure (a key Twilio rejected, a missing app or
credential, a credential of the wrong type or APNs environment), naming client, key SID and
check; 0 when every check passed or could not be decided (each undecided one is listed); 2 for
an unknown ``--client``. Secrets are never printed. Hosts come from the same settings as the
service (``TOKENSVC_TWILIO_API_URL_*``, ``TOKENSVC_TWILIO_NOTIFY_URL_*``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from tokensvc.clients import ClientConfig, load_clients
from tokensvc.fetch import Fetcher
from tokensvc.settings import Settings
from tokensvc.verification import hosts_from_settings
from tokensvc.verifier import ClientReport, TwilioVerifier


async def run_checks(settings: Settings, clients: list[ClientConfig]) -> list[ClientReport]:
    fetcher = Fetcher()
    try:
        verifier = TwilioVerifier(
            fetcher, hosts_from_settings(settings), deadline=settings.http_timeout
        )
        return list(await asyncio.gather(*(verifier.check_client(c) for c in clients)))
    finally:
        await fetcher.close()


def cmd_check_twilio(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    clients = load_clients(args.config or settings.config_dir, os.environ)
    if args.client is not None:
        if args.client not in clients:
            print(
                f"unknown client {args.client!r} (have: {', '.join(sorted(clients))})",
                file=sys.stderr,
            )
            return 2
        selected = [clients[args.client]]
    else:
        selected = [clients[cid] for cid in sorted(clients)]
    reports = asyncio.run(run_checks(settings, selected))
    failed = any(r.failures() for r in reports)
    if args.json:
        out: dict[str, Any] = {"ok": not failed, "clients": [r.as_dict() for r in reports]}
        print(json.dumps(out, indent=2))
    else:
        for report in reports:
            _print_text(report)
    return 1 if failed else 0


def _print_text(report: ClientReport) -> None:
    for sid, check in report.failures():
        what = f"{check.name} {check.resource}".strip()
        print(f"FAIL {report.client_id} key {sid}: {what}: {check.status} ({check.detail})")
    for sid, check in report.undecided():
        what = f"{check.name} {check.resource}".strip()
        print(f"UNDECIDED {report.client_id} key {sid}: {what}: {check.detail}")
    checks = sum(len(k.checks) for k in report.keys)
    print(f"{report.client_id}: {report.status} ({len(report.keys)} key(s), {checks} check(s))")


def add_check_twilio(sub: Any) -> None:
    """Register the subcommand on ``tokensvc``'s subparsers."""
    check = sub.add_parser(
        "check-twilio",
        help="check each client's Twilio keys, TwiML App and push credentials (read-only)",
    )
    check.add_argument(
        "--config", help="client config directory (default TOKENSVC_CONFIG_DIR or ./clients_config)"
    )
    check.add_argument("--client", help="check only this client")
    check.add_argument("--json", action="store_true", help="print the reports as JSON")
    check.set_defaults(func=cmd_check_twilio)
