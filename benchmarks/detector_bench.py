"""Detector cost per spread evaluation, on the demo market, against the old detector.

Runs the seeded demo for 16 s of simulated time (manual clock; an ETH-USD spread pays then), then, for
every spread, times one evaluation three ways on the same books, balances and volatility:

- ``old``: the detector before the hot-path work (``tests/detector_reference.py``, kept as the tests'
  oracle), which re-walks both books on every evaluation;
- ``walk``: the current detector with its memory of the last evaluation cleared, so it walks;
- ``unchanged``: the current detector when nothing it read has changed (what most updates cost).

Times are this thread's CPU time, the best of many repeats (the machine may be shared), in microseconds.
The end-to-end figure, from a frame's arrival to the event, is ``benchmarks/frame_to_opportunity.py``.

    python benchmarks/detector_bench.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from arbtui.assembly import build_engine
from arbtui.config import default_config
from arbtui.domain.clock import NS_PER_S, ManualClock
from arbtui.engine.detector import _Priced

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package, for the old detector
from tests.detector_reference import ReferenceDetector  # noqa: E402


def best_us(fn: Callable[[], object], n: int = 200, repeats: int = 40) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.thread_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time_ns() - t) / n / 1000)
    return best


async def main() -> None:
    clock = ManualClock(1_795_617_000 * NS_PER_S)
    config = default_config()
    engine, _ = build_engine(config, clock)
    await engine.start()
    await clock.advance(16 * NS_PER_S)
    now = clock.now_ns()
    detector = engine.detector
    fees = {name: venue.fees(venue.listings[0].market) for name, venue in engine.venues.items()}
    old = ReferenceDetector(config, engine.instruments, fees, engine.book, engine.free_balance)
    old._vol = detector._vol  # the same volatility estimates
    old.evaluate_all(now)
    print(f"{'spread':40s} {'pays':>5s} {'old':>8s} {'walk':>8s} {'unchanged':>10s}   (us per evaluation)")
    for spec in detector._specs:
        priced = detector._priced[spec.key]
        old_spec = next(s for s in old._specs if s.key == spec.key)

        def walk(priced: _Priced = priced) -> None:
            priced.valid = False  # forget the last evaluation: the next one walks
            detector._evaluate(priced, now)

        t_old = best_us(lambda spec=old_spec: old._evaluate(spec, now))
        t_walk = best_us(walk)
        detector._evaluate(priced, now)
        t_same = best_us(lambda priced=priced: detector._evaluate(priced, now))
        spread = detector.spread(spec.key)
        pays = "yes" if spread is not None and spread.pays else "no"
        print(f"{spec.key:40s} {pays:>5s} {t_old:8.1f} {t_walk:8.1f} {t_same:10.1f}")
    await engine.stop()


if __name__ == "__main__":
    asyncio.run(main())
