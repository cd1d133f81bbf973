"""Operator tooling: edge drains and identity blocks written to every region's Redis.

    OpsConfig / Region      which Redis each region runs (``regions: {name: url}`` YAML)
    Ops                     drain / undrain / block / unblock / show / sync, all regions at once
    RegionResult            what happened in one region (ok, or why not)
    parse_duration()        "30m", "1h30m", "2d", "90" (seconds)

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
  identity from a region that missed the undo. They are kept for ``TOMBSTONE_SECONDS``
  (30 days): longer than any drain may last (``MAX_DRAIN_SECONDS``, 7 days). A region that
  stayed unreachable for longer than that must not be synced from; flush its ``tokensvc:*``
  drain and block keys and sync into it instead.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tokensvc.errors import ConfigError, Problem, StoreError
from tokensvc.secret import Secret, read_secret_file
from tokensvc.store.admin import RegionAdmin
from tokensvc.store.entries import (
    BLOCKS,
    DRAINS,
    TOMBSTONE_SECONDS,
    Entry,
    block_field,
    in_force,
    merge,
)
from tokensvc.store.urls import Timeouts, parse_url

MAX_DRAIN_SECONDS = 7 * 86400.0
#: Each region's share of a command; an unreachable region is reported, not waited for.
REGION_TIMEOUT = 5.0

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

assert TOMBSTONE_SECONDS > MAX_DRAIN_SECONDS  # noqa: S101 - the merge rule depends on it


def parse_duration(text: str) -> float:
    """``90`` or ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m`` -> seconds (> 0)."""
    raw = text.strip().lower()
    if raw.isdigit():
        seconds = int(raw)
    else:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d, 1h30m)")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration must be > 0: {text!r}")
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

    def admin(self, timeouts: Timeouts | None = None) -> RegionAdmin:
        return RegionAdmin(
            self.url.reveal(),
            password=self.password.reveal() if self.password else None,
            sentinel_password=self.sentinel_password.reveal() if self.sentinel_password else None,
            timeouts=timeouts,
            source=f"regions.{self.name}",
        )


def load_ops_config(path: str | Path, environ: Mapping[str, str]) -> list[Region]:
    """Read an ops config::

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
    except yaml.YAMLError:
        raise ConfigError([Problem(source, "", "not valid YAML")]) from None
    problems: list[Problem] = []
    regions: list[Region] = []
    raw_regions = doc.get("regions") if isinstance(doc, dict) else None
    if not isinstance(raw_regions, dict) or not raw_regions:
        raise ConfigError([Problem(source, "regions", "must map region names to Redis URLs")])
    if isinstance(doc, dict) and set(doc) - {"regions"}:
        problems.append(Problem(source, "", f"unknown keys: {sorted(set(doc) - {'regions'})}"))
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
    return regions


def _region(
    name: str, spec: Any, where: str, source: str, environ: Mapping[str, str]
) -> Region:
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


def _secret(
    value: Any, where: str, source: str, environ: Mapping[str, str]
) -> Secret | None:
    # TODO(lead): replace with the one secret-resolution function of tokensvc.secret.
    if value is None:
        return None
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, dict) and len(value) == 1:
        if "env" in value:
            found = environ.get(str(value["env"]))
            if not found:
                raise ConfigError([Problem(source, where, f"env {value['env']} is not set")])
            return Secret(found)
        if "file" in value:
            try:
                return read_secret_file(str(value["file"]))
            except OSError as exc:
                raise ConfigError(
                    [Problem(source, where, f"cannot read file: {exc.strerror}")]
                ) from None
    raise ConfigError([Problem(source, where, "must be a string, {env: NAME} or {file: PATH}")])


def regions_from_env(environ: Mapping[str, str]) -> list[Region]:
    """No ops config: the one Redis of ``TOKENSVC_REDIS_URL``, named by ``TOKENSVC_REGION``."""
    from tokensvc.settings import Settings

    settings = Settings.from_env(environ)
    if settings.redis_url is None:
        raise ConfigError([Problem(
            "environment", "TOKENSVC_OPS_CONFIG",
            "set TOKENSVC_OPS_CONFIG (or --ops-config), or TOKENSVC_REDIS_URL for one region",
        )])
    parse_url(settings.redis_url.reveal())
    return [Region(settings.region, settings.redis_url, settings.redis_password,
                   settings.redis_sentinel_password)]


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
        self.timeouts = timeouts or Timeouts(call=min(3.0, region_timeout))
        self.region_timeout = region_timeout
        self.clock = clock

    async def drain(self, edge: str, seconds: float, reason: str) -> list[RegionResult]:
        now = self.clock()
        return await self._write(DRAINS, edge, Entry(now, now + seconds, reason))

    async def undrain(self, edge: str) -> list[RegionResult]:
        return await self._write(DRAINS, edge, Entry.tombstone(self.clock()))

    async def block(
        self, client: str, identity: str, seconds: float | None, reason: str
    ) -> list[RegionResult]:
        now = self.clock()
        until = None if seconds is None else now + seconds
        return await self._write(BLOCKS, block_field(client, identity), Entry(now, until, reason))

    async def unblock(self, client: str, identity: str) -> list[RegionResult]:
        return await self._write(
            BLOCKS, block_field(client, identity), Entry.tombstone(self.clock())
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
        winners = merge([r.entries for r in read if r.ok])

        async def run(admin: RegionAdmin, region: str) -> RegionResult:
            have = next(r.entries for r in read if r.region == region)
            missing = {
                k: e for k, e in winners.items()
                if (e.wins_over(have[k]) if k in have else in_force(e, now))
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

