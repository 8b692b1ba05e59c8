"""Replay: a Kraken-format session file played headless at full speed by
:meth:`arbtui.replay.player.ReplayPlayer.run` (what ``arbtui replay FILE --headless --json`` runs).

The session (docs/session-format.md, version 1) is written here: one ``kraken`` venue in paper mode,
one market (BTC-USD, Kraken's BTC/USD at precision 1/8, depth 10), a ``connect`` event and the
frames of the generated book stream (:mod:`arbtui.bench.kraken_stream`) 50 us apart, exactly as the
recorder writes them. Per event the player reads and checks the line, moves the replay clock, and
hands the frame to the real :class:`~arbtui.venues.kraken.KrakenFeed` (checksum verified), whose
verified book goes through :class:`~arbtui.venues.live.LiveVenue` (crossed-book check, paper trader)
to :meth:`Engine.on_book <arbtui.engine.engine.Engine.on_book>` (volatility, pricing, the
``BookUpdated`` event). A one-venue session has no spread to price; nothing here is special-cased.

Reported: frames/s from the process's CPU time and from the wall clock (the player's own
``frames_per_s``, engine start and stop included), medians over passes, for the plain file (and the
same session gzipped, as the recorder writes it by default). ``details.split`` apportions one frame's
CPU time between its parts, measured separately on the same frames: the reader (line parse and
checks), the Kraken feed (decode, apply, checksum), and the rest (the engine's on_book path, the
venue and the player's loop), so a miss says where the time goes.
"""

from __future__ import annotations

import asyncio
import gzip
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from arbtui import __version__
from arbtui.bench.figure import Figure
from arbtui.bench.ingest import feed_pass, load_average
from arbtui.bench.kraken_stream import generate
from arbtui.config import Config, parse_config
from arbtui.replay.player import ReplayPlayer
from arbtui.replay.session_format import FORMAT, VERSION, SessionReader

NAME = "replay"
TARGET_FRAMES_PER_S = 150_000
START_NS = 1_690_731_000_000_000_000
FRAME_STEP_NS = 50_000

# One Kraken venue (paper: fills against the replayed book, nothing sent), one market.
SESSION_CONFIG: dict[str, Any] = {
    "mode": "paper",
    "seed": 7,
    "trading": {"live": False},
    "detector": {"slippage_floor_bps": "2.0", "expected_latency_ms": 250, "min_net_edge_bps": "0",
                 "stale_after_ms": 5000},
    "risk": {"max_notional": "5000", "max_open_exposure_per_venue": "10000",
             "max_open_exposure_per_market": "10000", "max_pairs_in_flight": 2, "daily_loss_limit": "250",
             "max_book_age_ms": 3000},
    "venues": {"kraken": {"kind": "kraken", "fee_model": "notional", "maker_fee": "0.0025", "taker_fee": "0.0040",
                          "depth": 10, "stale_after_s": "10", "rate_tier": "starter",
                          "paper": {"balances": {"USD": "20000", "BTC": "0.25"}}}},
    "markets": {"BTC-USD": {"base": "BTC", "quote": "USD", "max_quantity": "0.05",
                            "venues": {"kraken": {"symbol": "BTC/USD", "tick_size": "0.1",
                                                  "lot_size": "0.00000001"}}}},
}  # fmt: skip


def session_config() -> Config:
    return parse_config(SESSION_CONFIG, "arbtui.bench.replay (one kraken venue, paper, BTC-USD)")


def write_session(path: Path, frames: Iterable[bytes], *, start_ns: int = START_NS) -> int:
    """A session file (gzip when the name ends in .gz) holding ``frames`` as the recorder writes
    them; returns the number of frames."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "created": "2023-07-30T15:30:00+00:00",
        "arbtui": __version__,
        "start_ns": start_ns,
        "mode": "paper",
        "venues": {"kraken": "kraken"},
        "config": session_config().effective_data(),
    }
    fh: gzip.GzipFile | BinaryIO = (
        gzip.GzipFile(path, "wb", compresslevel=6) if path.name.endswith(".gz") else open(path, "wb")  # noqa: SIM115
    )
    n = 0
    with fh:
        fh.write(orjson.dumps(header) + b"\n")
        fh.write(orjson.dumps({"t": start_ns, "kind": "connect", "venue": "kraken", "stream": "market"}) + b"\n")
        t = start_ns
        for raw in frames:
            t += FRAME_STEP_NS
            n += 1
            event = {"t": t, "kind": "frame", "venue": "kraken", "stream": "market", "raw": raw.decode()}
            fh.write(orjson.dumps(event) + b"\n")
    return n


def replay_pass(path: Path) -> tuple[float, float, dict[str, Any]]:
    """One headless replay at max speed: (CPU seconds, wall seconds, the player's summary)."""

    async def play() -> tuple[float, float, dict[str, Any]]:
        player = ReplayPlayer(path)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = await player.run()
        return time.process_time() - cpu0, time.perf_counter() - wall0, summary

    return asyncio.run(play())


def reader_pass(path: Path) -> tuple[float, int]:
    """The reader alone over the file: (CPU seconds, events)."""
    cpu0 = time.process_time()
    n = sum(1 for _ in SessionReader(path))
    return time.process_time() - cpu0, n


def run(quick: bool) -> Figure:
    n_frames = 5_000 if quick else 200_000
    passes = 2 if quick else 3
    load_before = load_average()
    frames, stream = generate(n_frames, seed=7)
    values: dict[str, Any] = {}
    details: dict[str, Any] = {"frames": n_frames, "passes": passes, "frame_spacing_us": FRAME_STEP_NS // 1000}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="arbtui-bench-replay-") as tmp:
        plain = Path(tmp) / "kraken-session.jsonl"
        gz = Path(tmp) / "kraken-session.jsonl.gz"
        write_session(plain, frames)
        write_session(gz, frames)
        details["file_bytes"] = {"plain": plain.stat().st_size, "gzip": gz.stat().st_size}
        results: dict[str, dict[str, Any]] = {}
        for label, path, n_passes in (("plain", plain, passes), ("gzip", gz, max(1, passes // 2))):
            cpus, walls, player_fps = [], [], []
            summary: dict[str, Any] = {}
            for _ in range(n_passes):
                cpu, wall, summary = replay_pass(path)
                cpus.append(cpu)
                walls.append(wall)
                player_fps.append(summary["frames_per_s"])
            k = summary["venues"]["kraken"]
            if (
                summary["frames"] != n_frames
                or k["book_updates"] != n_frames
                or k["integrity_failures"]
                or k["malformed"]
            ):
                problems.append(f"{label}: not every frame verified ({k})")
            results[label] = {
                "cpu_frames_per_s": round(n_frames / statistics.median(cpus)),
                "wall_frames_per_s": round(n_frames / statistics.median(walls)),
                "player_frames_per_s_per_pass": player_fps,
                "kraken_counters": k,
            }
        # Where one frame's time goes: the reader and the feed alone, on the same frames.
        reader_cpu = statistics.median(reader_pass(plain)[0] for _ in range(3))
        texts = [raw.decode() for raw in frames]
        feed_cpu = statistics.median(feed_pass(texts)[1] for _ in range(3))
    total_us = 1e6 / results["plain"]["cpu_frames_per_s"]
    reader_us = reader_cpu / n_frames * 1e6
    feed_us = feed_cpu / n_frames * 1e6
    details["split"] = {
        "total_us_per_frame": round(total_us, 2),
        "reader_us": round(reader_us, 2),
        "kraken_feed_us": round(feed_us, 2),
        "engine_on_book_path_venue_and_player_loop_us": round(total_us - reader_us - feed_us, 2),
        "note": "the reader and the feed measured alone on the same frames; the rest is the difference",
    }
    details["results"] = results
    details["stream_levels_per_update_frame"] = round(stream.stats.levels / max(1, stream.stats.frames - 1), 2)
    details["load_average_before"] = load_before
    details["load_average_after"] = load_average()
    details["timing"] = "CPU time of the process (one core's work; the journal thread idles), median over passes"
    cpu_fps = results["plain"]["cpu_frames_per_s"]
    values["frames_per_s"] = cpu_fps
    values["us_per_frame"] = round(total_us, 2)
    values["wall_frames_per_s"] = results["plain"]["wall_frames_per_s"]
    values["gzip_frames_per_s"] = results["gzip"]["cpu_frames_per_s"]
    return Figure(
        NAME,
        "Headless replay (Kraken-format session, one venue, paper, max speed)",
        values,
        f"at least {TARGET_FRAMES_PER_S:,} frames/s on one core",
        not problems and cpu_fps >= TARGET_FRAMES_PER_S,
        f"arbtui bench --only {NAME}" + (" --quick" if quick else ""),
        "; ".join(problems),
        details,
    )
