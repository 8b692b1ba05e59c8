"""The console under a heavy feed: the UI's CPU share at its refresh rate, and key-to-screen time.

    python benchmarks/console_load.py [--rate 20000] [--seconds 20]

Kept for its name: it runs the console figure (:mod:`arbtui.bench.console`, also
``python benchmarks/console.py`` and ``arbtui bench --only console``), which says exactly what is
measured. (Its earlier version subclassed the app and called ``super().on_mount()`` from
``on_mount``; Textual already calls every class's ``on_mount``, so it ran two engines and two
refresh timers, and its figures were inflated.)
"""

from __future__ import annotations

import argparse
import sys

from arbtui.bench.console import RATE, measure


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=RATE)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    fig = measure(False, args.rate, args.seconds)
    v, d = fig.values, fig.details
    if not v:
        print(fig.note, file=sys.stderr)
        return 2
    print(
        f"feed: {v['feed_frames_per_s']:,} frames/s achieved (asked {args.rate:,}); 160x48, refresh 10 Hz "
        f"({d['flushes_per_s']} flushes/s)"
    )
    print(
        f"process CPU {v['process_pct']}% of a core: engine {v['engine_pct']}%, UI {v['ui_pct']}% "
        f"(gross {v['ui_gross_pct']}%, of which the feed harness {d['control']['residual_pct']}%)"
    )
    print(
        f"key to screen (p, header shows PAUSED / not): median {v['key_to_screen_p50_ms']} ms, "
        f"max {v['key_to_screen_max_ms']} ms; key to frame in the console: median {v['key_to_frame_p50_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
