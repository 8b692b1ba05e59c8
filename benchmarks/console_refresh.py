"""The console's CPU per refresh under a busy feed, headless and deterministic.

    python benchmarks/console_refresh.py [--refreshes 60] [--frames 2000]

The demo console (seed 7, manual clock, 160x48, Textual's headless driver) is warmed up for 16 s of
engine time (an ETH-USD spread selected: its kraken and coinbase books are the ladders shown).
Then, ``--refreshes`` times: ``--frames`` touch changes of the four BTC/ETH books go through
``Engine.on_book`` (100 ms of a 20,000 frames/s feed, not timed), the clock moves 100 ms, and one
refresh is timed in thread CPU: the panes' flush (``ArbApp.flush``) and the screen update Textual
runs after it (``Screen._on_timer_update``: the compositor and the widgets' lines; headless, no
terminal output). Prints the median and the best refresh. No terminal and no wall clock in the
figures, so it is far less noisy than ``benchmarks/console.py`` on a busy machine, and it compares
two versions of the UI on the same work; it leaves out the bridge, garbage collection and the
terminal writer, which ``benchmarks/console.py`` counts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from decimal import Decimal

from textual.screen import Screen

from arbtui.domain.clock import NS_PER_MS
from arbtui.ui.scenarios import make_app, warm_up

UPDATES: list[float] = []


def _timed_update(original: object) -> object:
    def timed(screen: Screen[object]) -> None:
        t0 = time.thread_time()
        original(screen)  # type: ignore[operator]
        UPDATES.append(time.thread_time() - t0)

    return timed


async def measure(refreshes: int, frames: int) -> tuple[list[float], list[float]]:
    Screen._on_timer_update = _timed_update(Screen._on_timer_update)  # type: ignore[method-assign,assignment]
    app, clock = make_app()
    flushes: list[float] = []
    updates: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        await warm_up(app, clock, 16)
        await pilot.pause()
        engine = app.engine
        books = [
            (v, lst.market)
            for v, venue in engine.venues.items()
            for lst in venue.listings
            if lst.market in ("BTC-USD", "ETH-USD")
        ]
        sizes = [Decimal(k) / 100 for k in range(1, 8)]
        n = 0
        for _ in range(refreshes):
            for _ in range(frames):
                venue, market = books[n % len(books)]
                book = engine.book(venue, market)
                assert book is not None
                bids = (n // len(books)) % 2 == 0
                touch = book.best_bid() if bids else book.best_ask()
                assert touch is not None
                size = sizes[n % len(sizes)]
                qty = touch[1] + size if n % 2 else max(touch[1] - size, size)
                if bids:
                    book.apply_update([(touch[0], qty)], [], clock.now_ns())
                else:
                    book.apply_update([], [(touch[0], qty)], clock.now_ns())
                engine.on_book(venue, market, book)
                n += 1
            await clock.advance(100 * NS_PER_MS)
            await pilot.pause()
            UPDATES.clear()
            t0 = time.thread_time()
            await app.flush()
            flushes.append(time.thread_time() - t0)
            for _ in range(50):  # the screen update follows on Textual's next tick
                await pilot.pause(0.01)
                if UPDATES:
                    break
            updates.append(sum(UPDATES))
        await app.engine.stop("measured")
    return flushes, updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refreshes", type=int, default=60)
    parser.add_argument("--frames", type=int, default=2000, help="touch changes between two refreshes")
    args = parser.parse_args()
    flushes, updates = asyncio.run(measure(args.refreshes, args.frames))
    totals = [f + u for f, u in zip(flushes, updates, strict=True)]
    ms = 1000
    print(
        f"per refresh (thread CPU, {args.frames} touch changes between refreshes, 160x48, headless): "
        f"flush median {ms * statistics.median(flushes):.2f} ms, screen update median "
        f"{ms * statistics.median(updates):.2f} ms, total median {ms * statistics.median(totals):.2f} ms, "
        f"best {ms * min(totals):.2f} ms; at 10 refreshes/s: {statistics.median(totals) * 10 * 100:.1f}% of a core"
    )


if __name__ == "__main__":
    main()
