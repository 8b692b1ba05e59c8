"""Confirm-to-both-sent latency and leg skew on the simulated venues, in real time.

Runs the demo with a live clock and the engine ARMED for N seconds (default 30), so the engine
confirms every opportunity above the armed edge by itself, then prints, from the executor's
analytics (perf_counter, not the engine clock):

- confirm -> both sent: from ``confirm()`` until the later of the two entry legs is handed to its
  venue's ``place_order`` (this includes committing the intent to the SQLite journal);
- leg skew: the difference between the two legs' hand-off times.

    python benchmarks/confirm_to_sent.py [SECONDS]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from arbtui.assembly import build_engine
from arbtui.config import default_config
from arbtui.domain.clock import LiveClock


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine, _ = build_engine(default_config(), LiveClock(), Path(tmp) / "journal.sqlite")
        await engine.start()
        engine.set_armed(True)
        await asyncio.sleep(seconds)
        engine.set_armed(False)
        await engine.executor.wait_idle()
        a = engine.executor.analytics
        await engine.stop()

    def us(v: int | None) -> str:
        return "n/a" if v is None else f"{v / 1000:.1f} us"

    n = len(a.confirm_to_sent.samples)
    print(f"{n} pairs in {seconds:.0f} s (live clock, in-process simulated venues, SQLite journal in a temp dir)")
    print(f"confirm -> both legs sent: p50 {us(a.confirm_to_sent.p(50))}, p99 {us(a.confirm_to_sent.p(99))}")
    print(f"leg skew (send):           p50 {us(a.send_skew.p(50))}, p99 {us(a.send_skew.p(99))}")


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0))
