"""The console figure's pieces: the feed hands every frame to the engine, and the shares add up.
(No timing is asserted: the figure itself is ``arbtui bench --only console``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arbtui.assembly import build_engine
from arbtui.bench.console import _feed, _Meter, _shares
from arbtui.config import default_config
from arbtui.domain.clock import NS_PER_S, ManualClock


async def test_feed_hands_every_frame_to_the_engine(tmp_path: Path) -> None:
    clock = ManualClock(1_795_617_000 * NS_PER_S)
    engine, _ = build_engine(default_config(), clock, tmp_path / "journal.sqlite")
    await engine.start()
    touched = {}
    for name, venue in engine.venues.items():
        for listing in venue.listings:
            book = engine.book(name, listing.market)
            if book is not None and listing.market in ("BTC-USD", "ETH-USD"):
                touched[(name, listing.market)] = book.sequence
    assert len(touched) == 4
    before = engine.book_updates
    meter = _Meter()
    await _feed(engine, meter, 50_000, lambda: meter.frames >= 2_000)
    assert meter.frames >= 2_000 and meter.feed_ns > 0
    assert engine.book_updates - before == meter.frames
    moved = []
    for (name, market), sequence in touched.items():
        book = engine.book(name, market)
        assert book is not None
        moved.append(book.sequence - sequence)
    assert sum(moved) == meter.frames and min(moved) >= meter.frames // 4  # round robin over the four
    await engine.stop("test over")


def test_shares_add_up() -> None:
    bins = [0] * 2001
    later = list(bins)
    later[3] = 98  # 98 probes woke 0.75-1 ms late
    later[40] = 2  # and 2 woke 10-10.25 ms late
    first: dict[str, Any] = {"lag_bins": bins}
    first |= {
        "wall": 10.0,
        "process_s": 1.0,
        "feed_s": 0.5,
        "market_s": 0.1,
        "deferred_s": 0.1,
        "bridge_s": 0.05,
        "bridge_calls": 0,
        "frames": 0,
        "flushes": 0,
        "threads_s": {"MainThread": 1.0},
    }
    last: dict[str, Any] = {"lag_bins": later}
    last |= {
        "wall": 20.0,
        "process_s": 6.0,
        "feed_s": 3.5,
        "market_s": 0.6,
        "deferred_s": 0.4,
        "bridge_s": 0.35,
        "bridge_calls": 200_000,
        "frames": 200_000,
        "flushes": 100,
        "threads_s": {"MainThread": 5.5, "w": 0.5},
    }
    shares = _shares(first, last)
    assert shares["process_pct"] == 50.0
    assert shares["engine_pct"] == 30.0 + 5.0 + 3.0 - 3.0  # feed + market + deferred - bridge
    assert shares["ui_pct"] == 50.0 - 35.0
    assert shares["frames_per_s"] == 20_000 and shares["flushes_per_s"] == 10.0
    assert shares["bridge_us_per_event"] == 1.5
    assert shares["threads_pct"] == {"MainThread": 45.0, "w": 5.0}
    assert (shares["loop_lag_p50_ms"], shares["loop_lag_p99_ms"], shares["loop_lag_max_ms"]) == (1.0, 10.25, 10.25)
