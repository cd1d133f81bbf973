"""Adaptive edge order: per client and country, reorder the *configured* list from edge reports.

Opt-in per client (``edges.adaptive: {window_seconds: 600, min_reports: 50}``). Nothing here
runs on the request path but two dictionary reads: ``order()`` returns the last order the
background task computed, ``record()`` adds to in-process counters.

Counting (``outcomes``, applied by ``tokensvc.reports``): a report with ``connected_edge: null``
is a failure of ``edges[0]``; one with ``connected_edge: X`` is a success of X and a failure
of every edge before X in ``edges``. Only edges of the client's configured list for the
caller's country (from the trusted load-balancer header; no header, no adaptation) are
counted, and a preflight's RTT feeds a small histogram per edge. So one report adds at most one
failure to an edge.

Sharing: counters live in time buckets (``window_seconds / BUCKETS`` long). Every
``SYNC_INTERVAL`` seconds the background task sends this pod's new counts of every live bucket
through ``SharedState.add_counts`` (one round trip, the shared store's fail-open budget and
breaker) and takes the global totals back. While the store is unavailable the counts wait
(until their bucket leaves the window) and the configured order stands; with the in-memory
store (one process) the local counts are the totals.

Order, per (client, country), recomputed after each sync:
1. an edge is *measured* when it has at least ``min_reports`` reports in the window;
2. the target is the configured list, bubble-sorted by one rule: measured edge B goes before
   measured edge A when B's success rate is at least ``ENTER_MARGIN`` (0.10) higher, or the
   rates are within ``RTT_RATE_BAND`` and B's median RTT is at most ``1 - RTT_ENTER`` of A's
   (both with ``min_reports`` RTT samples). A pair already swapped stays swapped while the
   weaker margins ``EXIT_MARGIN`` / ``RTT_EXIT`` hold: hysteresis, so the order does not flap;
3. bounded change: the served order moves toward the target by at most one adjacent swap per
   ``window_seconds``.
Too few reports, or the store unavailable: the configured order (``explain`` says which).

Hostile reports: one report moves one failure, and reports are rate limited per identity and
per IP (``edges.reports``), so moving edge A below B needs at least
``max(min_reports - H, H / 9)`` failure reports inside one window when A has H honest successes
(a 10-point success-rate gap), i.e. ``ceil(that / per-identity allowance)`` identities and
``ceil(that / per-IP allowance)`` addresses; ``hostile_reports_needed`` computes it and a test
pins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tokensvc.clients import AdaptiveConfig, ClientConfig
from tokensvc.store.base import Delta
from tokensvc.store.shared import SharedState

log = logging.getLogger("tokensvc.adaptive")

BUCKETS = 6
SYNC_INTERVAL = 5.0
ENTER_MARGIN = 0.10
EXIT_MARGIN = 0.05
RTT_RATE_BAND = 0.02
RTT_ENTER = 0.30
RTT_EXIT = 0.20
#: Upper bounds (ms) of the RTT histogram; the last bucket is everything above.
RTT_BOUNDS_MS = (50.0, 100.0, 150.0, 250.0, 400.0, 700.0)
#: ok, fail, then one counter per RTT bucket (len(RTT_BOUNDS_MS) + 1).
COUNTERS = 2 + len(RTT_BOUNDS_MS) + 1
#: At most this many (client, country, edge) series are tracked; reports past it are dropped.
MAX_SERIES = 20_000

Series = tuple[str, str, str]  # client, country, edge
Place = tuple[str, str]  # client, country


def bucket_seconds(cfg: AdaptiveConfig) -> int:
    return max(1, cfg.window_seconds // BUCKETS)


def hostile_reports_needed(min_reports: int, honest_successes: int) -> int:
    """Failure reports one window needs to move an edge with ``honest_successes``."""
    gap = math.ceil(honest_successes * ENTER_MARGIN / (1 - ENTER_MARGIN) - 1e-9)
    return max(min_reports - honest_successes, gap, 1)


@dataclass
class Stats:
    """One edge's measurements over the window."""

    ok: int = 0
    fail: int = 0
    rtt: list[int] = field(default_factory=lambda: [0] * (len(RTT_BOUNDS_MS) + 1))

    @property
    def reports(self) -> int:
        return self.ok + self.fail

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.reports if self.reports else None

    @property
    def rtt_samples(self) -> int:
        return sum(self.rtt)

    def median_rtt_ms(self) -> float | None:
        """The upper bound of the bucket holding the median (None without samples)."""
        total = self.rtt_samples
        if not total:
            return None
        seen = 0
        for i, count in enumerate(self.rtt):
            seen += count
            if seen * 2 >= total:
                return RTT_BOUNDS_MS[i] if i < len(RTT_BOUNDS_MS) else math.inf
        return math.inf  # pragma: no cover - the loop always returns

    def add(self, counts: Sequence[int]) -> None:
        self.ok += counts[0]
        self.fail += counts[1]
        for i in range(len(self.rtt)):
            self.rtt[i] += counts[2 + i]

    def as_dict(self) -> dict[str, object]:
        rate = self.success_rate
        median = self.median_rtt_ms()
        return {
            "reports": self.reports,
            "successes": self.ok,
            "failures": self.fail,
            "success_rate": None if rate is None else round(rate, 4),
            "rtt_samples": self.rtt_samples,
            "median_rtt_ms": None if median is None or math.isinf(median) else median,
        }


def _better(b: Stats, a: Stats, cfg: AdaptiveConfig, swapped: bool) -> bool:
    """Should measured edge ``b`` go before ``a``? Weaker margins when already swapped."""
    if b.reports < cfg.min_reports or a.reports < cfg.min_reports:
        return False
    rate_b, rate_a = b.ok / b.reports, a.ok / a.reports
    margin = EXIT_MARGIN if swapped else ENTER_MARGIN
    if rate_b - rate_a >= margin:
        return True
    if abs(rate_b - rate_a) > RTT_RATE_BAND:
        return False
    if b.rtt_samples < cfg.min_reports or a.rtt_samples < cfg.min_reports:
        return False
    mb, ma = b.median_rtt_ms(), a.median_rtt_ms()
    assert mb is not None and ma is not None  # noqa: S101 - samples checked above
    return mb <= ma * (1 - (RTT_EXIT if swapped else RTT_ENTER))


def target_order(
    configured: Sequence[str], stats: dict[str, Stats], cfg: AdaptiveConfig, current: Sequence[str]
) -> list[str]:
    """The configured list sorted by ``_better`` (bubble sort: stable, at most 16 edges)."""
    rank = {edge: i for i, edge in enumerate(configured)}
    order = list(configured)
    was_before = {(x, y) for i, x in enumerate(current) for y in current[i + 1 :]}
    changed = True
    while changed:
        changed = False
        for i in range(len(order) - 1):
            a, b = order[i], order[i + 1]
            if rank[b] < rank[a]:
                continue  # already against the configured order: never swap it back here
            swapped = (b, a) in was_before
            if _better(stats.get(b, Stats()), stats.get(a, Stats()), cfg, swapped):
                order[i], order[i + 1] = b, a
                changed = True
    return order


def step_toward(current: Sequence[str], target: Sequence[str]) -> list[str]:
    """One adjacent swap of ``current`` toward ``target`` (the first misplaced edge up)."""
    order = list(current)
    for i, edge in enumerate(target):
        if order[i] != edge:
            j = order.index(edge)
            order[j - 1], order[j] = order[j], order[j - 1]
            return order
    return order


@dataclass
class _Place:
    """The served order of one (client, country) and when it last changed."""

    configured: tuple[str, ...]
    order: tuple[str, ...]
    changed_at: float = -math.inf
    why: str = "configured order"


class AdaptiveOrder:
    """Edge reports in, per-country orders out; ``run()`` is the background task."""

    def __init__(
        self,
        shared: SharedState,
        clients: Callable[[], dict[str, ClientConfig]],
        clock: Callable[[], float] = time.time,
        max_series: int = MAX_SERIES,
    ) -> None:
        self.shared = shared
        self.clients = clients
        self.clock = clock
        self.max_series = max_series
        #: series -> bucket -> counts not yet sent
        self._pending: dict[Series, dict[int, list[int]]] = {}
        #: series -> bucket -> global totals as of the last sync (local counts in memory mode)
        self._totals: dict[Series, dict[int, list[int]]] = {}
        self._places: dict[Place, _Place] = {}
        self.shared_ok = True
        self._task: asyncio.Task[None] | None = None

    # -- request path ----------------------------------------------------------------------

    def order(
        self, cfg: ClientConfig, country: str | None, configured: Sequence[str]
    ) -> Sequence[str]:
        """The order to hand out: the adapted one when there is one, else ``configured``. Not a
        copy: the caller (``Service.edges_for``) makes the one copy a request needs."""
        if cfg.adaptive is None or country is None:
            return configured
        place = self._places.get((cfg.client_id, country))
        if place is None:
            if len(self._places) < self.max_series:
                self._places[(cfg.client_id, country)] = _Place(
                    tuple(configured), tuple(configured)
                )
            return configured
        if place.configured != tuple(configured):  # the config changed: start over
            place.configured = place.order = tuple(configured)
            place.changed_at, place.why = -math.inf, "configured order (config changed)"
        if not self.shared_ok:
            return configured
        return place.order

    def record(
        self,
        cfg: ClientConfig,
        country: str | None,
        configured: Sequence[str],
        outcomes: Iterable[tuple[str, bool]],
        rtt: tuple[str, float] | None,
    ) -> None:
        """Count one report's outcomes (and a preflight RTT) for edges of ``configured``."""
        if cfg.adaptive is None or country is None:
            return
        self.order(cfg, country, configured)  # registers the place
        bucket = int(self.clock() // bucket_seconds(cfg.adaptive))
        listed = set(configured)
        for edge, ok in outcomes:
            if edge in listed:
                counts = self._counts(cfg.client_id, country, edge, bucket)
                if counts is not None:
                    counts[0 if ok else 1] += 1
        if rtt is not None and rtt[0] in listed:
            counts = self._counts(cfg.client_id, country, rtt[0], bucket)
            if counts is not None:
                counts[2 + _rtt_bucket(rtt[1])] += 1

    def _counts(self, client: str, country: str, edge: str, bucket: int) -> list[int] | None:
        series = (client, country, edge)
        buckets = self._pending.get(series)
        if buckets is None:
            if len(self._pending) + len(self._totals) >= 2 * self.max_series:
                return None
            buckets = self._pending[series] = {}
        return buckets.setdefault(bucket, [0] * COUNTERS)

    # -- background ------------------------------------------------------------------------

    def stats(self, cfg: ClientConfig, country: str, edges: Iterable[str]) -> dict[str, Stats]:
        """Each edge's measurements over ``cfg``'s window, as of the last sync."""
        assert cfg.adaptive is not None  # noqa: S101 - callers check
        live = self._live_buckets(cfg.adaptive)
        result: dict[str, Stats] = {}
        for edge in edges:
            stats = Stats()
            for bucket, counts in self._totals.get((cfg.client_id, country, edge), {}).items():
                if bucket in live:
                    stats.add(counts)
            result[edge] = stats
        return result

    def _live_buckets(self, cfg: AdaptiveConfig) -> range:
        length = bucket_seconds(cfg)
        now = int(self.clock() // length)
        return range(now - BUCKETS + 1, now + 1)

    async def sync(self) -> bool:
        """Send pending counts, take totals back, recompute every order. Never raises."""
        configs = self.clients()
        deltas: list[Delta] = []
        slots: list[tuple[Series, int, int]] = []
        for place in list(self._places):
            cfg = configs.get(place[0])
            if cfg is None or cfg.adaptive is None:
                self._places.pop(place, None)
                continue
            live = self._live_buckets(cfg.adaptive)
            ttl_ms = (cfg.adaptive.window_seconds + bucket_seconds(cfg.adaptive)) * 1000 + 10_000
            for edge in self._places[place].configured:
                series = (*place, edge)
                pending = self._pending.get(series, {})
                for bucket in live:
                    counts = pending.get(bucket, [0] * COUNTERS)
                    for i, n in enumerate(counts):
                        deltas.append((f"edge:{':'.join(series)}:{bucket}:{i}", n, ttl_ms))
                        slots.append((series, bucket, i))
        if self.shared.remote:
            totals = await self.shared.add_counts(deltas) if deltas else []
            self.shared_ok = totals is not None
            if totals is not None:
                self._totals = {}
                for (series, bucket, i), total in zip(slots, totals, strict=True):
                    self._totals.setdefault(series, {}).setdefault(bucket, [0] * COUNTERS)[i] = (
                        total
                    )
                self._pending.clear()
        else:
            for series, buckets in self._pending.items():
                kept = self._totals.setdefault(series, {})
                for bucket, counts in buckets.items():
                    into = kept.setdefault(bucket, [0] * COUNTERS)
                    for i, n in enumerate(counts):
                        into[i] += n
            self._pending.clear()
            self.shared_ok = True
        self._prune(configs)
        self._recompute(configs)
        return self.shared_ok

    def _prune(self, configs: dict[str, ClientConfig]) -> None:
        for store in (self._pending, self._totals):
            for series in list(store):
                cfg = configs.get(series[0])
                if cfg is None or cfg.adaptive is None:
                    del store[series]
                    continue
                live = self._live_buckets(cfg.adaptive)
                buckets = {b: c for b, c in store[series].items() if b in live}
                if buckets:
                    store[series] = buckets
                else:
                    del store[series]

    def _recompute(self, configs: dict[str, ClientConfig]) -> None:
        now = self.clock()
        for (client, country), place in self._places.items():
            cfg = configs[client]
            assert cfg.adaptive is not None  # noqa: S101 - pruned in sync()
            stats = self.stats(cfg, country, place.configured)
            target = target_order(place.configured, stats, cfg.adaptive, place.order)
            if tuple(target) == place.order:
                if place.order == place.configured:
                    place.why = "configured order: no edge measurably better than the one before"
                continue
            if now - place.changed_at < cfg.adaptive.window_seconds:
                place.why = "holding: at most one swap per window"
                continue
            before = place.order
            place.order = tuple(step_toward(place.order, target))
            place.changed_at = now
            moved = next(e for i, e in enumerate(place.order) if before[i] != e)
            passed = before[before.index(moved) - 1]
            if place.configured.index(moved) < place.configured.index(passed):
                place.why = f"{moved} back before {passed}: no longer measurably worse"
            else:
                place.why = f"{moved} moved before {passed}: " + _reason(
                    stats[moved], stats[passed]
                )
            log.info(
                "adaptive edge order changed",
                extra={"client": client, "country": country, "edge": moved},
            )

    def explain(
        self, cfg: ClientConfig, country: str | None, configured: Sequence[str]
    ) -> dict[str, object]:
        """What ``GET .../edges?explain=true`` shows: the lists, measurements and reason."""
        served = self.order(cfg, country, configured)
        doc: dict[str, object] = {
            "configured": list(configured),
            "adaptive": cfg.adaptive is not None,
        }
        if cfg.adaptive is None:
            doc["reason"] = "adaptive order is off for this client"
            return doc
        doc["window_seconds"] = cfg.adaptive.window_seconds
        doc["min_reports"] = cfg.adaptive.min_reports
        if country is None:
            doc["reason"] = "no trusted country: the configured order stands"
            return doc
        stats = self.stats(cfg, country, configured)
        doc["measurements"] = {edge: s.as_dict() for edge, s in stats.items()}
        doc["order"] = list(served)
        place = self._places.get((cfg.client_id, country))
        if not self.shared_ok:
            doc["reason"] = "shared store unavailable: the configured order stands"
        elif place is None:
            doc["reason"] = "configured order: no reports yet"
        elif all(s.reports < cfg.adaptive.min_reports for s in stats.values()):
            doc["reason"] = (
                f"configured order: fewer than {cfg.adaptive.min_reports} reports per edge"
            )
        else:
            doc["reason"] = place.why
        return doc

    async def run(self, interval: float = SYNC_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except Exception:  # the loop must survive anything; logged with its traceback
                log.exception("adaptive order sync failed")

    def start(self, interval: float = SYNC_INTERVAL) -> None:
        self._task = asyncio.create_task(self.run(interval), name="adaptive-order")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _rtt_bucket(rtt_ms: float) -> int:
    for i, bound in enumerate(RTT_BOUNDS_MS):
        if rtt_ms <= bound:
            return i
    return len(RTT_BOUNDS_MS)


def _reason(up: Stats, down: Stats) -> str:
    ru, rd = up.success_rate or 0.0, down.success_rate or 0.0
    if ru - rd >= EXIT_MARGIN:
        return f"success rate {ru:.0%} over {rd:.0%} ({up.reports} and {down.reports} reports)"
    return f"median RTT {up.median_rtt_ms():g} ms over {down.median_rtt_ms():g} ms"
