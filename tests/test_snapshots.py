"""Snapshot tests: what the operator sees, pinned. Deterministic: fixed seed, manual clock, and the
panes flushed at a chosen engine time (no refresh timer).

Open the SVGs under ``tests/__snapshots__/`` before accepting a change to them.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from tests.harness import make_app, warm_up

SIZE = (120, 40)


def test_startup(snap_compare: Any) -> None:
    """16 s in: an ETH-USD spread (coinbase > kraken) pays and leads the table, highlighted."""
    app, clock = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await warm_up(app, clock, 16)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_spread_selected(snap_compare: Any) -> None:
    """The cursor on the last row (the FEDCUT YES+NO complement): the books pane shows both tokens."""
    app, clock = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await warm_up(app, clock, 23)
        await pilot.press("down", "down", "down", "down")
        await pilot.pause()
        await app.flush()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare: Any) -> None:
    app, clock = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await warm_up(app, clock, 2)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
