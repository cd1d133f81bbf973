"""``tokensvc status-feed components | check``: discovery and a dry run.

- ``components [--url URL] [--config FILE]`` prints one row per component: id, group, name,
  status (tab-separated), so operators can write the ``components:`` mapping. Exit 0, or 1
  when the feed could not be read.
- ``check [--config FILE] [--clients DIR]`` polls once and prints what the feed would do now:
  each edge it would drain, renew, release, skip or demote and the rule that decided. A dry
  run assumes the statuses it sees have lasted ``confirm_polls`` (or ``clear_polls``) polls.
  It reads the region's real leases, pins, holds and operator drains from its Redis when one
  is configured (``TOKENSVC_REDIS_URL``, else the ``TOKENSVC_REGION`` entry of the ops config
  ``TOKENSVC_OPS_CONFIG``); otherwise it assumes none exist. It writes nothing. Exit 0 when
  it could read the feed (and the store, if any), 1 when not (or when a config is invalid).

The file defaults to ``TOKENSVC_STATUS_FEED_CONFIG``. Wire it into ``tokensvc.__main__`` with
``add_status_feed_parser(subparsers)``; each subcommand sets ``args.func``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from tokensvc.errors import ConfigError, StoreError
from tokensvc.fetch import Fetcher
from tokensvc.statusfeed.config import FeedConfig, load_config
from tokensvc.statusfeed.decide import Lease, Operator, Plan, Track, decide
from tokensvc.statusfeed.feed import FeedError, FeedPage, describe_components, poll
from tokensvc.statusfeed.runner import ClientLists, LeaseStore

ENV_VAR = "TOKENSVC_STATUS_FEED_CONFIG"


def add_status_feed_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Attach ``status-feed`` with its two subcommands to a parent parser's subparsers."""
    parser = subparsers.add_parser("status-feed", help="automatic drains from a status page")
    commands = parser.add_subparsers(dest="status_feed_command", required=True)
    components = commands.add_parser("components", help="list the feed's components")
    components.add_argument("--url", help="components.json or summary.json URL")
    components.add_argument("--config", help=f"status-feed file (default ${ENV_VAR})")
    components.set_defaults(func=main_components)
    check = commands.add_parser("check", help="print what the feed would do now (dry run)")
    check.add_argument("--config", help=f"status-feed file (default ${ENV_VAR})")
    check.add_argument("--clients", help="client config directory, to report demotions")
    check.set_defaults(func=main_check)
    return parser


def _config(args: argparse.Namespace) -> FeedConfig:
    path = getattr(args, "config", None) or os.environ.get(ENV_VAR)
    if not path:
        raise SystemExit(f"no status-feed config: pass --config FILE or set {ENV_VAR}")
    return load_config(path)


def _print_problems(err: ConfigError) -> None:
    print(f"invalid status-feed configuration ({len(err.problems)} problem(s)):", file=sys.stderr)
    for problem in err.problems:
        print(f"  - {problem}", file=sys.stderr)


async def _read(url: str, deadline: float) -> FeedPage:
    fetcher = Fetcher()
    try:
        return await poll(fetcher, FeedConfig(url=url, components={}, timeout_seconds=deadline))
    finally:
        await fetcher.close()


def main_components(args: argparse.Namespace) -> int:
    url = getattr(args, "url", None)
    timeout = 10.0
    if not url:
        try:
            config = _config(args)
        except ConfigError as err:
            _print_problems(err)
            return 1
        url, timeout = config.url, config.timeout_seconds
    try:
        page = asyncio.run(_read(url, timeout))
    except FeedError as exc:
        print(f"cannot read the feed: {exc}", file=sys.stderr)
        return 1
    print("id\tgroup\tname\tstatus")
    for row in describe_components(page):
        print("\t".join(row))
    return 0


def _client_lists(directory: str | None) -> ClientLists:
    if not directory:
        return {}
    from tokensvc.clients import load_clients

    out: dict[str, Sequence[Sequence[str]]] = {}
    for client_id, client in load_clients(directory, os.environ).items():
        policy = client.edges
        out[client_id] = [policy.default, *policy.by_country.values()]
    return out


def dry_run_tracks(config: FeedConfig, statuses: Mapping[str, str]) -> dict[str, Track]:
    """Counters as if each status seen now had lasted long enough to act on."""
    return {
        cid: (
            Track(config.confirm_polls - 1, 0, False)
            if status in config.act_on
            else Track(0, config.clear_polls - 1, True)
        )
        for cid, status in statuses.items()
    }


def region_store() -> LeaseStore | None:
    """This region's RedisStore from the environment (see the module docstring), or None.
    Raises ConfigError for a bad URL or ops config."""
    from tokensvc.settings import Settings

    environ = os.environ  # the CLI edge
    settings = Settings.from_env(environ)
    from tokensvc.store.redis import RedisStore

    if settings.redis_url is not None:
        from tokensvc.store.factory import store_from_settings

        store = store_from_settings(settings)
        return store if isinstance(store, RedisStore) else None
    if settings.ops_config is None:
        return None
    from tokensvc.ops import load_ops_config

    for region in load_ops_config(settings.ops_config, environ).regions:
        if region.name == settings.region:
            return RedisStore(region.connection())
    return None


async def check_plan(
    config: FeedConfig,
    client_lists: ClientLists,
    store: LeaseStore | None = None,
    store_factory: Callable[[], LeaseStore | None] | None = None,
) -> Plan:
    """The dry-run plan; FeedError when the feed cannot be read, StoreError when the store
    cannot. Writes nothing. ``store_factory`` builds a store inside the loop (closed after)."""
    if store is None and store_factory is not None:
        made = store_factory()
        if made is not None:
            try:
                return await check_plan(config, client_lists, made)
            finally:
                close = getattr(made, "close", None)
                if close is not None:
                    await close()
    fetcher = Fetcher()
    try:
        page = await poll(fetcher, config)
    finally:
        await fetcher.close()
    statuses = page.statuses(list(config.components))
    leases: dict[str, Lease] = {}
    operator = Operator()
    if store is not None:
        drained: set[str] = set()
        for edge, record in (await store.drain_records()).items():
            lease = Lease.from_record(edge, record.reason, record.until)
            if lease is None:
                drained.add(edge)
            else:
                leases[edge] = lease
        operator = Operator(frozenset(drained), await store.undrain_holds(), await store.pins())
    return decide(
        config,
        time.time(),
        statuses,
        last_good_at=None,
        tracks=dry_run_tracks(config, statuses),
        leases=leases,
        operator=operator,
        client_lists=client_lists,
    )


def main_check(args: argparse.Namespace, store: LeaseStore | None = None) -> int:
    try:
        config = _config(args)
        lists = _client_lists(getattr(args, "clients", None))
    except ConfigError as err:
        _print_problems(err)
        return 1
    try:
        plan = asyncio.run(check_plan(config, lists, store, None if store else region_store))
    except ConfigError as err:
        _print_problems(err)
        return 1
    except StoreError as exc:
        print(f"cannot read this region's store: {exc}", file=sys.stderr)
        return 1
    except FeedError as exc:
        print(f"cannot read the feed ({config.url}): {exc}", file=sys.stderr)
        print("feed: down -> nothing would be renewed; feed leases expire by themselves")
        return 1
    outages = sum(1 for d in plan.decisions if d.action in ("drain", "renew"))
    print(
        f"feed: {plan.feed}, {len(config.components)} mapped component(s), "
        f"{outages} edge(s) to drain or renew"
        + (", mass outage: nothing drained" if plan.mass_outage else "")
    )
    if not plan.decisions:
        print("nothing to do: every mapped component is clean")
    for decision in plan.decisions:
        print(decision)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokensvc")
    add_status_feed_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
