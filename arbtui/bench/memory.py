"""Memory: the process's resident set after 1,000,000 Kraken book frames through the feed and the
engine's on_book path, sampled along the way to show whether it keeps growing.

The path is the replay's (:mod:`arbtui.bench.replay`): a :class:`~arbtui.replay.player.ReplayPlayer`
built on a one-venue Kraken session (paper trading, BTC-USD, depth 10) provides the engine, the
:class:`~arbtui.venues.live.LiveVenue` and its :class:`~arbtui.venues.kraken.KrakenFeed`; the frames
come from the generated stream (:mod:`arbtui.bench.kraken_stream`), made 10,000 at a time so the
stream never sits in memory, and are handed to ``feed.on_frame`` on the replay clock (which jumps
to each frame's time, or advances through the engine's timers when one is due, as the player does),
so every frame is verified and every verified book reaches ``Engine.on_book``.

Reported: VmRSS and VmHWM (peak) from /proc/self/status at the start (after imports and engine
start) and every 100,000 frames (10,000 in --quick); "flat" when the resident set grew by less than
5 MB over the second half of the run.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from arbtui.bench.figure import Figure
from arbtui.bench.ingest import load_average
from arbtui.bench.kraken_stream import KrakenBookStream
from arbtui.bench.replay import FRAME_STEP_NS, START_NS, write_session
from arbtui.replay.player import ReplayPlayer
from arbtui.venues.connection import NullLink

NAME = "memory"
TARGET_MB = 150
FLAT_MB = 5.0  # float ok: a threshold in megabytes
CHUNK = 10_000


def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM in MB (empty where /proc is not available)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = round(int(rest.split()[0]) / 1024, 1)  # float ok: kB -> MB, a label
    except OSError:
        pass
    return out


async def _drive(total: int, every: int, session: Path) -> tuple[list[dict[str, Any]], dict[str, int], float]:
    player = ReplayPlayer(session)
    engine, clock = player.engine, player.clock
    venue = player.venues["kraken"]
    feed = venue.feed
    counters = feed.counters
    await engine.start()
    await clock.advance(0)
    feed.on_open(NullLink())  # what the session's connect event does
    stream = KrakenBookStream(seed=7, start_ns=START_NS)
    gc.collect()
    samples: list[dict[str, Any]] = [{"frames": 0, **proc_status()}]
    t = clock.now_ns()
    done = 0
    cpu0 = time.process_time()
    first = True
    while done < total:
        n = min(CHUNK, total - done)
        if first:
            chunk = [stream.snapshot()] + [stream.update() for _ in range(n - 1)]
            first = False
        else:
            chunk = [stream.update() for _ in range(n)]
        for raw in chunk:
            t += FRAME_STEP_NS
            deadline = clock.next_deadline()
            if engine.executor.busy or (deadline is not None and deadline <= t):
                await clock.advance(t - clock.now_ns())
            else:
                clock.set(t)
            counters.frames += 1
            feed.on_frame(raw, t)
        done += n
        del chunk
        if done % every == 0 or done == total:
            samples.append({"frames": done, **proc_status()})
    cpu = time.process_time() - cpu0
    await engine.stop("bench finished")
    c = counters
    return samples, {"book_updates": c.book_updates, "integrity_failures": c.integrity_failures,
                     "malformed": c.malformed, "engine_book_updates": engine.book_updates}, cpu  # fmt: skip


def run(quick: bool) -> Figure:
    total = 40_000 if quick else 1_000_000
    every = 10_000 if quick else 100_000
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="arbtui-bench-memory-") as tmp:
        session = Path(tmp) / "header-only.jsonl"
        write_session(session, [])
        samples, counts, cpu = asyncio.run(_drive(total, every, session))
    rss = [s.get("VmRSS", 0.0) for s in samples]
    peak = max(s.get("VmHWM", 0.0) for s in samples)
    half = [s for s in samples if s["frames"] >= total // 2]
    growth = half[-1].get("VmRSS", 0.0) - half[0].get("VmRSS", 0.0) if len(half) >= 2 else 0.0
    flat = growth < FLAT_MB
    verified = counts["integrity_failures"] == 0 and counts["malformed"] == 0 and counts["book_updates"] == total
    values = {
        "frames": total,
        "rss_mb": rss[-1],
        "peak_rss_mb": peak,
        "rss_growth_second_half_mb": round(growth, 1),
        "flat": flat,
    }
    details: dict[str, Any] = {
        "samples": samples,
        "counters": counts,
        "cpu_s": round(cpu, 1),
        "note": "CPU time includes generating the stream (about half of it)",
        "flat_means": f"RSS grew by less than {FLAT_MB} MB between {total // 2:,} and {total:,} frames",
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    problems = [] if verified else [f"not every frame verified: {counts}"]
    return Figure(
        NAME,
        f"Memory after {total:,} Kraken frames (feed + engine on_book path)",
        values,
        f"peak RSS at most {TARGET_MB} MB after 1,000,000 frames, and flat",
        not problems and peak <= TARGET_MB and flat,
        f"arbtui bench --only {NAME}" + (" --quick" if quick else ""),
        "; ".join(problems),
        details,
    )
