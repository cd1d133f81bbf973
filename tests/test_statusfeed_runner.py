"""tokensvc.statusfeed.runner against the fake Statuspage on loopback, with an injected clock:
status transitions, every feed failure mode, poller takeover and a store outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from drill.fake_statuspage import FakeStatuspage, running
from fake_lease_store import FakeClock, MemoryLeaseStore
from support import eventually
from tokensvc.fetch import Fetcher
from tokensvc.statusfeed.config import FeedConfig
from tokensvc.statusfeed.edgelist import apply_drains
from tokensvc.statusfeed.runner import FeedRunner

CONFIGURED = ["ashburn", "umatilla", "roaming"]
INTERVAL = 10.0
LEASE = 25.0


@pytest.fixture
def fake() -> Iterator[FakeStatuspage]:
    with running() as page:
        yield page


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    f = Fetcher()
    yield f
    await f.close()


def make_config(fake: FakeStatuspage, **changes: object) -> FeedConfig:
    base: dict[str, object] = dict(
        url=fake.url,
        components={
            "ashburn00001": ("ashburn",),
            "dublin000001": ("dublin",),
            "frankfurt001": ("frankfurt",),
            "tokyo0000001": ("tokyo",),
            "sydney000001": ("sydney",),
        },
        poll_interval_seconds=INTERVAL,
        timeout_seconds=0.5,
        max_stale_seconds=60,
        confirm_polls=2,
        clear_polls=3,
        lease_seconds=LEASE,
        max_auto_drained=2,
        min_edges_kept=1,
    )
    base.update(changes)
    return FeedConfig(**base)  # type: ignore[arg-type]


class Pod:
    """One runner with its clock, as one pod of a region."""

    def __init__(
        self,
        fake: FakeStatuspage,
        fetcher: Fetcher,
        store: MemoryLeaseStore,
        clock: FakeClock,
        name: str = "pod-a",
        **changes: object,
    ) -> None:
        self.clock = clock
        self.runner = FeedRunner(
            make_config(fake, **changes), fetcher, store, holder=name, clock=clock
        )

    async def polls(self, n: int) -> None:
        """n ticks, one poll interval apart."""
        for _ in range(n):
            await self.runner.tick()
            self.clock.advance(INTERVAL)


def served(store: MemoryLeaseStore) -> list[str]:
    """What a client configured with CONFIGURED is handed now."""
    return apply_drains(CONFIGURED, frozenset(), store.drained(), 1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryLeaseStore:
    return MemoryLeaseStore(clock)


async def test_one_bad_poll_does_not_drain(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """A single major_outage poll, then operational: nothing is drained."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(1)
    fake.set_status("ashburn00001", "operational")
    await pod.polls(3)
    assert {} == store.live()


async def test_confirm_polls_drain_with_a_statusfeed_reason(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """Two outage polls in a row (confirm_polls=2) drain the mapped edge as a lease."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "major_outage")
    await pod.runner.tick()
    clock.advance(INTERVAL)
    await pod.runner.tick()
    record = store.live()["ashburn"]
    assert ("statusfeed:ashburn00001:major_outage", clock.now + LEASE) == (
        record.reason,
        record.until,
    )
    assert ["umatilla", "roaming"] == served(store)


async def test_clear_polls_release_the_lease(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """After the outage, the lease is renewed on two clean polls and released on the third."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "partial_outage")
    await pod.polls(2)
    fake.set_status("ashburn00001", "operational")
    await pod.polls(2)
    still = "ashburn" in store.live()
    await pod.polls(1)
    assert (True, CONFIGURED) == (still, served(store))


async def test_leases_are_renewed_only_while_polls_confirm(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """Each confirming poll moves the lease's expiry to now + lease_seconds."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(2)
    first = store.live()["ashburn"].until
    await pod.runner.tick()
    assert first + INTERVAL == store.live()["ashburn"].until


@pytest.mark.parametrize("mode", ["500", "hang", "redirect", "garbage", "stale"])
async def test_a_broken_feed_lets_leases_expire(
    mode: str, fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """Once the feed fails (500, hang, redirect not followed, garbage, an older document),
    nothing is renewed: the lease keeps its expiry, ends, and the configured list is back."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(2)
    until = store.live()["ashburn"].until
    fake.mode = mode
    await pod.runner.tick()
    kept = store.live()["ashburn"].until
    clock.now = until + 0.001
    await pod.runner.tick()
    assert (until, CONFIGURED) == (kept, served(store))
    assert pod.runner.last_error in {
        "http_500",
        "timeout",
        "redirect",
        "malformed",
        "stale_document",
    }


async def test_a_redirect_is_not_followed(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """The 302 is the answer: one request reaches the fake, not two."""
    pod = Pod(fake, fetcher, store, clock)
    fake.mode = "redirect"
    await pod.runner.tick()
    assert ("redirect", 1) == (pod.runner.last_error, fake.requests)


async def test_a_summary_document_works_like_components(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """summary.json (with incidents and status) drives the same decisions."""
    pod = Pod(fake, fetcher, store, clock, url=fake.summary_url)
    fake.set_status("dublin000001", "partial_outage")
    await pod.polls(2)
    assert {"dublin"} == set(store.live())


async def test_a_mapped_group_drains_when_a_child_is_out(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """A group id maps to the worst status of its children."""
    pod = Pod(
        fake,
        fetcher,
        store,
        clock,
        components={
            "grpvoice0001": ("ashburn",),
            "console00001": ("tokyo",),
            "dublin000001": ("dublin",),
        },
    )
    fake.set_status("sipint000001", "major_outage")
    await pod.polls(2)
    assert "statusfeed:grpvoice0001:major_outage" == store.live()["ashburn"].reason


async def test_an_operator_drain_is_never_overwritten_or_released(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """The operator's drain keeps its reason through the outage and after it clears."""
    pod = Pod(fake, fetcher, store, clock)
    store.operator_drain("ashburn")
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(3)
    fake.set_status("ashburn00001", "operational")
    await pod.polls(4)
    assert "operator: maintenance" == store.live()["ashburn"].reason


async def test_an_operator_undrain_holds_until_operational(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """Undrained during the outage, the edge stays undrained while the outage lasts; once
    the component is operational the hold ends and a later outage drains again."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(2)
    store.operator_undrain("ashburn")
    await pod.polls(3)
    during = set(store.live())
    fake.set_status("ashburn00001", "operational")
    await pod.polls(1)
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(2)
    assert (set(), set(), {"ashburn"}) == (during, store.holds, set(store.live()))


async def test_a_pin_keeps_the_feed_from_draining(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """`edges pin ashburn --for 2h`: the outage is reported, ashburn is not drained."""
    pod = Pod(fake, fetcher, store, clock)
    store.pinned["ashburn"] = clock.now + 7200
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(3)
    assert {} == store.live()


async def test_a_second_pod_takes_over_within_one_lock_lease(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """Pod A polls and drains; B stays idle while A holds the lock. A dies: within one lock
    lease B is the poller, adopts the lease, and releases it after clear_polls clean polls."""
    a = Pod(fake, fetcher, store, clock, "pod-a")
    b = Pod(fake, fetcher, store, clock, "pod-b")
    fake.set_status("ashburn00001", "major_outage")
    await a.runner.tick()
    idle = await b.runner.tick()
    clock.advance(INTERVAL)
    await a.runner.tick()  # drains; then A dies
    clock.advance(a.runner.config.lock_seconds)
    took_over = await b.runner.tick()
    fake.set_status("ashburn00001", "operational")
    clock.advance(INTERVAL)
    await b.polls(3)
    assert (None, True, {}) == (idle, took_over is not None, store.live())


async def test_with_the_store_down_nothing_new_is_drained(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """Store errors end the tick quietly; once it is back, counting goes on."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "major_outage")
    store.down = True
    await pod.polls(3)
    store.down = False
    down = store.live()
    await pod.polls(2)
    assert ({}, {"ashburn"}) == (down, set(store.live()))


async def test_a_stale_gap_needs_confirm_polls_again(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """After more than max_stale_seconds without a good poll, one outage poll is not enough."""
    pod = Pod(fake, fetcher, store, clock)
    fake.set_status("ashburn00001", "major_outage")
    await pod.polls(2)
    fake.mode = "500"
    await pod.polls(7)  # 70 s > max_stale_seconds=60: the lease has expired too
    fake.mode = "ok"
    await pod.polls(1)
    first = set(store.live())
    await pod.polls(1)
    assert (set(), {"ashburn"}) == (first, set(store.live()))


async def test_the_loop_stops_when_asked(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """run() polls at once and returns promptly when stop is set during its sleep."""
    pod = Pod(fake, fetcher, store, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(pod.runner.run(stop))
    await eventually(lambda: fake.requests > 0, within=5)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert 1 == fake.requests


async def test_the_worked_example_of_the_docs(
    fake: FakeStatuspage, fetcher: Fetcher, store: MemoryLeaseStore, clock: FakeClock
) -> None:
    """docs/status-feed.md, worked example: drain on the 2nd outage poll, a 503 renews
    nothing, release on the 3rd clean poll; the client list at every step."""
    pod = Pod(
        fake,
        fetcher,
        store,
        clock,
        poll_interval_seconds=30,
        lease_seconds=120,
        components={
            "ashburn00001": ("ashburn",),
            "dublin000001": ("dublin",),
            "frankfurt001": ("frankfurt",),
        },
    )
    steps = [
        ("major_outage", "ok"),
        ("major_outage", "ok"),
        ("partial_outage", "ok"),
        ("partial_outage", "500"),
        ("operational", "ok"),
        ("operational", "ok"),
        ("operational", "ok"),
    ]
    seen = []
    for status, mode in steps:
        fake.set_status("ashburn00001", status)
        fake.mode = mode
        await pod.runner.tick()
        record = store.live().get("ashburn")
        seen.append((served(store), record.until - clock.now if record else None))
        clock.advance(30)
    drained = ["umatilla", "roaming"]
    assert [
        (CONFIGURED, None),
        (drained, 120),
        (drained, 120),
        (drained, 90),
        (drained, 120),
        (drained, 120),
        (CONFIGURED, None),
    ] == seen
