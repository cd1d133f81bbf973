"""The running service: settings, live clients, shared state, metrics, readiness."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tokensvc.clients import ClientConfig
from tokensvc.clientset import ClientSet
from tokensvc.edges import EDGES
from tokensvc.observability import Fingerprinter, Metrics
from tokensvc.settings import Settings
from tokensvc.store.shared import SharedState


@dataclass
class Service:
    settings: Settings
    clients: ClientSet
    shared: SharedState
    metrics: Metrics
    fingerprint: Fingerprinter = field(default_factory=Fingerprinter)
    draining: bool = False
    _failovers_reported: int = 0

    @property
    def serving(self) -> bool:
        """Can answer token requests: true from the first good config load until exit, also
        while draining (the load balancer may still route here during the shutdown delay)."""
        return self.clients.loaded and bool(self.clients.clients)

    @property
    def ready(self) -> bool:
        """What /readyz says: serving, and not shutting down."""
        return self.serving and not self.draining

    def readiness(self) -> dict[str, object]:
        return {
            "config": "ok" if self.clients.loaded else "not_loaded",
            # A refused reload leaves the pod ready: it still serves the last good config.
            "config_reload": self.clients.reload_status.as_dict(),
            "clients": len(self.clients.clients),
            "draining": self.draining,
            # Shared state is reported, never a reason to leave the load balancer: a Redis
            # outage must not take every pod out at once.
            "state": self.shared.health(),
            # Reported, not gating: an IdP outage must not empty every region at once. A client
            # whose keys are unavailable answers 503 not_ready so its callers fail over.
            "jwks": self.clients.jwks_status(),
        }

    def observe_rate(self, shared: bool) -> None:
        if not shared:
            self.metrics.rate_local.inc()

    def observe_token(self, cfg: ClientConfig, country: str | None, first_edge: str) -> None:
        m = self.metrics
        m.child(m.minted, cfg.client_id, cfg.twilio.home_region).inc()
        m.child(m.first_edge, cfg.client_id, country or "unknown", first_edge).inc()

    def observe_state(self) -> None:
        """Copy shared-state health into gauges (called periodically and on scrape)."""
        m = self.metrics
        m.redis_up.set(0 if self.shared.degraded else 1)
        failovers = self.shared.failovers_seen
        if failovers > self._failovers_reported:
            m.redis_failovers.inc(failovers - self._failovers_reported)
            self._failovers_reported = failovers
        drained = self.shared.snapshot.drained(time.time())
        for edge in EDGES:
            m.drained.labels(edge).set(1 if edge in drained else 0)
