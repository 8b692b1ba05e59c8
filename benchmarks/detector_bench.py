"""Detector cost per book update, on the demo market.

Runs the seeded demo for 30 s of simulated time (manual clock), then replays the detector's
``on_book`` for every (venue, market) book, many times, and prints microseconds per call.

    python benchmarks/detector_bench.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

from arbtui.config import default_config
from arbtui.domain.clock import NS_PER_S, ManualClock
from arbtui.engine.builder import build_engine


async def main() -> None:
    clock = ManualClock(1_795_617_000 * NS_PER_S)
    engine, _ = build_engine(default_config(), clock)
    await engine.start()
    t0 = time.perf_counter()
    await clock.advance(30 * NS_PER_S)
    sim_wall = time.perf_counter() - t0
    updates = engine.book_updates
    books = [(v, lst.market) for v, venue in engine.venues.items() for lst in venue.listings]
    samples: list[float] = []
    now = clock.now_ns()
    for _ in range(20):
        t = time.perf_counter()
        n = 0
        for _ in range(250):
            for venue, market in books:
                book = engine.book(venue, market)
                assert book is not None
                engine.detector.on_book(venue, market, book, now)
                n += 1
        samples.append((time.perf_counter() - t) / n * 1e6)
    await engine.stop()
    print(f"demo: {updates} book updates in 30 s of simulated time, simulated in {sim_wall:.2f} s wall "
          f"({updates / sim_wall:,.0f} updates/s including the simulated venues and the detector)")
    print(f"detector.on_book: median {statistics.median(samples):.1f} us, "
          f"best {min(samples):.1f} us per book update (re-prices the 1-2 spreads that use the book)")


if __name__ == "__main__":
    asyncio.run(main())
