"""Console: the UI's share of a core at 10 refreshes/s and key-to-screen time, under a 20,000
frames/s feed, with the console in a real terminal (tmux 160x48). What exactly is measured:
:mod:`arbtui.bench.console`.

    python benchmarks/console.py [--quick] [--json] [--rate 20000] [--seconds 20]

The same figure as ``arbtui bench --only console [--quick]``.
"""

from __future__ import annotations

import argparse
import json

from arbtui.bench.console import RATE, measure
from arbtui.bench.runner import machine, render_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds only (checks the benchmark works)")
    parser.add_argument("--json", action="store_true", help="the figure as one JSON object")
    parser.add_argument("--rate", type=int, default=RATE, help="frames per second asked of the feed")
    parser.add_argument("--seconds", type=float, default=None, help="length of the CPU measurement")
    args = parser.parse_args()
    fig = measure(args.quick, args.rate, args.seconds)
    fig.command = (
        "python benchmarks/console.py"
        + (" --quick" if args.quick else "")
        + (f" --rate {args.rate}" if args.rate != RATE else "")
        + (f" --seconds {args.seconds:g}" if args.seconds is not None else "")
    )
    if args.json:
        print(json.dumps({"machine": machine(), "figures": [fig.as_dict()]}, indent=2))
    else:
        print(render_text([fig]))
        print(json.dumps(fig.details, indent=2))


if __name__ == "__main__":
    main()
