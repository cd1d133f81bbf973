"""The live set of clients: validated configs with their verifiers and minters, reloadable.

Reload contract (all-or-nothing):

* The directory is read and parsed off the event loop (``asyncio.to_thread``), so a huge or
  slow file never delays ``/livez`` or a token request.
* A reload with any problem (in any file, or the dev-client rule), or one that would leave no
  client at all, is **refused**: the last good set keeps serving, untouched. Deleting one
  client file while others remain is a good reload.
* A good reload swaps the whole set at once (one attribute assignment), so a request sees
  either the old or the new configuration, never a mix.
* Every outcome is visible: ``reload_status`` (``ReloadStatus``: ok or refused, the reason,
  since when) feeds ``/readyz``; ``on_reload("ok" | "error")`` feeds the reload metric; a
  refusal is logged once per distinct set of problems, not once per poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokensvc.auth import Authenticator
from tokensvc.clients import ClientConfig, LoadResult, directory_signature, scan_clients
from tokensvc.errors import ConfigError, Problem
from tokensvc.fetch import Fetcher
from tokensvc.jwks import JwksSource
from tokensvc.minting import KeyChooser, Minter
from tokensvc.settings import Settings
from tokensvc.store.shared import SharedState

log = logging.getLogger("tokensvc.config")


@dataclass(frozen=True)
class Client:
    config: ClientConfig
    auth: Authenticator
    minter: Minter

    @property
    def id(self) -> str:
        return self.config.client_id


@dataclass(frozen=True)
class ReloadStatus:
    """The outcome of the latest reload that found a change."""

    status: Literal["ok", "refused"]
    #: why the reload was refused ("" when ok): the problem count and the first problem
    reason: str
    #: unix seconds since this status (and reason) holds
    since: float
    #: every problem of a refused reload, as ``file: field: message``
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The ``/readyz`` form."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return {"status": self.status, "reason": self.reason, "since": since}


def dev_problems(settings: Settings, clients: Mapping[str, ClientConfig]) -> list[Problem]:
    """``dev: true`` clients carry published secrets: serve them on loopback only, unless
    TOKENSVC_ALLOW_DEV says otherwise (a demo container, say)."""
    if settings.allow_dev or settings.loopback_only:
        return []
    return [
        Problem(
            c.source,
            "dev",
            "dev: true client refused on a non-loopback address "
            f"({settings.host}); set TOKENSVC_ALLOW_DEV=true to serve it anyway",
        )
        for c in clients.values()
        if c.dev
    ]


class ClientSet:
    def __init__(
        self, settings: Settings, shared: SharedState, environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.shared = shared
        #: resolves ``{env: NAME}`` secret references; the composition root passes it (the
        #: process environment when omitted)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.clients: dict[str, Client] = {}
        self.signature = ""
        self.loaded = False
        self.reload_status = ReloadStatus("ok", "", time.time())
        self._jwks: dict[str, JwksSource] = {}
        self._fetcher = Fetcher()  # shared by every JWKS source; closed in stop()
        self._task: asyncio.Task[None] | None = None
        #: which API key signs (TOKENSVC_TWILIO_VERIFY=enforce); None: the first
        self.key_chooser: KeyChooser | None = None
        #: metrics hook, called with "ok" | "error"
        self.on_reload: Callable[[str], None] = lambda result: None
        #: metrics hook for JWKS refreshes, called with "ok" | "error" | "cache"
        self.on_jwks_refresh: Callable[[str], None] = lambda result: None

    @property
    def config_dir(self) -> Path:
        return self.settings.config_dir

    @property
    def last_error(self) -> str:
        """The reason of a refused reload, "" when the latest reload was good."""
        return self.reload_status.reason

    def get(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def _signature(self, configs: Mapping[str, ClientConfig]) -> str:
        watched = [f for c in configs.values() for f in c.watched_files]
        return directory_signature(self.config_dir, watched)

    def _scan(self) -> tuple[LoadResult, list[Problem]]:
        """Read, parse and check the directory (blocking: run it in a thread)."""
        result = scan_clients(self.config_dir, self.environ)
        problems = result.problems + dev_problems(self.settings, result.clients)
        if not problems and not result.clients:
            problems.append(Problem(str(self.config_dir), "", "would leave no clients"))
        return result, problems

    async def load(self) -> None:
        """First load: raise ConfigError (every problem) so the service refuses to start."""
        result, problems = await asyncio.to_thread(self._scan)
        if problems:
            raise ConfigError(problems)
        signature = await asyncio.to_thread(self._signature, result.clients)
        for warning in result.warnings:
            log.warning(warning, extra={"warning": "client_config"})
        await self._install(result.clients, signature)
        self.reload_status = ReloadStatus("ok", "", time.time())

    async def reload(self) -> str:
        """Reload when the directory changed. Returns "ok", "error" (refused: the last good
        set keeps serving) or "unchanged"."""
        current = {cid: c.config for cid, c in self.clients.items()}
        seen = await asyncio.to_thread(self._signature, current)
        if seen == self.signature:
            return "unchanged"
        result, problems = await asyncio.to_thread(self._scan)
        if problems:
            self.signature = seen  # the same broken state is not scanned again every poll
            self._refuse([str(p) for p in problems])
            return "error"
        signature = await asyncio.to_thread(self._signature, result.clients)
        try:
            await self._install(result.clients, signature)
        except Exception as exc:  # noqa: BLE001 - a bad key file must not kill the service
            self.signature = seen  # do not retry (and re-log) the same state every poll
            self._refuse(
                [f"{self.config_dir}: installing the clients failed: {type(exc).__name__}"]
            )
            return "error"
        self.reload_status = ReloadStatus("ok", "", time.time())
        log.info("config reloaded", extra={"clients": sorted(self.clients)})
        self.on_reload("ok")
        return "ok"

    def _refuse(self, problems: list[str]) -> None:
        """Record a refused reload: counted every time, logged once per distinct failure."""
        self.on_reload("error")
        found = tuple(problems)
        previous = self.reload_status
        if previous.status == "refused" and previous.problems == found:
            return
        reason = f"{len(found)} problem(s); first: {found[0]}"
        self.reload_status = ReloadStatus("refused", reason, time.time(), found)
        log.error(
            "config reload refused; keeping the last good config", extra={"problems": list(found)}
        )

    async def start_watching(self) -> None:
        if self.settings.reload_interval > 0:
            self._task = asyncio.create_task(self._watch(), name="config-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
        for source in self._jwks.values():
            await source.stop()
        await self._fetcher.close()

    def jwks_status(self) -> dict[str, str]:
        return {url: ("ok" if s.usable else "unavailable") for url, s in self._jwks.items()}

    async def _install(self, configs: dict[str, ClientConfig], signature: str) -> None:
        wanted = {c.auth.jwks_url for c in configs.values() if c.auth.jwks_url}
        new_sources: list[JwksSource] = []
        for url in wanted - set(self._jwks):
            source = JwksSource(
                url,
                fetcher=self._fetcher,
                refresh=self.settings.jwks_refresh,
                max_stale=self.settings.jwks_max_stale,
                timeout=self.settings.http_timeout,
                cache_get=self.shared.jwks_get,
                cache_put=self.shared.jwks_put,
            )
            source.on_refresh = self.on_jwks_refresh
            new_sources.append(source)
        # concurrently: a slow IdP never delays another client's first fetch
        await asyncio.gather(*(source.start() for source in new_sources))
        for source in new_sources:
            self._jwks[source.url] = source
        clients = {
            cid: Client(
                cfg,
                Authenticator.build(cfg.auth, self._jwks.get(cfg.auth.jwks_url or "")),
                Minter(cfg.twilio, cfg.ttl_seconds, self.key_chooser),
            )
            for cid, cfg in configs.items()
        }
        for url in set(self._jwks) - wanted:
            await self._jwks.pop(url).stop()
        self.clients = clients
        self.signature = signature
        self.loaded = True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            try:
                await self.reload()
            except Exception as exc:  # noqa: BLE001 - keep watching whatever happens
                log.error("config watch error", extra={"error": type(exc).__name__})
