"""When the Twilio checks run: at start-up, after each client reload, and periodically.

One background task per process. It runs a round (every client, concurrently) right after it
starts (readiness never waits for it), again whenever :meth:`VerificationRunner.reloaded` is
called with ``"ok"``, and otherwise every ``interval`` seconds, jittered by +-20 % so pods that
started together spread their calls. A round that overruns delays the next one; rounds never
overlap. Nothing on the token path awaits this task: a Twilio outage only leaves reports
``unknown``. Every failure inside a round is logged and the loop goes on. After each round
``on_round`` gets every client's merged report (the app hands them to
``Telemetry.twilio_round`` through :func:`metric_rows`).

``TOKENSVC_TWILIO_VERIFY=off`` builds no runner; ``warn`` reports only; ``enforce`` also lets
:class:`~tokensvc.verifier.KeyHealth` choose the signing key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping

from tokensvc.clients import ClientConfig
from tokensvc.fetch import Fetcher
from tokensvc.settings import Settings
from tokensvc.twilio_hosts import RegionHosts, region_hosts
from tokensvc.verifier import ClientReport, KeyHealth, TwilioVerifier

log = logging.getLogger("tokensvc.twilio")
JITTER = 0.2


def hosts_from_settings(settings: Settings) -> dict[str, RegionHosts]:
    return region_hosts(
        {
            "us1": settings.twilio_api_url_us1,
            "ie1": settings.twilio_api_url_ie1,
            "au1": settings.twilio_api_url_au1,
        },
        {
            "us1": settings.twilio_notify_url_us1,
            "ie1": settings.twilio_notify_url_ie1,
            "au1": settings.twilio_notify_url_au1,
        },
    )


def log_report(report: ClientReport) -> None:
    """One line per definitive failure (client, key SID, check; never a secret)."""
    for sid, check in report.failures():
        log.warning(
            "twilio check failed",
            extra={
                "client": report.client_id,
                "api_key": sid,
                "check": check.name,
                "resource": check.resource,
                "result": check.status,
                "detail": check.detail,
            },
        )


def metric_rows(
    reports: Mapping[str, ClientReport],
) -> tuple[dict[str, str], list[tuple[str, str, str, str]]]:
    """The reports as the Telemetry gauges take them: client -> status, and one
    ``(client, key SID, check, result)`` per check."""
    statuses: dict[str, str] = {cid: r.status for cid, r in reports.items()}
    rows: list[tuple[str, str, str, str]] = [
        (cid, k.sid, c.name, c.status)
        for cid, r in reports.items()
        for k in r.keys
        for c in k.checks
    ]
    return statuses, rows


#: Seconds between start-up and the first round: readiness never waits for Twilio.
FIRST_ROUND_DELAY = 1.0


class VerificationRunner:
    def __init__(
        self,
        verifier: TwilioVerifier,
        health: KeyHealth,
        clients: Callable[[], Mapping[str, ClientConfig]],
        *,
        interval: float,
        fetcher: Fetcher | None = None,
        first_delay: float = FIRST_ROUND_DELAY,
    ) -> None:
        self.verifier = verifier
        self.health = health
        self.clients = clients
        self.interval = interval
        self.first_delay = first_delay
        self.rounds = 0  # completed rounds (tests and metrics)
        self._fetcher = fetcher  # owned: closed at stop
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: called after each round with every client's merged report (metrics)
        self.on_round: Callable[[Mapping[str, ClientReport]], None] = lambda reports: None

    @classmethod
    def build(
        cls, settings: Settings, clients: Callable[[], Mapping[str, ClientConfig]]
    ) -> VerificationRunner:
        fetcher = Fetcher()
        verifier = TwilioVerifier(
            fetcher, hosts_from_settings(settings), deadline=settings.http_timeout
        )
        health = KeyHealth(settings.twilio_verify)
        health.on_report = log_report
        return cls(
            verifier, health, clients, interval=settings.twilio_verify_interval, fetcher=fetcher
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="twilio-verify")

    def reloaded(self, result: str) -> None:
        """Hook for ``ClientSet.on_reload``: a good reload starts a round now."""
        if result == "ok":
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
            self._task = None
        if self._fetcher is not None:
            await self._fetcher.close()

    async def run_round(self) -> dict[str, ClientReport]:
        configs = dict(self.clients())
        reports = await asyncio.gather(*(self.verifier.check_client(c) for c in configs.values()))
        merged = {
            c.client_id: self.health.record(c, r)
            for c, r in zip(configs.values(), reports, strict=True)
        }
        self.health.forget_except(set(configs))
        self.on_round(merged)
        self.rounds += 1
        return merged

    async def _loop(self) -> None:
        # The first round waits a moment (or a reload): its first fetch imports the HTTP
        # client, which would otherwise hold the loop before the first /readyz is answered.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.first_delay)
        while True:
            self._wake.clear()
            try:
                await self.run_round()
            except Exception as exc:  # noqa: BLE001 - the checks must never stop for good
                log.error("twilio verification round failed", extra={"error": type(exc).__name__})
            delay = self.interval * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
            with contextlib.suppress(TimeoutError):  # woken by a reload, or the interval
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
