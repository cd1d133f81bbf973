"""The decision engine: one poll's statuses + counters + store state -> :class:`Plan`. Pure.

No I/O and no clock: ``now`` is passed in, and the store state (current leases, operator
drains, undrain holds, pins) arrives as plain values. The runner writes the plan; ``status-feed
check`` prints it. Every decision carries the :class:`Rule` that made it.

Per mapped component a :class:`Track` counts consecutive outage polls (status in ``act_on``)
and clean polls (any other status). A component becomes *active* after ``confirm_polls``
outage polls and stops being active after ``clear_polls`` clean polls. An edge is wanted while
any component mapped to it is active. Only a component that is in outage *now* starts a new
drain; a clearing component only keeps its lease renewed until it is cleared.

Safety rules, in the order applied to each edge (each property-tested in
tests/test_statusfeed_decide.py):

1. the feed is unavailable (failed, malformed, stale-document poll) -> write nothing and
   release nothing; every lease expires at its own ``until`` (``feed_unavailable``). A gap of
   more than ``max_stale_seconds`` since the last good poll also resets every counter;
2. ``roaming`` is never drained (``roaming``);
3. an operator drain is left alone: never overwritten, never released (``operator_drain``);
4. an operator undrain holds until every component mapped to the edge is reported
   ``operational`` again; until then the feed neither drains nor renews (``operator_undrain``);
5. a live pin keeps the feed from draining the edge; an existing lease is released (``pinned``);
6. more than half of the mapped components in outage at once (and at least two) is a feed
   problem or a platform-wide event: nothing is drained or renewed (``mass_outage``);
7. at most ``max_auto_drained`` edges hold a feed lease, leases already held first
   (``max_auto_drained``);
8. a feed drain never leaves a client's list with fewer than ``min_edges_kept`` non-roaming
   edges: the edge is demoted instead (see edgelist.py; reported as ``min_edges_kept``).

A component the document no longer lists resets its counters; its leases are not renewed
(``component_missing``) and expire by themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tokensvc.edges import ROAMING
from tokensvc.statusfeed.config import STATUSES, FeedConfig
from tokensvc.statusfeed.edgelist import demoted_edges
from tokensvc.store.base import FEED_PREFIX

REASON_PREFIX = FEED_PREFIX
_SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}


class Rule(StrEnum):
    CONFIRMED = "confirmed"  # outage seen on confirm_polls polls in a row
    CONFIRMING = "confirming"  # outage seen, not yet on confirm_polls polls
    CLEARING = "clearing"  # clean again, not yet on clear_polls polls
    CLEARED = "cleared"  # clean on clear_polls polls in a row
    UNMAPPED = "unmapped"  # the lease's component is no longer in the config
    COMPONENT_MISSING = "component_missing"
    FEED_UNAVAILABLE = "feed_unavailable"
    ROAMING = "roaming"
    OPERATOR_DRAIN = "operator_drain"
    OPERATOR_UNDRAIN = "operator_undrain"
    UNDRAIN_CLEARED = "undrain_cleared"  # the undrain hold ends: component operational
    PINNED = "pinned"
    MASS_OUTAGE = "mass_outage"
    MAX_AUTO_DRAINED = "max_auto_drained"
    MIN_EDGES_KEPT = "min_edges_kept"


class Action(StrEnum):
    DRAIN = "drain"  # write a new lease
    RENEW = "renew"  # rewrite a held lease with a new expiry
    RELEASE = "release"  # delete a held lease now
    EXPIRE = "expire"  # leave a held lease unrenewed: it ends at its until
    SKIP = "skip"  # would drain, a rule says no
    DEMOTE = "demote"  # drained, but kept at the end of one client list
    END_HOLD = "end_hold"  # drop an operator undrain hold


@dataclass(frozen=True)
class Track:
    outage_polls: int = 0
    clean_polls: int = 0
    active: bool = False


@dataclass(frozen=True)
class Lease:
    """A feed drain: the drain record of ``edge``, reason ``statusfeed:<component>:<status>``."""

    edge: str
    component: str
    status: str
    until: float

    @property
    def reason(self) -> str:
        return f"{REASON_PREFIX}{self.component}:{self.status}"

    @classmethod
    def from_record(cls, edge: str, reason: str, until: float) -> Lease | None:
        """The lease a drain record stands for, or None for an operator's drain."""
        if not reason.startswith(REASON_PREFIX):
            return None
        component, _, status = reason[len(REASON_PREFIX) :].rpartition(":")
        return cls(edge, component, status, until) if component else None


@dataclass(frozen=True)
class Operator:
    """What operators asked for, as read from the store."""

    drained: frozenset[str] = frozenset()  # edges with an operator drain (not statusfeed:)
    undrain_holds: frozenset[str] = frozenset()  # edges an operator undrained during an outage
    pins: Mapping[str, float] = field(default_factory=dict)  # edge -> pinned until (unix s)

    def pinned(self, edge: str, now: float) -> bool:
        return self.pins.get(edge, 0.0) > now


@dataclass(frozen=True)
class Decision:
    edge: str
    action: Action
    rule: Rule
    component: str = ""
    status: str = ""
    detail: str = ""

    def __str__(self) -> str:
        what = f" {self.component} ({self.status})" if self.component else ""
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.action:<8} {self.edge:<13} rule={self.rule}{what}{tail}"


@dataclass(frozen=True)
class Plan:
    feed: str  # up | down | stale
    tracks: Mapping[str, Track]
    writes: tuple[Lease, ...] = ()  # new and renewed leases
    releases: tuple[Lease, ...] = ()
    ended_holds: tuple[str, ...] = ()
    decisions: tuple[Decision, ...] = ()
    mass_outage: bool = False


def is_stale(config: FeedConfig, now: float, last_good_at: float | None) -> bool:
    return last_good_at is not None and now - last_good_at > config.max_stale_seconds


def decide(
    config: FeedConfig,
    now: float,
    statuses: Mapping[str, str] | None,
    *,
    last_good_at: float | None,
    tracks: Mapping[str, Track],
    leases: Mapping[str, Lease],
    operator: Operator,
    client_lists: Mapping[str, Sequence[Sequence[str]]],
) -> Plan:
    """Decide one poll. ``statuses`` is component id -> effective status, or None when the poll
    gave no usable reading; ``last_good_at`` is the time of the previous good poll."""
    live = {e: lease for e, lease in leases.items() if lease.until > now}
    stale = is_stale(config, now, last_good_at)
    if stale:
        tracks = {}
    if statuses is None:
        return Plan(
            feed="stale" if stale or last_good_at is None else "down",
            tracks=dict(tracks),
            decisions=tuple(
                Decision(
                    e,
                    Action.EXPIRE,
                    Rule.FEED_UNAVAILABLE,
                    lease.component,
                    lease.status,
                    f"not renewed; ends in {lease.until - now:.0f} s",
                )
                for e, lease in sorted(live.items())
            ),
        )
    return _Round(config, now, statuses, tracks, live, operator, client_lists).run()


class _Round:
    """One good poll's decision, split into steps (internal to :func:`decide`)."""

    def __init__(
        self,
        config: FeedConfig,
        now: float,
        statuses: Mapping[str, str],
        tracks: Mapping[str, Track],
        leases: Mapping[str, Lease],
        operator: Operator,
        client_lists: Mapping[str, Sequence[Sequence[str]]],
    ) -> None:
        self.c, self.now, self.statuses = config, now, statuses
        self.leases, self.operator, self.client_lists = leases, operator, client_lists
        self.tracks = self._count(tracks)
        in_outage = [cid for cid in config.components if statuses.get(cid) in config.act_on]
        self.mass = len(in_outage) >= 2 and 2 * len(in_outage) > len(config.components)
        self.decisions: list[Decision] = []
        self.writes: list[Lease] = []
        self.releases: list[Lease] = []

    def _count(self, previous: Mapping[str, Track]) -> dict[str, Track]:
        adopted = dict(previous)
        for lease in self.leases.values():  # a new poller picks up the leases it finds
            if lease.component in self.c.components and lease.component not in adopted:
                adopted[lease.component] = Track(self.c.confirm_polls, 0, True)
        out: dict[str, Track] = {}
        for cid in self.c.components:
            t = adopted.get(cid, Track())
            status = self.statuses.get(cid)
            if status is None:
                out[cid] = Track()
            elif status in self.c.act_on:
                n = t.outage_polls + 1
                out[cid] = Track(n, 0, t.active or n >= self.c.confirm_polls)
            else:
                n = t.clean_polls + 1
                out[cid] = Track(0, n, t.active and n < self.c.clear_polls)
        return out

    def run(self) -> Plan:
        edges = sorted({e for es in self.c.components.values() for e in es} | set(self.leases))
        candidates: list[tuple[str, str, str]] = []  # (edge, component, status) past the gates
        for edge in edges:
            candidate = self._gate(edge)
            if candidate is not None:
                candidates.append(candidate)
        self._select(candidates)
        self._demotions()
        ended = self._ended_holds()
        return Plan(
            "up",
            self.tracks,
            tuple(self.writes),
            tuple(self.releases),
            ended,
            tuple(self.decisions),
            self.mass,
        )

    def _note(
        self,
        edge: str,
        action: Action,
        rule: Rule,
        component: str = "",
        status: str = "",
        detail: str = "",
    ) -> None:
        self.decisions.append(Decision(edge, action, rule, component, status, detail))

    def _release(self, lease: Lease, rule: Rule) -> None:
        self.releases.append(lease)
        self._note(lease.edge, Action.RELEASE, rule, lease.component, lease.status)

    def _gate(self, edge: str) -> tuple[str, str, str] | None:
        """Rules 2-6 for one edge; the (edge, component, status) to hold a lease, or None."""
        held = self.leases.get(edge)
        active = [cid for cid in self.c.components_of(edge) if self.tracks[cid].active]
        out_now = sorted(
            (cid for cid in active if self.statuses.get(cid) in self.c.act_on),
            key=lambda cid: (-_SEVERITY[self.statuses[cid]], cid),
        )
        if not active:
            if held is not None:
                if held.component not in self.c.components:
                    self._release(held, Rule.UNMAPPED)
                elif held.component not in self.statuses:
                    self._note(
                        edge,
                        Action.EXPIRE,
                        Rule.COMPONENT_MISSING,
                        held.component,
                        held.status,
                        "not renewed",
                    )
                else:
                    self._release(held, Rule.CLEARED)
            for cid in self.c.components_of(edge):
                if self.tracks[cid].outage_polls:
                    self._note(
                        edge,
                        Action.SKIP,
                        Rule.CONFIRMING,
                        cid,
                        self.statuses[cid],
                        f"{self.tracks[cid].outage_polls}/{self.c.confirm_polls} polls",
                    )
            return None
        if out_now:
            component, status = out_now[0], self.statuses[out_now[0]]
        elif held is not None:
            component, status = held.component, held.status
        else:
            return None  # clearing, and nothing held: a clearing component starts nothing
        if edge == ROAMING:
            rule: Rule | None = Rule.ROAMING
        elif edge in self.operator.drained:
            self._note(edge, Action.SKIP, Rule.OPERATOR_DRAIN, component, status)
            return None
        elif edge in self.operator.undrain_holds:
            rule = Rule.OPERATOR_UNDRAIN
        elif self.operator.pinned(edge, self.now):
            rule = Rule.PINNED
        elif self.mass:
            if held is not None:
                self._note(edge, Action.EXPIRE, Rule.MASS_OUTAGE, component, status, "not renewed")
            else:
                self._note(edge, Action.SKIP, Rule.MASS_OUTAGE, component, status)
            return None
        else:
            rule = None
        if rule is not None:
            if held is not None:
                self._release(held, rule)
            else:
                self._note(edge, Action.SKIP, rule, component, status)
            return None
        return edge, component, status

    def _select(self, candidates: list[tuple[str, str, str]]) -> None:
        """Rule 7: leases already held first, then the most severe, then by edge name."""
        expiring = {d.edge for d in self.decisions if d.action is Action.EXPIRE}
        slots = max(0, self.c.max_auto_drained - len(expiring))
        ordered = sorted(
            candidates, key=lambda c: (c[0] not in self.leases, -_SEVERITY.get(c[2], 0), c[0])
        )
        until = self.now + self.c.lease_seconds
        for edge, component, status in ordered:
            held = self.leases.get(edge)
            if slots <= 0:
                if held is not None:
                    self._release(held, Rule.MAX_AUTO_DRAINED)
                else:
                    self._note(
                        edge,
                        Action.SKIP,
                        Rule.MAX_AUTO_DRAINED,
                        component,
                        status,
                        f"{self.c.max_auto_drained} already drained",
                    )
                continue
            slots -= 1
            self.writes.append(Lease(edge, component, status, until))
            if held is None:
                self._note(edge, Action.DRAIN, Rule.CONFIRMED, component, status)
            elif status in self.c.act_on and self.statuses.get(component) == status:
                self._note(edge, Action.RENEW, Rule.CONFIRMED, component, status)
            else:
                t = self.tracks.get(component, Track())
                self._note(
                    edge,
                    Action.RENEW,
                    Rule.CLEARING,
                    component,
                    status,
                    f"{t.clean_polls}/{self.c.clear_polls} clean polls",
                )

    def _demotions(self) -> None:
        """Rule 8, reported: where a feed drain is demoted rather than removed."""
        feed = frozenset(w.edge for w in self.writes) | frozenset(
            d.edge for d in self.decisions if d.action is Action.EXPIRE
        )
        if not feed:
            return
        for client, lists in sorted(self.client_lists.items()):
            demoted: set[str] = set()
            for edges in lists:
                demoted.update(
                    demoted_edges(edges, self.operator.drained, feed, self.c.min_edges_kept)
                )
            for edge in sorted(demoted):
                self._note(
                    edge,
                    Action.DEMOTE,
                    Rule.MIN_EDGES_KEPT,
                    detail=f"client {client} keeps it last "
                    f"(min_edges_kept={self.c.min_edges_kept})",
                )

    def _ended_holds(self) -> tuple[str, ...]:
        ended: list[str] = []
        for edge in sorted(self.operator.undrain_holds):
            mapped = self.c.components_of(edge)
            if all(self.statuses.get(cid) == "operational" for cid in mapped):
                ended.append(edge)
                self._note(
                    edge,
                    Action.END_HOLD,
                    Rule.UNDRAIN_CLEARED,
                    detail="every mapped component is operational",
                )
        return tuple(ended)
