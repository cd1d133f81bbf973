"""RateCounter (tokensvc.ratelimit): local fixed-window decisions, batched-sync bookkeeping,
window rollover and the memory bound. Pure logic on a fake clock; the Redis side is in
tests/store/test_redis.py."""

from __future__ import annotations

import time

from tokensvc.ratelimit import RateCounter


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_limit_is_exact_within_one_pod() -> None:
    """With 5/window, the first 5 checks are allowed and the next ones refused."""
    counter = RateCounter(clock=FakeClock())
    assert [True] * 5 + [False] * 3 == [counter.check("k", 5, 60).allowed for _ in range(8)]


def test_refused_checks_are_not_counted() -> None:
    """A refused request adds nothing: the count stays at the limit and nothing new is dirty."""
    counter = RateCounter(clock=FakeClock())
    for _ in range(3):
        counter.check("k", 3, 60)
    sent = counter.take(100)
    counter.settle(sent, [3])
    for _ in range(50):
        counter.check("k", 3, 60)
    assert (3, 0) == (counter.count("k", 60), counter.dirty)


def test_retry_after_is_the_time_to_the_window_end() -> None:
    """Refused 15.2 s into a 60 s window (aligned to the clock): Retry-After 45 s."""
    clock = FakeClock(1_700_000_040.0 + 15.2)  # 1_700_000_040 is a multiple of 60
    counter = RateCounter(clock=clock)
    counter.check("k", 1, 60)
    assert 45 == counter.check("k", 1, 60).retry_after


def test_keys_and_windows_count_separately() -> None:
    """Another key, or the same key with another window length, has its own counter."""
    counter = RateCounter(clock=FakeClock())
    counter.check("a", 1, 60)
    assert [True, True, False] == [
        counter.check("b", 1, 60).allowed,
        counter.check("a", 1, 3600).allowed,
        counter.check("a", 1, 60).allowed,
    ]


def test_window_rollover_starts_from_zero() -> None:
    """At the next aligned window the key is allowed again, on a new counter name (the ended
    window's unsent hit is not sent: it can no longer change a decision)."""
    clock = FakeClock(1_700_000_040.0 + 59.5)
    counter = RateCounter(clock=clock)
    counter.check("k", 1, 60)
    denied = counter.check("k", 1, 60).allowed
    clock.now += 0.5
    allowed = counter.check("k", 1, 60).allowed
    names = [s.name for s in counter.take(10)]
    assert (False, True, ["k:60:1700000100"]) == (denied, allowed, names)


def test_sync_adds_the_global_total_and_keeps_hits_made_during_it() -> None:
    """After a sync returning total 8 for 2 sent hits, one hit made while it was in flight is
    still pending: the pod counts 8 + 1 and, at 10/window, allows exactly one more."""
    counter = RateCounter(clock=FakeClock())
    counter.check("k", 10, 60)
    counter.check("k", 10, 60)
    in_flight = counter.take(100)
    deltas = [d[:2] for d in RateCounter.deltas(in_flight, counter._clock())]
    counter.check("k", 10, 60)  # during the round trip
    counter.settle(in_flight, [8])  # 6 from other pods, plus our 2
    assert ([("k:60:1699999980", 2)], 9) == (deltas, counter.count("k", 60))
    assert [True, False] == [counter.check("k", 10, 60).allowed for _ in range(2)]


def test_failed_sync_keeps_the_hits_pending_for_the_next_one() -> None:
    """A failed sync loses nothing: the next one sends the old and the new hits together."""
    counter = RateCounter(clock=FakeClock())
    counter.check("k", 10, 60)
    counter.settle(counter.take(100), None)
    counter.check("k", 10, 60)
    assert [2] == [s.sending for s in counter.take(100)]


def test_a_batch_is_capped_and_the_rest_stays_dirty() -> None:
    """take(limit) hands out at most ``limit`` counters; the others wait for the next sync."""
    counter = RateCounter(clock=FakeClock())
    for i in range(25):
        counter.check(f"k{i}", 10, 60)
    first = counter.take(10)
    assert (10, 15) == (len(first), counter.dirty)


def test_hits_of_ended_windows_are_not_replayed() -> None:
    """Hits still pending when their window ends (a long outage) are dropped, not sent."""
    clock = FakeClock(1_700_000_040.0)
    counter = RateCounter(clock=clock)
    for _ in range(4):
        counter.check("old", 100, 60)
    clock.now += 60
    counter.check("new", 100, 60)
    assert (["new:60:1700000100"], 4) == ([s.name for s in counter.take(100)], counter.dropped)


def test_pruning_forgets_ended_windows() -> None:
    """After their windows end, 1000 counters are pruned; the current one stays."""
    clock = FakeClock(1_700_000_040.0)
    counter = RateCounter(clock=clock)
    for i in range(1000):
        counter.check(f"k{i}", 10, 60)
    clock.now += 60
    counter.check("current", 10, 60)
    assert (1000, 1) == (counter.prune(), len(counter))


def test_memory_is_bounded_by_max_entries() -> None:
    """A flood of distinct keys in one window never holds more than max_entries counters."""
    counter = RateCounter(clock=FakeClock(), max_entries=1000)
    sizes = set()
    for i in range(5000):
        counter.check(f"k{i}", 10, 60)
        sizes.add(len(counter))
    assert 1000 == max(sizes)
    assert 0 < counter.evicted


def test_untracked_counter_keeps_no_dirty_list() -> None:
    """The in-memory backend (nothing to sync) keeps only counts: no dirty list grows."""
    counter = RateCounter(track=False, clock=FakeClock())
    for i in range(100):
        counter.check(f"k{i}", 10, 60)
    assert (0, 100) == (counter.dirty, len(counter))


def test_decisions_report_whether_counts_are_shared() -> None:
    """Decisions carry the counter's ``shared`` flag (False while syncs fail)."""
    counter = RateCounter(clock=FakeClock())
    before = counter.check("k", 1, 60).shared
    counter.shared = False
    assert (True, False, False) == (
        before,
        counter.check("j", 1, 60).shared,
        counter.check("k", 1, 60).shared,
    )


def test_a_check_costs_microseconds() -> None:
    """10,000 checks on 1,000 keys take well under a second (generous bound: ~1 µs each)."""
    counter = RateCounter()
    keys = [f"rl:app:id:user{i}" for i in range(1000)]
    started = time.perf_counter()
    for i in range(10_000):
        counter.check(keys[i % 1000], 1_000_000, 60)
    assert time.perf_counter() - started < 1.0


def test_evicted_counters_leave_the_dirty_list_while_syncs_fail() -> None:
    """With the store unreachable, a flood of distinct keys stays bounded by max_entries: evicted
    counters drop their unsent hits instead of piling up in the dirty list."""
    counter = RateCounter(max_entries=100)
    for i in range(5_000):
        counter.check(f"rl:c:ip:10.0.{i // 256}.{i % 256}", 10, 3600)
        counter.settle(counter.take(1_000), None)  # every sync fails
    assert len(counter) <= 100
    assert counter.dirty <= 100
