"""Operator tooling: edge drains and identity blocks written to every region's Redis.

    OpsConfig / Region      which Redis each region runs (``regions: {name: url}`` YAML), and
                            optionally where the client files are (``clients_dir``)
    Ops                     drain / undrain / pin / unpin / block / unblock / show / sync, all
                            regions at once
    RegionResult            what happened in one region (ok, or why not)
    parse_duration()        "30m", "1h30m", "2d", "90" (seconds; ASCII digits; bounded)
    find_client() / block_identity()
                            the client a block is for, and the exact Twilio identity to store:
                            a raw subject is mapped as the token path maps it

What a block matches: the service compares stored blocks with the caller's *Twilio identity*
(``tokensvc.identity.to_twilio_identity`` of the verified subject, with the client's encoding
and prefix), never with the raw subject. So the operator's input is mapped here, the same way,
before it is stored: blocking subject ``auth0|777`` stores ``auth0_7c777`` (escape encoding),
and a different caller whose raw subject is the string ``auth0_7c777`` (Twilio identity
``auth0__7c777``) is not blocked. ``--twilio-identity`` takes the stored form directly, and is
refused unless the client could ever issue it (right prefix, encoding round-trips).

Status-feed leases (drains with reason ``statusfeed:...``) belong to the region whose poller
wrote them: an operator's drain or undrain replaces one whatever the clocks say (and the undrain
of a live lease leaves an undrain hold in that region, see ``tokensvc.store.entries``), but
``sync`` neither copies leases to other regions nor removes them with a tombstone from
elsewhere. A pin (``edges pin EDGE --for 2h``) is an entry of its own kind, written to every
region like a drain, that keeps the feed from draining that edge.

Limits: a drain or a pin lasts at most ``MAX_DRAIN_SECONDS`` (7 days), a block at most
``MAX_BLOCK_SECONDS`` (365 days) unless it is explicitly permanent.

Every command is sent to every region concurrently, each bounded by a timeout, and reports
per region. A command is idempotent: it writes one versioned entry (``at`` = when the operator
issued it, the same value in every region), so running it again, or syncing it later, changes
nothing more.

Merge rule (``sync``); the rule itself (``Entry.wins_over``, ``merge``, ``in_force``) lives in
``tokensvc.store.entries``, next to the Lua that applies it inside Redis:

* Every drain or block is an ``Entry`` carrying ``at``, the time the operator issued the
  command; undrain/unblock leave a *tombstone* entry (``deleted``) instead of deleting.
* For each key (edge, or client+identity) the entry with the latest ``at`` wins in every
  region (last writer wins); on a tie a tombstone wins. A later, shorter drain therefore
  replaces an earlier, longer one, as the operator asked: this is deliberately *not* "keep the
  latest expiry".
* ``sync`` reads every reachable region, computes the winners, and writes each winner to the
  regions where it is missing or older (the write is itself conditional, in a Lua script, so
  a racing newer command is never overwritten). Expired records are not copied, and entries
  past their ``until`` (records) or retention (tombstones) are pruned.
* Tombstones are what stop a sync from resurrecting an undrained edge or an unblocked
  identity from a region that missed the undo, and expired records are version markers. Each
  is kept ``retention(kind)`` after its ``at``, longer than anything it can cancel:
  ``TOMBSTONE_SECONDS`` (30 days) for drains and pins (they last at most
  ``MAX_DRAIN_SECONDS``, 7 days), ``BLOCK_TOMBSTONE_SECONDS`` (400 days) for blocks (at most
  ``MAX_BLOCK_SECONDS``, 365 days). The entry that replaces a permanent block (an unblock, or
  a block with an expiry) is stored *retained* and never pruned (``Entry.written_over``), and
  retained wins ties, so sync spreads it to every region. A region that stayed unreachable
  longer than the retention must not be synced from; flush its ``tokensvc:*`` drain and block
  keys and sync into it instead.
* A feed lease written over an operator's tombstone (or expired record) carries it as
  ``under``; ``sync`` merges that region's ``under`` in place of the lease, so a lease never
  lets an older operator drain come back.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tokensvc.clients import ClientConfig, scan_clients
from tokensvc.errors import ConfigError, Forbidden, Problem, StoreError
from tokensvc.identity import decode_identity, is_valid_twilio_identity, to_twilio_identity
from tokensvc.secret import Secret, SecretRefError, resolve_secret
from tokensvc.store.entries import (
    BLOCK_TOMBSTONE_SECONDS,
    BLOCKS,
    DRAINS,
    PINS,
    TOMBSTONE_SECONDS,
    Entry,
    block_field,
    in_force,
    merge,
)
from tokensvc.store.urls import Timeouts, parse_url

if TYPE_CHECKING:  # redis-py is imported when a command first talks to a region, not by
    # every `tokensvc` start (the CLI's parser registers these commands)
    from tokensvc.store.admin import RegionAdmin
    from tokensvc.store.connection import RedisConnection

MAX_DRAIN_SECONDS = 7 * 86400.0
MAX_BLOCK_SECONDS = 365 * 86400.0
#: Each region's share of a command; an unreachable region is reported, not waited for.
REGION_TIMEOUT = 5.0

# ASCII digits only: str.isdigit() and ``\d`` also accept full-width and other scripts' digits.
_DURATION = re.compile(r"(?:[0-9]+[smhd])+|[0-9]+")
_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_MAX_DURATION_TEXT = 32  # bounds the integers parsed (no huge-number work, no float overflow)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The merge rule depends on these: a tombstone outlives every entry it can cancel.
assert TOMBSTONE_SECONDS > MAX_DRAIN_SECONDS  # noqa: S101
assert BLOCK_TOMBSTONE_SECONDS > MAX_BLOCK_SECONDS  # noqa: S101


def parse_duration(text: str, maximum: float = MAX_BLOCK_SECONDS) -> float:
    """``90`` or ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m`` -> seconds, in (0, ``maximum``].

    Raises ValueError (with a message for the operator) for anything else: non-ASCII digits,
    spaces inside, fractions, zero, or more than ``maximum``."""
    raw = text.strip(" \t").lower()
    if len(raw) > _MAX_DURATION_TEXT or not raw.isascii() or not _DURATION.fullmatch(raw):
        raise ValueError(
            f"not a duration: {text!r} (ASCII digits with s, m, h or d, "
            "e.g. 90s, 30m, 2h, 1d, 1h30m)"
        )
    if raw.isdigit():
        seconds = int(raw)
    else:
        seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION_PART.findall(raw))
    if seconds <= 0:
        raise ValueError(f"duration must be > 0: {text!r}")
    if seconds > maximum:  # compared as integers: no float conversion of a huge number
        raise ValueError(f"{text.strip()} is longer than the maximum, {format_duration(maximum)}")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """Seconds -> "1h30m" (the largest two units)."""
    left = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size and len(parts) < 2:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Region:
    """One region's Redis. The URL may hold a password, so it is kept as a Secret."""

    name: str
    url: Secret
    password: Secret | None = None
    sentinel_password: Secret | None = None

    def connection(self, timeouts: Timeouts | None = None) -> RedisConnection:
        """The region's Redis (for ``RegionAdmin``, or a ``RedisStore`` in that region)."""
        from tokensvc.store.connection import RedisConnection

        return RedisConnection(
            self.url.reveal(),
            password=self.password.reveal() if self.password else None,
            sentinel_password=self.sentinel_password.reveal() if self.sentinel_password else None,
            timeouts=timeouts,
            source=f"regions.{self.name}",
        )

    def admin(self, timeouts: Timeouts | None = None) -> RegionAdmin:
        from tokensvc.store.admin import RegionAdmin

        return RegionAdmin(self.connection(timeouts))


@dataclass(frozen=True)
class OpsConfig:
    """The ops config file: every region's Redis, and optionally the client directory (a path
    relative to the ops config file's own directory, or absolute)."""

    regions: list[Region]
    clients_dir: Path | None = None


_OPS_KEYS = frozenset({"regions", "clients_dir"})


def load_ops_config(path: str | Path, environ: Mapping[str, str]) -> OpsConfig:
    """Read an ops config::

        clients_dir: ../clients_config               # optional: for `identities block|unblock`
        regions:
          us-east: redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/tokensvc
          eu-west:
            url: {env: EU_WEST_REDIS_URL}          # or a literal, or {file: /path}
            password: {file: /var/run/secrets/eu-west-redis-password}
            sentinel_password: {env: EU_WEST_SENTINEL_PASSWORD}

    ``{env: NAME}`` is looked up in ``environ`` (the CLI passes the process environment).
    Raises ConfigError listing every problem.
    """
    source = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([Problem(source, "", f"cannot read: {exc.strerror}")]) from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError([Problem(source, "", "not valid YAML")]) from None
    problems: list[Problem] = []
    regions: list[Region] = []
    raw_regions = doc.get("regions") if isinstance(doc, dict) else None
    if not isinstance(raw_regions, dict) or not raw_regions:
        raise ConfigError([Problem(source, "regions", "must map region names to Redis URLs")])
    assert isinstance(doc, dict)  # noqa: S101 - narrowed by the check above
    unknown = sorted(str(k) for k in set(doc) - _OPS_KEYS)
    if unknown:
        problems.append(Problem(source, "", f"unknown keys: {unknown}"))
    clients_dir: Path | None = None
    raw_dir = doc.get("clients_dir")
    if raw_dir is not None:
        if not isinstance(raw_dir, str) or not raw_dir.strip():
            problems.append(Problem(source, "clients_dir", "must be a directory path"))
        else:
            clients_dir = Path(path).parent / raw_dir
    for name, spec in raw_regions.items():
        where = f"regions.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(Problem(source, where, "region names are 1-64 of [A-Za-z0-9_.-]"))
            continue
        try:
            region = _region(name, spec, where, source, environ)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        regions.append(region)
    if problems:
        raise ConfigError(problems)
    return OpsConfig(regions, clients_dir)


def _region(name: str, spec: Any, where: str, source: str, environ: Mapping[str, str]) -> Region:
    def bad(message: str, sub: str = "") -> ConfigError:
        return ConfigError([Problem(source, where + sub, message)])

    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, dict):
        raise bad("must be a URL or a mapping with url (and password, sentinel_password)")
    unknown = set(spec) - {"url", "password", "sentinel_password"}
    if unknown:
        raise bad(f"unknown keys: {sorted(unknown)}")
    url = _secret(spec.get("url"), where + ".url", source, environ)
    if url is None:
        raise bad("url is required", ".url")
    try:
        parse_url(url.reveal(), source=where + ".url")
    except ConfigError as exc:
        raise ConfigError([Problem(source, p.field, p.message) for p in exc.problems]) from None
    return Region(
        name,
        url,
        _secret(spec.get("password"), where + ".password", source, environ),
        _secret(spec.get("sentinel_password"), where + ".sentinel_password", source, environ),
    )


def _secret(value: Any, where: str, source: str, environ: Mapping[str, str]) -> Secret | None:
    """An ops-config secret: a literal (the ops config is an operator's own file), {env:} or
    {file:}, by the service's one rule set (``tokensvc.secret.resolve_secret``)."""
    if value is None:
        return None
    try:
        return resolve_secret(value, environ, allow_literal=True)
    except SecretRefError as exc:
        field = f"{where}.{exc.field}" if exc.field else where
        raise ConfigError([Problem(source, field, exc.message)]) from None


def regions_from_env(environ: Mapping[str, str]) -> OpsConfig:
    """No ops config: the one Redis of ``TOKENSVC_REDIS_URL``, named by ``TOKENSVC_REGION``."""
    from tokensvc.settings import Settings

    settings = Settings.from_env(environ)
    if settings.redis_url is None:
        raise ConfigError(
            [
                Problem(
                    "environment",
                    "TOKENSVC_OPS_CONFIG",
                    "set TOKENSVC_OPS_CONFIG (or --ops-config), "
                    "or TOKENSVC_REDIS_URL for one region",
                )
            ]
        )
    parse_url(settings.redis_url.reveal())
    return OpsConfig(
        [
            Region(
                settings.region,
                settings.redis_url,
                settings.redis_password,
                settings.redis_sentinel_password,
            )
        ]
    )


def find_client(directory: Path, client_id: str, environ: Mapping[str, str]) -> ClientConfig:
    """The client ``client_id`` of the client files in ``directory``, loaded as the service
    loads it; ValueError naming the known ids (closest first) when there is no such client, or
    the problems of its file when that file does not load."""
    result = scan_clients(directory, environ)
    by_id = {c.client_id: c for c in result.clients.values()}
    if client_id in by_id:
        return by_id[client_id]
    own = [p for p in result.problems if Path(p.source).stem == client_id]
    if own:
        raise ValueError(f"client {client_id!r} does not load: " + "; ".join(map(str, own)))
    if not by_id:
        why = "; ".join(map(str, result.problems)) or "no clients"
        raise ValueError(
            f"no clients found in {directory} ({why}); give --config DIR "
            "or set clients_dir in the ops config"
        )
    close = difflib.get_close_matches(client_id, list(by_id), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ValueError(
        f"unknown client {client_id!r} in {directory}; {hint}known: {', '.join(sorted(by_id))}"
    )


def block_identity(client: ClientConfig, subject: str | None, twilio_identity: str | None) -> str:
    """The Twilio identity a block must store: ``subject`` (the caller's raw identity, e.g.
    ``auth0|777``) mapped through the client's identity encoding and prefix exactly as the
    token path maps it, or ``twilio_identity`` as given once it is one this client can issue.
    Exactly one of them. ValueError saying why otherwise."""
    if (subject is None) == (twilio_identity is None):
        raise ValueError("give the caller's SUBJECT, or --twilio-identity NAME (not both)")
    auth = client.auth
    if subject is not None:
        try:
            return to_twilio_identity(subject, auth.identity_encoding, auth.identity_prefix)
        except Forbidden as exc:
            raise ValueError(
                f"subject {subject!r} never gets a token from client "
                f"{client.client_id!r}: {exc.detail}"
            ) from None
    assert twilio_identity is not None  # noqa: S101 - exactly one of the two is set
    name = twilio_identity
    if not is_valid_twilio_identity(name):
        raise ValueError(
            f"not a Twilio identity: {name!r} (letters, digits and underscore, "
            "at most 121); to block a caller by subject, omit --twilio-identity"
        )
    if not name.startswith(auth.identity_prefix):
        raise ValueError(
            f"every Twilio identity of client {client.client_id!r} starts with "
            f"{auth.identity_prefix!r}; {name!r} is never issued"
        )
    rest = name[len(auth.identity_prefix) :]
    try:
        raw = decode_identity(rest) if auth.identity_encoding == "escape" else rest
        issued = to_twilio_identity(raw, auth.identity_encoding, auth.identity_prefix)
    except (ValueError, Forbidden):  # UnicodeDecodeError is a ValueError
        issued = ""
    if issued != name:
        raise ValueError(
            f"client {client.client_id!r} never issues {name!r} ({auth.identity_encoding} encoding)"
        )
    return name


@dataclass
class RegionResult:
    region: str
    ok: bool
    detail: str = ""
    entries: dict[str, Entry] = field(default_factory=dict)


class Ops:
    """Run operator commands against every region."""

    def __init__(
        self,
        regions: list[Region],
        *,
        timeouts: Timeouts | None = None,
        region_timeout: float = REGION_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not regions:
            raise ValueError("no regions")
        self.regions = regions
        # An operator's network is not the pod's: another continent, TLS, a loaded laptop. The
        # data plane's 0.25 s connect would call a slow region unreachable.
        self.timeouts = timeouts or Timeouts(
            connect=min(1.0, region_timeout),
            socket=min(2.0, region_timeout),
            sentinel=min(1.0, region_timeout),
            call=min(3.0, region_timeout),
        )
        self.region_timeout = region_timeout
        self.clock = clock

    async def drain(self, edge: str, seconds: float, reason: str) -> list[RegionResult]:
        now = self.clock()
        return await self._write(DRAINS, edge, Entry(now, now + seconds, reason))

    async def undrain(self, edge: str) -> list[RegionResult]:
        return await self._write(DRAINS, edge, Entry.tombstone(self.clock()))

    async def pin(self, edge: str, seconds: float, reason: str) -> list[RegionResult]:
        now = self.clock()
        return await self._write(PINS, edge, Entry(now, now + seconds, reason))

    async def unpin(self, edge: str) -> list[RegionResult]:
        return await self._write(PINS, edge, Entry.tombstone(self.clock(), PINS))

    async def block(
        self, client: str, identity: str, seconds: float | None, reason: str
    ) -> list[RegionResult]:
        now = self.clock()
        until = None if seconds is None else now + seconds
        return await self._write(BLOCKS, block_field(client, identity), Entry(now, until, reason))

    async def unblock(self, client: str, identity: str) -> list[RegionResult]:
        return await self._write(
            BLOCKS, block_field(client, identity), Entry.tombstone(self.clock(), BLOCKS)
        )

    async def show(self, kind: str) -> list[RegionResult]:
        """Live (unexpired, not undone) entries, per region."""
        now = self.clock()

        async def run(admin: RegionAdmin) -> RegionResult:
            entries = await admin.entries(kind)
            live = {k: e for k, e in entries.items() if e.live(now)}
            return RegionResult("", True, f"{len(live)} active", live)

        return await self._each(run)

    async def sync(self, kind: str) -> list[RegionResult]:
        """Bring every reachable region up to date with the winners across all of them."""
        read = await self._each(lambda admin: self._read_all(admin, kind))
        now = self.clock()
        # Feed leases are their region's own: never copied, never removed by a tombstone from
        # elsewhere; a region with a lease takes part with the operator's entry under it (as
        # if the lease had never been written).
        views = [
            {k: v for k, e in r.entries.items() if (v := e.operator_entry) is not None}
            for r in read
            if r.ok
        ]
        winners = merge(views)

        async def run(admin: RegionAdmin, region: str) -> RegionResult:
            have = next(r.entries for r in read if r.region == region)
            missing = {
                k: e
                for k, e in winners.items()
                if (
                    (not (e.deleted and have[k].is_lease) and e.wins_over(have[k]))
                    if k in have
                    else in_force(e, now)
                )
            }
            written = await admin.apply_many(kind, missing)
            await admin.prune([kind], now)
            active = sum(1 for e in winners.values() if e.live(now))
            return RegionResult(region, True, f"{written} written, {active} active")

        reachable = {r.region for r in read if r.ok}
        results = await self._each(run, only=reachable, pass_region=True)
        failed = [r for r in read if not r.ok]
        return sorted(results + failed, key=lambda r: self._order(r.region))

    @staticmethod
    async def _read_all(admin: RegionAdmin, kind: str) -> RegionResult:
        return RegionResult("", True, "", await admin.entries(kind))

    async def _write(self, kind: str, key: str, entry: Entry) -> list[RegionResult]:
        async def run(admin: RegionAdmin) -> RegionResult:
            written = await admin.apply(kind, key, entry)
            await admin.prune([kind], entry.at)
            return RegionResult("", True, "written" if written else "already up to date")

        return await self._each(run)

    async def _each(
        self,
        run: Callable[..., Awaitable[RegionResult]],
        *,
        only: set[str] | None = None,
        pass_region: bool = False,
    ) -> list[RegionResult]:
        async def one(region: Region) -> RegionResult:
            admin = region.admin(self.timeouts)
            try:
                async with asyncio.timeout(self.region_timeout):
                    result = await (run(admin, region.name) if pass_region else run(admin))
                result.region = region.name
                return result
            except TimeoutError:
                return RegionResult(region.name, False, "timed out")
            except StoreError as exc:
                return RegionResult(region.name, False, str(exc))
            finally:
                await admin.close()

        chosen = [r for r in self.regions if only is None or r.name in only]
        return list(await asyncio.gather(*(one(r) for r in chosen)))

    def _order(self, name: str) -> int:
        return next(i for i, r in enumerate(self.regions) if r.name == name)
