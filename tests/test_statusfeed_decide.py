"""tokensvc.statusfeed.decide: the safety rules as properties, and precedence by example."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tokensvc.edges import EDGES, ROAMING
from tokensvc.statusfeed.config import STATUSES, FeedConfig
from tokensvc.statusfeed.decide import (
    Action,
    Lease,
    Operator,
    Plan,
    Rule,
    Track,
    decide,
)
from tokensvc.statusfeed.edgelist import apply_drains, non_roaming

NOW = 1_800_000_000.0
EDGE_NAMES = sorted(EDGES)
COMPONENTS = [f"c{i}" for i in range(6)]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A random config (roaming allowed here, to prove the engine refuses it on its own),
    status vector, counters, held leases, operator state and client lists."""
    mapped = draw(st.lists(st.sampled_from(COMPONENTS), min_size=1, unique=True))
    components = {
        c: tuple(draw(st.lists(st.sampled_from(EDGE_NAMES), min_size=1, max_size=3, unique=True)))
        for c in mapped
    }
    config = FeedConfig(
        url="http://127.0.0.1/api/v2/components.json",
        components=components,
        confirm_polls=draw(st.integers(1, 3)),
        clear_polls=draw(st.integers(1, 3)),
        max_auto_drained=draw(st.integers(0, 4)),
        min_edges_kept=draw(st.integers(0, 3)),
        lease_seconds=60.0,
    )
    statuses = {c: s for c in mapped if (s := draw(st.sampled_from([*STATUSES, None]))) is not None}
    tracks = {
        c: Track(draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.booleans()))
        for c in mapped
    }
    all_edges = sorted({e for es in components.values() for e in es})
    held = draw(st.lists(st.sampled_from(all_edges), unique=True, max_size=config.max_auto_drained))
    leases = {
        e: Lease(
            e,
            draw(st.sampled_from([*mapped, "unmapped"])),
            draw(st.sampled_from(STATUSES)),
            NOW + draw(st.sampled_from([-1.0, 30.0])),
        )
        for e in held
    }
    operator = Operator(
        drained=frozenset(draw(st.lists(st.sampled_from(EDGE_NAMES), max_size=3))) - set(held),
        undrain_holds=frozenset(draw(st.lists(st.sampled_from(all_edges), max_size=2))),
        pins={
            e: NOW + draw(st.sampled_from([-10.0, 3600.0]))
            for e in draw(st.lists(st.sampled_from(all_edges), max_size=2))
        },
    )
    client_lists = {
        f"client{i}": [
            draw(st.lists(st.sampled_from(EDGE_NAMES), min_size=1, max_size=5, unique=True))
            for _ in range(draw(st.integers(1, 3)))
        ]
        for i in range(draw(st.integers(0, 3)))
    }
    poll_ok = draw(st.integers(0, 4)) > 0  # one poll in five fails
    return {
        "config": config,
        "statuses": statuses if poll_ok else None,
        "tracks": tracks,
        "leases": leases,
        "operator": operator,
        "client_lists": client_lists,
    }


def run(s: Mapping[str, Any]) -> Plan:
    return decide(
        s["config"],
        NOW,
        s["statuses"],
        last_good_at=NOW - 10,
        tracks=s["tracks"],
        leases=s["leases"],
        operator=s["operator"],
        client_lists=s["client_lists"],
    )


def after(s: Mapping[str, Any], plan: Plan) -> dict[str, Lease]:
    """The live feed leases the store holds once the plan is written."""
    held = {e: lease for e, lease in s["leases"].items() if lease.until > NOW}
    for lease in plan.releases:
        held.pop(lease.edge, None)
    held.update({lease.edge: lease for lease in plan.writes})
    return held


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_roaming_is_never_drained(s: dict[str, Any]) -> None:
    """Even when a component is mapped to roaming, no plan writes a roaming lease."""
    assert [] == [w for w in run(s).writes if w.edge == ROAMING]


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_never_more_than_max_auto_drained(s: dict[str, Any]) -> None:
    """The leases held after a plan never outnumber max_auto_drained."""
    assert len(after(s, run(s))) <= s["config"].max_auto_drained


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_no_client_list_falls_below_min_edges_kept(s: dict[str, Any]) -> None:
    """Applying the plan's drains to every client list leaves at least min_edges_kept
    non-roaming edges (or all it had once the operator's drains are applied)."""
    plan = run(s)
    feed = frozenset(after(s, plan))
    k = s["config"].min_edges_kept
    drained = s["operator"].drained
    for lists in s["client_lists"].values():
        for edges in lists:
            floor = min(k, non_roaming(e for e in edges if e not in drained))
            assert non_roaming(apply_drains(edges, drained, feed, k)) >= floor


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_a_mass_outage_drains_and_renews_nothing(s: dict[str, Any]) -> None:
    """More than half of the mapped components (and at least two) in outage: no writes."""
    statuses = s["statuses"] or {}
    config = s["config"]
    out = [c for c in config.components if statuses.get(c) in config.act_on]
    if len(out) >= 2 and 2 * len(out) > len(config.components):
        assert () == run(s).writes


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_operator_drains_are_never_written_or_released(s: dict[str, Any]) -> None:
    """An operator's drain wins: the feed neither writes over it nor releases it."""
    plan = run(s)
    touched = {lease.edge for lease in (*plan.writes, *plan.releases)}
    assert set() == touched & s["operator"].drained


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_pinned_and_undrained_edges_are_not_drained(s: dict[str, Any]) -> None:
    """A live pin or an operator undrain hold keeps the feed from writing the edge."""
    operator: Operator = s["operator"]
    blocked = operator.undrain_holds | {e for e in operator.pins if operator.pinned(e, NOW)}
    assert set() == {w.edge for w in run(s).writes} & blocked


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_a_failed_poll_renews_and_releases_nothing(s: dict[str, Any]) -> None:
    """No reading: no writes, no releases; held leases are left to expire."""
    s = {**s, "statuses": None}
    plan = run(s)
    assert ((), ()) == (plan.writes, plan.releases)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_a_new_drain_needs_confirm_polls_of_outage_now(s: dict[str, Any]) -> None:
    """A lease on an edge not held before comes from a component in outage on this poll that
    has been in outage on confirm_polls polls in a row (or was already active)."""
    config: FeedConfig = s["config"]
    plan = run(s)
    for w in plan.writes:
        if w.edge in s["leases"]:
            continue
        assert s["statuses"][w.component] in config.act_on
        before: Track = s["tracks"][w.component]
        assert before.active or before.outage_polls + 1 >= config.confirm_polls


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_an_undrain_hold_ends_only_when_its_components_are_operational(s: dict[str, Any]) -> None:
    """A hold is dropped only on a poll where every component mapped to the edge is
    operational."""
    config: FeedConfig = s["config"]
    statuses = s["statuses"] or {}
    for edge in run(s).ended_holds:
        assert all("operational" == statuses.get(c) for c in config.components_of(edge))


# -- by example ---------------------------------------------------------------------------

CONFIG = FeedConfig(
    url="http://127.0.0.1/api/v2/components.json",
    components={"a": ("ashburn",), "d": ("dublin",), "f": ("frankfurt",)},
    confirm_polls=2,
    clear_polls=2,
    lease_seconds=60,
    max_auto_drained=2,
)


def step(
    statuses: Mapping[str, str],
    tracks: Mapping[str, Track],
    leases: Mapping[str, Lease] | None = None,
    operator: Operator | None = None,
    lists: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> Plan:
    return decide(
        CONFIG,
        NOW,
        statuses,
        last_good_at=NOW - 10,
        tracks=tracks,
        leases=leases or {},
        operator=operator or Operator(),
        client_lists=lists or {},
    )


def test_one_outage_poll_is_confirming_and_the_second_drains() -> None:
    """confirm_polls=2: the first poll reports 'confirming', the second drains."""
    first = step({"a": "major_outage"}, {})
    second = step({"a": "major_outage"}, first.tracks)
    assert ([Rule.CONFIRMING], []) == ([d.rule for d in first.decisions], list(first.writes))
    assert [Lease("ashburn", "a", "major_outage", NOW + 60)] == list(second.writes)


def test_an_undrain_hold_ends_only_when_the_component_is_operational() -> None:
    """An operator undrain during an outage holds (no drain) while the component is degraded,
    and ends once it reports operational."""
    active = {"a": Track(2, 0, True)}
    held = Operator(undrain_holds=frozenset({"ashburn"}))
    during = step({"a": "major_outage"}, active, operator=held)
    degraded = step({"a": "degraded_performance"}, during.tracks, operator=held)
    back = step({"a": "operational"}, degraded.tracks, operator=held)
    assert ((), (), ()) == (during.writes, during.ended_holds, degraded.ended_holds)
    assert ("ashburn",) == back.ended_holds


def test_a_pin_releases_a_held_lease() -> None:
    """Pinning an edge during a known false alarm releases its lease at the next poll."""
    lease = Lease("ashburn", "a", "major_outage", NOW + 30)
    plan = step(
        {"a": "major_outage"},
        {"a": Track(3, 0, True)},
        {"ashburn": lease},
        Operator(pins={"ashburn": NOW + 7200}),
    )
    assert ((lease,), ()) == (plan.releases, plan.writes)
    assert Rule.PINNED == plan.decisions[0].rule


def test_a_drain_that_would_empty_a_list_is_reported_as_a_demotion() -> None:
    """min_edges_kept=1 and a client list [ashburn, roaming]: ashburn is demoted, not removed."""
    plan = step(
        {"a": "major_outage"}, {"a": Track(1, 0, False)}, lists={"app": [["ashburn", ROAMING]]}
    )
    demotions = [(d.edge, d.rule) for d in plan.decisions if d.action is Action.DEMOTE]
    assert [("ashburn", Rule.MIN_EDGES_KEPT)] == demotions
    assert ["roaming", "ashburn"] == apply_drains(
        ["ashburn", ROAMING], frozenset(), frozenset({"ashburn"}), 1
    )


def test_two_of_three_components_out_is_a_mass_outage() -> None:
    """Two of three mapped components in outage at once: nothing is drained."""
    plan = step(
        {"a": "major_outage", "d": "partial_outage", "f": "operational"},
        {"a": Track(1, 0, False), "d": Track(1, 0, False)},
    )
    assert ((), True) == (plan.writes, plan.mass_outage)


def test_a_stale_gap_resets_the_counters() -> None:
    """A good poll after more than max_stale_seconds without one starts counting afresh."""
    plan = decide(
        CONFIG,
        NOW,
        {"a": "major_outage"},
        last_good_at=NOW - 1000,
        tracks={"a": Track(5, 0, True)},
        leases={},
        operator=Operator(),
        client_lists={},
    )
    assert ((), Track(1, 0, False)) == (plan.writes, plan.tracks["a"])


def test_a_lease_of_an_unmapped_component_is_renewed_while_the_edge_clears() -> None:
    """The held lease names a component no longer mapped; the edge's mapped component is
    clearing: the lease is renewed under its own name, nothing raises."""
    lease = Lease("ashburn", "gone", "major_outage", NOW + 30)
    plan = step({"a": "operational"}, {"a": Track(0, 0, True)}, {"ashburn": lease})
    assert (Lease("ashburn", "gone", "major_outage", NOW + 60),) == plan.writes
    assert Rule.CLEARING == plan.decisions[0].rule
