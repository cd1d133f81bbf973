"""Rate-limit counting without a Redis round trip per request.

    RateDecision        the answer for one request: allowed?, Retry-After, counted shared?
    RateCounter         fixed windows aligned to wall-clock time, decided locally:
                          check()   synchronous, no I/O (the request path)
                          take()    the dirty windows' deltas for a batched sync
                          settle()  apply the totals a sync returned (or give the deltas back)

Per (key, window, window start) a ``_Slot`` keeps ``synced``, the global total last read from
the shared store (this pod's flushed hits included), and ``pending``, this pod's hits not
flushed yet. A request is allowed iff ``synced + pending + 1 <= limit``. Windows are aligned
to the wall clock (``start = now - now % window``), so every pod that reaches the same store
adds to the same counter: ``SharedState`` sends all dirty deltas in one round trip every sync
interval and stores the totals it gets back.

Refused requests are not counted. In a fixed window that keeps no abuser out for less time
(once over the limit a key is refused until its window ends, whatever the count), while
counting refusals would make every refused request of a flood dirty its key again and travel
to Redis at each sync, and would make the counter measure attempts instead of tokens issued.

Memory is bounded: windows that have ended are pruned (their unsent hits are dropped: they can
no longer change a decision), and past ``max_entries`` the oldest windows are evicted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

from tokensvc.store.base import Delta


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after: int = 0
    shared: bool = True  # False when counted per pod because the store was unavailable


_ALLOWED_SHARED = RateDecision(True, 0, True)
_ALLOWED_LOCAL = RateDecision(True, 0, False)


@dataclass(slots=True, eq=False)
class _Slot:
    """One key's counter in one window."""

    key: str
    window: int
    start: int
    synced: int = 0  # global total as last read from the store (our flushed hits included)
    pending: int = 0  # this pod's hits not yet sent
    sending: int = 0  # the part of ``pending`` in the sync now in flight
    dirty: bool = False  # in the dirty list (has hits to send)
    gone: bool = False  # evicted by the size bound: never sent, never re-queued

    @property
    def end(self) -> int:
        return self.start + self.window

    @property
    def name(self) -> str:
        """The store's name for this counter: the same in every pod for the same window."""
        return f"{self.key}:{self.window}:{self.start}"


class RateCounter:
    """Fixed-window counters decided locally; see the module docstring.

    ``track`` False (the in-memory backend): nothing is ever synced, the local count is the
    whole truth, and no dirty list is kept.
    """

    def __init__(
        self,
        *,
        track: bool = True,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.track = track
        self.max_entries = max_entries
        self.shared = True  # what decisions report; SharedState sets it from sync outcomes
        self._clock = clock
        self._slots: dict[tuple[str, int, int], _Slot] = {}
        self._dirty: list[_Slot] = []
        self._next_prune = math.inf  # earliest window end among the slots
        self.evicted = 0  # slots dropped by the size bound while their window was running
        self.dropped = 0  # unsent hits dropped because their window ended first

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    def check(self, key: str, limit: int, window: int) -> RateDecision:
        """Count one request against ``limit`` per ``window`` seconds. No I/O, no await."""
        now = self._clock()
        start = int(now) // window * window
        slot = self._slots.get((key, window, start))
        if slot is None:
            slot = self._add(key, window, start, now)
        if slot.synced + slot.pending >= limit:
            return RateDecision(False, max(1, math.ceil(start + window - now)), self.shared)
        slot.pending += 1
        if self.track and not slot.dirty:
            slot.dirty = True
            self._dirty.append(slot)
        return _ALLOWED_SHARED if self.shared else _ALLOWED_LOCAL

    def count(self, key: str, window: int) -> int:
        """This pod's view of the current window's count (synced + pending), for tests/ops."""
        now = self._clock()
        start = int(now) // window * window
        slot = self._slots.get((key, window, start))
        return 0 if slot is None else slot.synced + slot.pending

    def take(self, limit: int) -> list[_Slot]:
        """Up to ``limit`` dirty slots whose window is still running, marked as in flight.
        Slots whose window has ended are dropped here (their hits can no longer matter)."""
        now = self._clock()
        taken: list[_Slot] = []
        kept = 0
        for slot in self._dirty:
            if slot.gone:
                continue
            if len(taken) >= limit:
                self._dirty[kept] = slot
                kept += 1
            elif slot.end <= now:
                slot.dirty = False
                self.dropped += slot.pending
                slot.pending = 0
            else:
                slot.dirty = False
                slot.sending = slot.pending
                taken.append(slot)
        del self._dirty[kept:]
        return taken

    @staticmethod
    def deltas(slots: Sequence[_Slot], now: float) -> list[Delta]:
        """What to send for ``slots``: their in-flight deltas, and a TTL that outlives the
        window by a second (set only when the store creates the counter)."""
        return [(s.name, s.sending, int((s.end - now) * 1000) + 1000) for s in slots]

    def settle(self, slots: Sequence[_Slot], totals: Sequence[int] | None) -> None:
        """After a sync: with ``totals`` (one per slot), ``synced`` becomes the total and the sent
        hits leave ``pending``; without (the sync failed), the hits stay pending, to be retried."""
        for i, slot in enumerate(slots):
            if totals is not None:
                slot.synced = totals[i]
                slot.pending = max(0, slot.pending - slot.sending)
            slot.sending = 0
            if slot.gone:
                continue
            if self.track and slot.pending > 0 and not slot.dirty:
                slot.dirty = True
                self._dirty.append(slot)

    def prune(self, force: bool = False) -> int:
        """Forget windows that have ended; return how many. Cheap unless one has ended."""
        now = self._clock()
        if not force and now < self._next_prune:
            return 0
        before = len(self._slots)
        self._slots = {k: s for k, s in self._slots.items() if s.end > now}
        self._next_prune = min((s.end for s in self._slots.values()), default=math.inf)
        return before - len(self._slots)

    def _add(self, key: str, window: int, start: int, now: float) -> _Slot:
        if len(self._slots) >= self.max_entries:
            self.prune(force=True)
            if len(self._slots) >= self.max_entries:
                # Evict the oldest tenth at once (dicts keep insertion order), so that a flood of
                # new keys costs one O(n) pass per max_entries/10 keys, not one per key.
                doomed = list(islice(self._slots, max(1, self.max_entries // 10)))
                for k in doomed:
                    gone = self._slots.pop(k)
                    gone.gone = True
                    gone.dirty = False
                    self.dropped += gone.pending
                    gone.pending = 0
                # Their unsent hits go too: otherwise the dirty list (and memory) would keep
                # growing past max_entries for as long as syncs fail.
                self._dirty = [s for s in self._dirty if not s.gone]
                self.evicted += len(doomed)
        slot = _Slot(key, window, start)
        self._slots[(key, window, start)] = slot
        self._next_prune = min(self._next_prune, start + window)
        return slot
