"""Ingest: Kraken v2 ``book`` frames through the real :meth:`arbtui.venues.kraken.KrakenFeed.on_frame`
(the method the connection supervisor calls for every frame read from the socket): orjson decode,
parse, apply to the depth-10 book, truncate, and verify Kraken's CRC32, on every frame.

The stream is generated in memory (:mod:`arbtui.bench.kraken_stream`: BTC/USD-like, price precision 1,
qty precision 8, JSON numbers, mostly one or two levels at or near the touch, deletes and truncation,
a checksum on every frame from an implementation that shares nothing with the feed, cross-checked
against the reference :func:`arbtui.venues.kraken.book_checksum`). Each pass feeds the whole stream to
a fresh feed; a pass counts only if every frame verified (no checksum failure, no malformed frame, one
book update per frame).

Reported: frames/s and us/frame, from the thread's CPU time (one core's work, the target's unit; it
leaves out time the scheduler gave to other processes on this shared machine) and from the wall
clock, medians over the passes, with the load average. For comparison, the same stream through the
reference path (``book_frame`` + a Decimal ``OrderBook`` + ``book_checksum``, which is what the feed
ran before this hot path existed).
"""

from __future__ import annotations

import os
import statistics
import time
from decimal import Decimal
from typing import Any

from arbtui.bench.figure import Figure
from arbtui.bench.kraken_stream import PRICE_PRECISION, QTY_PRECISION, generate
from arbtui.domain.book import OrderBook
from arbtui.domain.instruments import Listing
from arbtui.venues.connection import NullLink
from arbtui.venues.kraken import KrakenFeed
from arbtui.venues.kraken_book import BookFrame, book_checksum, parse_frame

NAME = "ingest"
TARGET_FRAMES_PER_S = 250_000
LISTING = Listing(
    "kraken",
    "BTC-USD",
    "BTC/USD",
    Decimal("0.1"),
    Decimal("0.00000001"),
    Decimal("0.0001"),
    PRICE_PRECISION,
    QTY_PRECISION,
)


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]  # float ok: a label
    except OSError:
        return []


def feed_pass(frames: list[str]) -> tuple[float, float, KrakenFeed, int]:
    """One pass through a fresh feed: (wall seconds, CPU seconds, the feed, change callbacks). Frames
    are text, as the WebSocket client (and a replay) hands them over."""
    feed = KrakenFeed("kraken", [LISTING], depth=10)
    changes = 0

    def on_change(_market: str) -> None:
        nonlocal changes
        changes += 1

    feed.set_on_change(on_change)
    feed.on_open(NullLink())
    on_frame = feed.on_frame
    ts = 1_690_731_000_000_000_000
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    for raw in frames:
        ts += 50_000
        on_frame(raw, ts)
    return time.perf_counter() - wall0, time.thread_time() - cpu0, feed, changes


def reference_pass(frames: list[str]) -> tuple[float, int]:
    """The reference path over ``frames``: (CPU seconds, checksum failures)."""
    book = OrderBook(depth=10)
    failures = 0
    cpu0 = time.thread_time()
    for i, raw in enumerate(frames):
        frame = parse_frame(raw)
        assert isinstance(frame, BookFrame)
        if frame.snapshot:
            book = OrderBook(depth=10)
            book.apply_snapshot(frame.bids, frame.asks, i)
        else:
            book.apply_update(frame.bids, frame.asks, i)
        failures += book_checksum(book, PRICE_PRECISION, QTY_PRECISION) != frame.checksum
    return time.thread_time() - cpu0, failures


def run(quick: bool) -> Figure:
    n_frames = 5_000 if quick else 100_000
    passes = 3 if quick else 7
    load_before = load_average()
    gen0 = time.perf_counter()
    raw_frames, stream = generate(n_frames, seed=7, reference_every=1 if quick else 10)
    frames = [raw.decode() for raw in raw_frames]
    del raw_frames
    generate_s = time.perf_counter() - gen0

    walls: list[float] = []
    cpus: list[float] = []
    failures = malformed = unverified = 0
    for _ in range(passes):
        wall, cpu, feed, changes = feed_pass(frames)
        c = feed.counters
        failures += c.integrity_failures
        malformed += c.malformed
        unverified += (len(frames) - c.book_updates) + (len(frames) - changes)
        walls.append(wall)
        cpus.append(cpu)
    ref_frames = frames[: 2_000 if quick else 20_000]
    ref_cpu, ref_failures = reference_pass(ref_frames)

    cpu_fps = len(frames) / statistics.median(cpus)
    wall_fps = len(frames) / statistics.median(walls)
    ref_fps = len(ref_frames) / ref_cpu
    all_verified = failures == 0 and malformed == 0 and unverified == 0 and ref_failures == 0
    st = stream.stats
    values: dict[str, Any] = {
        "frames_per_s": round(cpu_fps),
        "us_per_frame": round(1e6 / cpu_fps, 2),
        "wall_frames_per_s": round(wall_fps),
        "checksum_failures": failures,
        "frames_verified": passes * len(frames) - failures - malformed - unverified,
    }
    details: dict[str, Any] = {
        "frames": len(frames),
        "passes": passes,
        "timing": "frames/s from the thread's CPU time (one core's work), median over passes; wall_* from the "
        "wall clock (includes time this shared machine gave to other processes)",
        "cpu_frames_per_s_per_pass": [round(len(frames) / c) for c in cpus],
        "wall_frames_per_s_per_pass": [round(len(frames) / w) for w in walls],
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "stream": {
            "levels_per_update_frame": round(st.levels / max(1, st.frames - st.snapshots), 2),
            "update_frames_by_level_count": dict(sorted(st.per_frame.items())),
            "deletes": st.deletes,
            "frames_with_truncation": st.truncations,
            "mean_frame_bytes": round(sum(len(f) for f in frames) / len(frames)),
            "checksums_cross_checked_with_book_checksum": stream.reference_checked,
            "generate_s": round(generate_s, 2),
        },
        "reference_path_frames_per_s": round(ref_fps),
        "reference_path_note": "book_frame + Decimal OrderBook + book_checksum (cached tokens), the feed's path "
        f"before KrakenBook, on the first {len(ref_frames)} frames, CPU time",
        "malformed": malformed,
        "unverified": unverified,
    }
    met = all_verified and cpu_fps >= TARGET_FRAMES_PER_S
    note = "" if all_verified else "NOT every frame verified"
    return Figure(
        NAME,
        "Ingest (Kraken v2 book frames: parse + apply + checksum, KrakenFeed.on_frame)",
        values,
        f"at least {TARGET_FRAMES_PER_S:,} frames/s on one core, every checksum verified",
        met,
        f"arbtui bench --only {NAME}" + (" --quick" if quick else ""),
        note,
        details,
    )
