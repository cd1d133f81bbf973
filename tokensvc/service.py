"""The running service: settings, live clients, shared state, telemetry, readiness."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokensvc.adaptive import AdaptiveOrder
from tokensvc.clientset import ClientSet
from tokensvc.edges import EDGES
from tokensvc.observability import Fingerprinter, Telemetry
from tokensvc.settings import Settings
from tokensvc.statusfeed.edgelist import apply_drains
from tokensvc.store.shared import SharedState
from tokensvc.verifier import KeyHealth


@dataclass
class Service:
    settings: Settings
    clients: ClientSet
    shared: SharedState
    telemetry: Telemetry
    fingerprint: Fingerprinter = field(default_factory=Fingerprinter)
    draining: bool = False
    #: the Twilio verifier's verdicts (None with TOKENSVC_TWILIO_VERIFY=off)
    key_health: KeyHealth | None = None
    #: per-country edge order from edge reports (opt-in per client); built in __post_init__
    adaptive: AdaptiveOrder = field(init=False)

    def __post_init__(self) -> None:
        self.adaptive = AdaptiveOrder(
            self.shared, lambda: {cid: c.config for cid, c in self.clients.clients.items()}
        )

    #: the status feed's floor of non-roaming edges per list (its config's min_edges_kept)
    feed_min_edges_kept: int = 1

    @property
    def serving(self) -> bool:
        """Can answer token requests: true from the first good config load until exit, also
        while draining (the load balancer may still route here during the shutdown delay)."""
        return self.clients.loaded and bool(self.clients.clients)

    @property
    def ready(self) -> bool:
        """What /readyz says: serving, and not shutting down."""
        return self.serving and not self.draining

    def edges_for(self, listed: Sequence[str], now: float) -> list[str]:
        """A configured edge list with the drains in force: operator drains removed, status-feed
        drains removed or, past ``feed_min_edges_kept``, demoted to the end (edgelist.py).
        The drain sets are computed once per snapshot: this is on every token request."""
        operator, feed = self.shared.snapshot.drain_sets(now)
        if not (operator or feed):
            return list(listed)
        return apply_drains(listed, operator, feed, self.feed_min_edges_kept)

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
            # Reported, not gating: per client ok|rejected|missing|unknown with per-key detail.
            # In enforce mode a client whose every key is rejected answers 503 on its own.
            "twilio": (
                self.key_health.readiness(self.clients.clients)
                if self.key_health is not None
                else {"mode": "off"}
            ),
        }

    def observe_state(self) -> None:
        """Hand shared-state health to the telemetry gauges."""
        self.telemetry.state(
            degraded=self.shared.degraded,
            failovers_seen=self.shared.failovers_seen,
            drained=self.shared.snapshot.drained(time.time()),
            edges=EDGES,
        )
