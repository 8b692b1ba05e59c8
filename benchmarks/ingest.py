"""Ingest: Kraken v2 book frames (a generated BTC/USD stream, depth 10) through the real
KrakenFeed.on_frame: orjson decode, parse, apply, truncate and verify the CRC32 of every frame;
frames/s and us/frame on one core. What exactly is measured: :mod:`arbtui.bench.ingest`.

    python benchmarks/ingest.py [--quick] [--json]

The same figure as ``arbtui bench --only ingest [--quick]``.
"""

from __future__ import annotations

import argparse
import json

from arbtui.bench.ingest import run
from arbtui.bench.runner import machine, render_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs only (checks the benchmark works)")
    parser.add_argument("--json", action="store_true", help="the figure as one JSON object")
    args = parser.parse_args()
    fig = run(args.quick)
    fig.command = "python benchmarks/ingest.py" + (" --quick" if args.quick else "")
    if args.json:
        print(json.dumps({"machine": machine(), "figures": [fig.as_dict()]}, indent=2))
    else:
        print(render_text([fig]))
        print(json.dumps(fig.details, indent=2))


if __name__ == "__main__":
    main()
