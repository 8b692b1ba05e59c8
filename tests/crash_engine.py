"""The engine half of the crash test (tests/unit/test_crash_recovery.py), run as a subprocess.

``python -m tests.crash_engine dispatch CONFIG JOURNAL``: start the engine (live clock) against
remote simulated venues, confirm the first paying opportunity, print ``DISPATCHED <pair> <cid>...``
once the intent is journaled and both legs are sent, then wait (to be killed with SIGKILL).

``python -m tests.crash_engine reconcile CONFIG JOURNAL``: start the engine on the same journal,
let it reconcile, and print one JSON line with each pair's final state, legs and exposure.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from arbtui.assembly import build_engine
from arbtui.config import load_config
from arbtui.domain.clock import LiveClock
from arbtui.domain.events import Event, OpportunityDetected
from arbtui.domain.execution import LegState, PairState
from arbtui.engine.execution import ConfirmRefusedError


async def dispatch(config_path: Path, journal: Path) -> None:
    engine, _ = build_engine(load_config(config_path), LiveClock(), journal)
    found: asyncio.Queue[str] = asyncio.Queue()

    def on(ev: Event) -> None:
        if isinstance(ev, OpportunityDetected) and ev.spread.opportunity_id:
            found.put_nowait(ev.spread.opportunity_id)

    engine.subscribe(on)
    await engine.start()
    while True:
        oid = await found.get()
        try:
            pair_id = engine.quote_and_confirm(oid)
        except ConfirmRefusedError:
            continue
        break
    pair = engine.executor.pairs[pair_id]
    while not (pair.state is PairState.DISPATCHING and all(leg.state is LegState.SENT for leg in pair.entries)):
        await asyncio.sleep(0.001)
    rows = await engine.journal.query("SELECT state FROM pairs WHERE pair_id=?", (pair_id,))
    assert rows and rows[0][0] == "dispatching", rows
    print("DISPATCHED", pair_id, *(leg.cid for leg in pair.entries), flush=True)
    await asyncio.Event().wait()  # killed here


async def reconcile(config_path: Path, journal: Path) -> None:
    engine, _ = build_engine(load_config(config_path), LiveClock(), journal)
    await engine.start()
    for _ in range(6000):
        if engine.executor.pairs and not engine.executor.in_flight():
            break
        await asyncio.sleep(0.01)
    out = []
    for pair in engine.executor.pairs.values():
        view = pair.view()
        out.append(
            {
                "pair": view.pair_id,
                "state": view.state.value,
                "legs": [
                    {
                        "cid": leg.client_order_id,
                        "role": leg.role.value,
                        "state": leg.state.value,
                        "filled": str(leg.filled),
                        "side": leg.side.value,
                        "venue": leg.venue,
                    }
                    for leg in view.legs
                ],
                "exposure": [{"venue": e.venue, "quantity": str(e.quantity)} for e in view.exposure],
            }
        )
    await engine.stop("reconciled")
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


def main() -> None:
    mode, config_path, journal = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    asyncio.run(dispatch(config_path, journal) if mode == "dispatch" else reconcile(config_path, journal))


if __name__ == "__main__":
    main()
