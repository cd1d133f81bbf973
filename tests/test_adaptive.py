"""Adaptive edge order: counting, minimum sample, hysteresis, bounded change, per-country
isolation, shared through a real Valkey, and the hostile-report bound through the HTTP API."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from redis_servers import Node
from support import assertion, make_client, write_client
from tokensvc.adaptive import (
    AdaptiveOrder,
    Stats,
    hostile_reports_needed,
    step_toward,
    target_order,
)
from tokensvc.clients import AdaptiveConfig, ClientConfig, load_clients
from tokensvc.service import Service
from tokensvc.store.memory import MemoryStore
from tokensvc.store.redis import RedisStore
from tokensvc.store.shared import SharedState

IE_LIST = ("dublin", "frankfurt", "ashburn")
DE_LIST = ("frankfurt", "dublin", "ashburn")
CFG = AdaptiveConfig(window_seconds=600, min_reports=50)


def config(tmp_path: Path, min_reports: int = 50) -> ClientConfig:
    write_client(
        tmp_path,
        "app",
        edges={
            "by_country": {"IE": list(IE_LIST), "DE": list(DE_LIST)},
            "adaptive": {"window_seconds": 600, "min_reports": min_reports},
        },
    )
    return load_clients(tmp_path, {})["app"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def report_connected(order: AdaptiveOrder, cfg: ClientConfig, country: str, edge: str) -> None:
    configured = cfg.edges.for_country(country)
    listed = list(configured)
    before = listed[: listed.index(edge)]
    order.record(cfg, country, configured, [*((e, False) for e in before), (edge, True)], None)


def test_target_needs_the_minimum_sample() -> None:
    """49 reports of a failing first edge do not move it; 50 do."""
    few = {"dublin": Stats(0, 49), "frankfurt": Stats(49, 0)}
    enough = {"dublin": Stats(0, 50), "frankfurt": Stats(50, 0)}
    assert (list(IE_LIST), ["frankfurt", "dublin", "ashburn"]) == (
        target_order(IE_LIST, few, CFG, IE_LIST),
        target_order(IE_LIST, enough, CFG, IE_LIST),
    )


def test_target_has_hysteresis() -> None:
    """A 7-point gap does not swap a pair, but keeps one swapped (enter 10, exit 5 points)."""
    stats = {"dublin": Stats(93, 7), "frankfurt": Stats(100, 0)}
    swapped = ("frankfurt", "dublin", "ashburn")
    assert (list(IE_LIST), list(swapped)) == (
        target_order(IE_LIST, stats, CFG, IE_LIST),
        target_order(IE_LIST, stats, CFG, swapped),
    )


def test_target_prefers_a_much_faster_edge_at_equal_success() -> None:
    """Equal success rates: a median RTT 30 % lower moves the edge up."""
    slow, fast = Stats(60, 0), Stats(60, 0)
    slow.rtt[4], fast.rtt[1] = 60, 60  # medians 250 ms and 100 ms
    assert ["frankfurt", "dublin", "ashburn"] == target_order(
        IE_LIST, {"dublin": slow, "frankfurt": fast}, CFG, IE_LIST
    )


def test_step_moves_one_place_at_a_time() -> None:
    """Toward a reversed target, one adjacent swap per step."""
    assert ["dublin", "ashburn", "frankfurt"] == step_toward(
        IE_LIST, ["ashburn", "frankfurt", "dublin"]
    )


@pytest.mark.parametrize(
    ("min_reports", "honest", "needed"), [(50, 0, 50), (50, 30, 20), (50, 900, 100), (10, 0, 10)]
)
def test_hostile_reports_needed(min_reports: int, honest: int, needed: int) -> None:
    """max(min_reports - H, H/9): the sample and the 10-point gap must both be reached."""
    assert needed == hostile_reports_needed(min_reports, honest)


async def test_configured_order_without_redis_data_or_reports(tmp_path: Path) -> None:
    """No reports: the configured order; an unavailable shared store: the configured order."""
    cfg = config(tmp_path)
    order = AdaptiveOrder(SharedState(MemoryStore()), lambda: {"app": cfg})
    await order.sync()
    assert list(IE_LIST) == list(order.order(cfg, "IE", IE_LIST))


async def test_bounded_change_per_window(tmp_path: Path) -> None:
    """Overwhelming evidence against the first edge still moves it one place per window."""
    cfg = config(tmp_path)
    clock = Clock()
    order = AdaptiveOrder(SharedState(MemoryStore()), lambda: {"app": cfg}, clock)
    for _ in range(60):
        report_connected(order, cfg, "IE", "ashburn")  # dublin and frankfurt fail
    await order.sync()
    first = list(order.order(cfg, "IE", IE_LIST))
    clock.now += 60
    await order.sync()
    held = list(order.order(cfg, "IE", IE_LIST))
    assert (["dublin", "ashburn", "frankfurt"], first) == (first, held)
    assert "holding" in str(order.explain(cfg, "IE", IE_LIST)["reason"])


async def _moves_down_and_back(pods: list[AdaptiveOrder], cfg: ClientConfig, clock: Clock) -> None:
    writer, reader = pods[0], pods[-1]
    reader.order(cfg, "IE", IE_LIST)  # the reading pod serves IE too
    for _ in range(60):
        report_connected(writer, cfg, "IE", "frankfurt")  # dublin fails, frankfurt works
    for pod in pods:
        await pod.sync()
    for pod in pods:  # the second round brings the writer's totals to the reader
        await pod.sync()
    moved = list(reader.order(cfg, "IE", IE_LIST))
    other_country = list(reader.order(cfg, "DE", DE_LIST))
    explain = reader.explain(cfg, "IE", IE_LIST)
    assert (["frankfurt", "dublin", "ashburn"], list(DE_LIST)) == (moved, other_country)
    measured = explain["measurements"]
    assert isinstance(measured, dict)
    assert ((0, 60), (60, 0)) == (
        (measured["dublin"]["successes"], measured["dublin"]["failures"]),
        (measured["frankfurt"]["successes"], measured["frankfurt"]["failures"]),
    )
    clock.now += 700  # the bad reports leave the window
    for _ in range(60):
        report_connected(writer, cfg, "IE", "dublin")
    for _ in range(2):
        for pod in pods:
            await pod.sync()
    assert list(IE_LIST) == list(reader.order(cfg, "IE", IE_LIST))


async def test_moves_down_and_back_in_memory(tmp_path: Path) -> None:
    """In one process: dublin moves down for IE only, and comes back after good reports."""
    cfg = config(tmp_path)
    clock = Clock()
    pod = AdaptiveOrder(SharedState(MemoryStore()), lambda: {"app": cfg}, clock)
    await _moves_down_and_back([pod], cfg, clock)


async def test_moves_down_and_back_through_valkey(tmp_path: Path, redis_node: Node) -> None:
    """Two pods on a real Valkey: reports to one move dublin down for IE on the other, DE
    untouched, and good reports bring it back."""
    cfg = config(tmp_path)
    clock = Clock()
    states = [SharedState(RedisStore(redis_node.url)) for _ in range(2)]
    pods = [AdaptiveOrder(s, lambda: {"app": cfg}, clock) for s in states]
    try:
        await _moves_down_and_back(pods, cfg, clock)
    finally:
        for state in states:
            await state.stop()


async def test_redis_gone_restores_the_configured_order(tmp_path: Path, redis_node: Node) -> None:
    """With the shared store unreachable the configured order stands, and explain says why."""
    cfg = config(tmp_path)
    state = SharedState(RedisStore(redis_node.url), sync_timeout=0.2)
    pod = AdaptiveOrder(state, lambda: {"app": cfg})
    try:
        for _ in range(60):
            report_connected(pod, cfg, "IE", "frankfurt")
        await pod.sync()
        moved = list(pod.order(cfg, "IE", IE_LIST))
        redis_node.stop()
        await pod.sync()
        after = list(pod.order(cfg, "IE", IE_LIST))
        reason = pod.explain(cfg, "IE", IE_LIST)["reason"]
    finally:
        await state.stop()
    assert (["frankfurt", "dublin", "ashburn"], list(IE_LIST)) == (moved, after)
    assert "shared store unavailable: the configured order stands" == reason


def test_hostile_bound_through_the_api(tmp_path: Path) -> None:
    """With min_reports 10 and 4 reports per identity an hour, 2 identities cannot move an
    edge (8 reports count, the rest are 429) and 3 can: ceil(10 / 4) identities."""
    write_client(
        tmp_path,
        "app",
        edges={
            "by_country": {"IE": list(IE_LIST)},
            "adaptive": {"window_seconds": 600, "min_reports": 10},
            "reports": {"per_identity": "4/hour"},
        },
    )
    hostile = {"edges": list(IE_LIST), "connected_edge": "frankfurt"}
    needed = math.ceil(hostile_reports_needed(10, 0) / 4)

    def attack(c: TestClient, who: str) -> list[int]:
        headers = {"Authorization": f"Bearer {assertion(who)}", "x-country": "IE"}
        return [
            c.post("/v1/clients/app/edge-report", headers=headers, json=hostile).status_code
            for _ in range(10)
        ]

    def first_edge(c: TestClient) -> str:
        service: Service = c.app.state.service  # type: ignore[attr-defined]
        assert c.portal is not None
        c.portal.call(service.adaptive.sync)
        edges = c.get("/v1/clients/app/edges", headers={"x-country": "IE"}).json()["edges"]
        return str(edges[0])

    with make_client(tmp_path, country_header="x-country") as c:
        codes = [code for who in ("m1", "m2") for code in attack(c, who)]
        after_two = first_edge(c)
        attack(c, "m3")
        after_three = first_edge(c)
    assert (3, 8, "dublin", "frankfurt") == (needed, codes.count(202), after_two, after_three)
