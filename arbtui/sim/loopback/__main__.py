"""``python -m arbtui.sim.loopback [--config PATH]``: run the loopback venue servers for a configuration
on fixed ports (Kraken 18801, Coinbase 18802, Polymarket 18803) until interrupted, printing the URLs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from arbtui.config import ConfigError, load_config
from arbtui.sim.loopback.launcher import start_servers


async def _serve(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    servers, _ = await start_servers(config, fixed_ports=True)
    if not servers:
        print(f"{path}: no real venue to serve (kinds kraken, coinbase, polymarket)", file=sys.stderr)
        return 2
    for s in servers:
        print(f"{s.kind}: ws_url = {s.ws_url!r}  rest_url = {s.rest_url!r}", flush=True)
    print("LISTENING (ctrl-c stops)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for s in servers:
            await s.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arbtui.sim.loopback", description=__doc__)
    parser.add_argument("--config", default="examples/live-paper.toml", metavar="PATH")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(Path(args.config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
