"""Confirm to wire: p50/p99 from ``confirm`` until both legs' order requests are on the wire (Kraken and
Coinbase connectors against their loopback servers in another process, warm connections), and the leg
skew, with parallel and with sequential legs. What exactly is measured: :mod:`arbtui.bench.confirm_to_wire`.

    python benchmarks/confirm_to_wire.py [--quick] [--json]

The same figure as ``arbtui bench --only confirm_to_wire [--quick]``.
"""

from __future__ import annotations

import argparse
import json

from arbtui.bench.confirm_to_wire import run
from arbtui.bench.runner import machine, render_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few pairs only (checks the benchmark works)")
    parser.add_argument("--json", action="store_true", help="the figure as one JSON object")
    args = parser.parse_args()
    fig = run(args.quick)
    fig.command = "python benchmarks/confirm_to_wire.py" + (" --quick" if args.quick else "")
    if args.json:
        print(json.dumps({"machine": machine(), "quick": args.quick, "figures": {fig.name: fig.as_dict()}}, indent=2))
    else:
        print(render_text([fig]))
        print(json.dumps(fig.details, indent=2))


if __name__ == "__main__":
    main()
