"""The bridge's feed rate: the number of book updates in the last two seconds of engine time,
found by bisection; checked against the plain queue it replaced, including a clock going back."""

from __future__ import annotations

import random
from collections import deque

from arbtui.domain.clock import NS_PER_MS, NS_PER_S
from arbtui.domain.events import BookUpdated
from arbtui.ui.bridge import RATE_WINDOW_NS, UIBridge, VenueView


class QueueRate:
    """The reference: a deque of update times, popped from the front while older than the window."""

    def __init__(self) -> None:
        self.updates: deque[int] = deque()

    def note(self, ts_ns: int) -> None:
        self.updates.append(ts_ns)

    def rate(self, now_ns: int) -> float:
        while self.updates and self.updates[0] <= now_ns - RATE_WINDOW_NS:
            self.updates.popleft()
        return len(self.updates) * NS_PER_S / RATE_WINDOW_NS


def _compare(times: list[int], reads: set[int], rng: random.Random) -> None:
    view, ref = VenueView(), QueueRate()
    now = 0
    for i, ts in enumerate(times):
        view.note_update(ts)
        ref.note(ts)
        now = max(now, ts)
        if i in reads:
            at = now + rng.randint(0, 3 * NS_PER_S)
            assert view.rate(at) == ref.rate(at), i
    assert view.rate(now + RATE_WINDOW_NS) == ref.rate(now + RATE_WINDOW_NS) == 0


def test_rate_matches_the_queue_on_a_busy_feed() -> None:
    rng = random.Random(1)
    times, t = [], 0
    for _ in range(60_000):  # 20,000 updates a second for 3 s: the list is compacted on the way
        t += rng.choice([0, 1, 50_000, 50_000, 100_000])
        times.append(t)
    _compare(times, set(range(0, 60_000, 977)), rng)


def test_rate_matches_the_queue_when_time_goes_back() -> None:
    rng = random.Random(2)
    for _ in range(20):
        times, t = [], 10 * NS_PER_S
        for _ in range(9_000):
            t += rng.randint(0, 2 * NS_PER_MS)
            if rng.random() < 0.001:
                t -= rng.randint(0, 5 * NS_PER_S)  # a replay restarting: engine time goes back
            times.append(t)
        _compare(times, {rng.randrange(len(times)) for _ in range(60)}, rng)


def test_book_updates_mark_books_dirty_and_count() -> None:
    bridge = UIBridge(["kraken"])
    for i in range(5):
        bridge.on_event(BookUpdated(i * NS_PER_MS, "kraken", "BTC-USD", None, None, i))
    bridge.on_event(BookUpdated(0, "nowhere", "BTC-USD", None, None, 0))  # an unknown venue: no rate
    assert bridge.take_dirty_books() == {("kraken", "BTC-USD"), ("nowhere", "BTC-USD")}
    assert bridge.take_dirty_books() == set()
    assert bridge.venues["kraken"].rate(NS_PER_S) == 2.5
