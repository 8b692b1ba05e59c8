"""Frame to opportunity: p50/p99 from a book frame's arrival in a venue's feed handler (Kraken and
Coinbase frames through the real feeds, LiveVenue, Engine.on_book and the Detector) to the
OpportunityDetected/Updated event reaching an engine subscriber; sparse frames (the target) and a
20,000 frames/s flood, each with and without coalescing. What exactly is measured:
:mod:`arbtui.bench.frame_to_opportunity`.

    python benchmarks/frame_to_opportunity.py [--quick] [--json]

The same figure as ``arbtui bench --only frame_to_opportunity [--quick]``.
"""

from __future__ import annotations

import argparse
import json

from arbtui.bench.frame_to_opportunity import run
from arbtui.bench.runner import machine, render_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs only (checks the benchmark works)")
    parser.add_argument("--json", action="store_true", help="the figure as one JSON object")
    args = parser.parse_args()
    fig = run(args.quick)
    fig.command = "python benchmarks/frame_to_opportunity.py" + (" --quick" if args.quick else "")
    if args.json:
        print(json.dumps({"machine": machine(), "figures": [fig.as_dict()]}, indent=2))
    else:
        print(render_text([fig]))
        print(json.dumps(fig.details, indent=2))


if __name__ == "__main__":
    main()
