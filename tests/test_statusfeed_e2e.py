"""End to end on real Valkey: two regions (two valkey-servers), two pods each (SharedState on
a RedisStore, and a FeedRunner per pod electing one poller per region through the lock), one
fake Statuspage on loopback.

A mapped component goes to ``major_outage`` -> every pod of both regions stops handing out its
edge within one poll interval plus propagation; it comes back after ``clear_polls`` clean
polls. The feed then failing (500) -> nothing is renewed, the lease expires by itself and the
configured list comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest

from drill.fake_statuspage import FakeStatuspage, running
from redis_servers import Node
from support import eventually
from tokensvc.fetch import Fetcher
from tokensvc.statusfeed.config import parse_config
from tokensvc.statusfeed.edgelist import apply_drains
from tokensvc.statusfeed.runner import FeedRunner
from tokensvc.store.redis import RedisStore
from tokensvc.store.shared import SharedState

LISTED = ("ashburn", "umatilla", "roaming")
POLL = 1.0
LEASE = 3.0
#: one jittered poll, plus a poll's timeout, plus propagation (pub/sub, refresh) slack
WITHIN = POLL * 1.1 + 0.5 + 1.0


def served(pod: SharedState) -> list[str]:
    """What this pod hands out for LISTED now (as Service.edges_for computes it)."""
    operator, feed = pod.snapshot.drain_sets(time.time())
    return apply_drains(LISTED, operator, feed, 1)


@pytest.fixture
async def world(
    node_factory: Callable[[], Node],
) -> AsyncIterator[tuple[FakeStatuspage, list[SharedState], list[FeedRunner]]]:
    config_doc = {
        "url": "",
        "poll_interval_seconds": POLL,
        "timeout_seconds": 0.5,
        "max_stale_seconds": 30,
        "confirm_polls": 1,
        "clear_polls": 1,
        "lease_seconds": LEASE,
        "components": {"ashburn00001": ["ashburn"]},
    }
    with running() as page:
        config = parse_config({**config_doc, "url": page.url}, "test")
        stop = asyncio.Event()
        async with AsyncExitStack() as stack:
            pods: list[SharedState] = []
            runners: list[FeedRunner] = []
            fetcher = Fetcher()
            stack.push_async_callback(fetcher.close)
            tasks = []
            for node in (node_factory(), node_factory()):
                for n in range(2):
                    store = RedisStore(node.url)
                    pod = SharedState(store, refresh_interval=0.5)
                    await pod.start()
                    stack.push_async_callback(pod.stop)
                    runner = FeedRunner(
                        config, fetcher, store, holder=f"{node.port}-{n}", clock=time.time
                    )
                    pods.append(pod)
                    runners.append(runner)
                    tasks.append(asyncio.create_task(runner.run(stop)))
            try:
                yield page, pods, runners
            finally:
                stop.set()
                await asyncio.wait(tasks, timeout=3)


async def test_outage_drains_every_pod_of_both_regions_then_clears(
    world: tuple[FakeStatuspage, list[SharedState], list[FeedRunner]],
) -> None:
    """major_outage: no pod hands out ashburn within a poll plus propagation; one poller per
    region; operational again: every pod hands it out again after clear_polls."""
    page, pods, runners = world
    await eventually(lambda: all(r.last_good_at is not None for r in runners if r.poller), 5)
    page.set_status("ashburn00001", "major_outage")
    drained_after = await eventually(
        lambda: all(served(p) == ["umatilla", "roaming"] for p in pods), WITHIN + 1
    )
    pollers = sum(1 for r in runners if r.poller)
    page.set_status("ashburn00001", "operational")
    await eventually(lambda: all(served(p) == list(LISTED) for p in pods), WITHIN + 1)
    assert (True, 2) == (drained_after <= WITHIN + 1, pollers)


async def test_feed_failing_lets_the_lease_expire(
    world: tuple[FakeStatuspage, list[SharedState], list[FeedRunner]],
) -> None:
    """After a drain, the feed answering 500 renews nothing: within the lease every pod hands
    out the configured list again."""
    page, pods, _ = world
    page.set_status("ashburn00001", "major_outage")
    await eventually(lambda: all(served(p) == ["umatilla", "roaming"] for p in pods), WITHIN + 1)
    page.mode = "500"
    back_after = await eventually(
        lambda: all(served(p) == list(LISTED) for p in pods), LEASE + WITHIN
    )
    assert back_after <= LEASE + WITHIN
