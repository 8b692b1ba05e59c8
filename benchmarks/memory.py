"""Memory: peak RSS after 1,000,000 Kraken book frames through the feed and the engine's on_book
path, sampled along the way to show whether it keeps growing. What exactly is measured:
:mod:`arbtui.bench.memory`.

    python benchmarks/memory.py [--quick] [--json]

The same figure as ``arbtui bench --only memory [--quick]``.
"""

from __future__ import annotations

import argparse
import json

from arbtui.bench.memory import run
from arbtui.bench.runner import machine, render_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs only (checks the benchmark works)")
    parser.add_argument("--json", action="store_true", help="the figure as one JSON object")
    args = parser.parse_args()
    fig = run(args.quick)
    fig.command = "python benchmarks/memory.py" + (" --quick" if args.quick else "")
    if args.json:
        print(json.dumps({"machine": machine(), "figures": [fig.as_dict()]}, indent=2))
    else:
        print(render_text([fig]))
        print(json.dumps(fig.details, indent=2))


if __name__ == "__main__":
    main()
