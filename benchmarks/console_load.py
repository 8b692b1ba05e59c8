"""The console under a heavy feed: CPU share at its refresh rate, and key-to-screen time.

    python benchmarks/console_load.py [--rate 20000] [--seconds 20]

Runs the console in tmux (160x48) with the simulated demo plus a synthetic feed that changes the
touch of the simulated venues' books and hands each change to the engine (``Engine.on_book``, the
same path a venue's frame takes) at up to ``--rate`` frames/s. It reports:

- the feed rate actually achieved (the engine prices spreads on every frame, so a slow detector
  caps it: that cost is the engine's, measured separately below);
- the process's CPU share, the share spent in the engine's frame handling, and the rest (the UI);
- key-to-screen: from ``tmux send-keys p`` until the header shows PAUSED (and back), 10 times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

STATS = Path("/tmp/arbtui-console-load.txt")


def serve(rate: int) -> None:
    """The console with a synthetic firehose (runs inside tmux)."""
    import arbtui.ui.app as app_module
    from arbtui.config import default_config
    from arbtui.ui.app import ArbApp

    class LoadApp(ArbApp):
        CSS_PATH = str(Path(app_module.__file__).parent / "app.tcss")  # relative paths follow the subclass

        def on_mount(self) -> None:
            super().on_mount()
            self.run_worker(self._firehose(), name="firehose", exit_on_error=False)

        async def _firehose(self) -> None:
            await self.engine_started.wait()
            engine = self.engine
            books = [(v, lst.market) for v, venue in engine.venues.items() for lst in venue.listings
                     if lst.market in ("BTC-USD", "ETH-USD")]
            n = 0
            engine_ns = 0
            start = time.perf_counter()
            last_report = start
            tick = 0.002
            per_tick = max(1, int(rate * tick))
            while True:
                t0 = time.perf_counter_ns()
                for _ in range(per_tick):
                    venue, market = books[n % len(books)]
                    book = engine.book(venue, market)
                    if book is not None and (bid := book.best_bid()) is not None:
                        qty = bid[1] + Decimal(n % 7 + 1) / 100
                        book.apply_update([(bid[0], qty)], [], engine.clock.now_ns())
                        engine.on_book(venue, market, book)
                    n += 1
                engine_ns += time.perf_counter_ns() - t0
                now = time.perf_counter()
                if now - last_report >= 1:
                    STATS.write_text(f"{n} {engine_ns} {now - start}\n")
                    last_report = now
                await asyncio.sleep(tick)

    LoadApp(default_config()).run()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def capture(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def key_to_screen(session: str, want_paused: bool) -> float:
    t0 = time.perf_counter()
    subprocess.run(["tmux", "send-keys", "-t", session, "p"], check=True)
    while True:
        header = capture(session).splitlines()[0] if capture(session) else ""
        if ("PAUSED" in header) == want_paused:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 10:
            return float("nan")
        time.sleep(0.002)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.rate)
        return 0
    session = f"arbtui-load-{os.getpid()}"
    STATS.unlink(missing_ok=True)
    cmd = f"XDG_DATA_HOME=/tmp/arbtui-bench {sys.executable} {Path(__file__).resolve()} --serve --rate {args.rate}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
    try:
        time.sleep(6)
        pid = int(subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True,
                                 text=True, check=True).stdout.split()[0])
        n0, e0, _ = (float(x) for x in STATS.read_text().split())
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        n1, e1, _ = (float(x) for x in STATS.read_text().split())
        latencies = []
        for i in range(10):
            latencies.append(key_to_screen(session, want_paused=(i % 2 == 0)))
            time.sleep(0.3)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    wall = t1 - t0
    frames = (n1 - n0) / wall
    cpu = (c1 - c0) / wall
    engine_share = (e1 - e0) / 1e9 / wall
    print(f"feed: {frames:,.0f} frames/s achieved (asked {args.rate:,}); 160x48, refresh 10 Hz")
    print(f"process CPU {100 * cpu:.1f}% of a core: engine frame handling {100 * engine_share:.1f}%, "
          f"the rest (UI, simulated market) {100 * (cpu - engine_share):.1f}%")
    ms = sorted(1000 * x for x in latencies)
    print(f"key to screen (p, header shows PAUSED / not): median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
