"""Snapshot tests: what the operator sees, pinned. Deterministic: seed 7, a manual clock, faults
injected through the simulated venues' knobs, panes flushed at chosen engine times (no timer).

The scenarios are the ones ``arbtui screenshots`` renders. Open the SVGs under
``tests/__snapshots__/`` before accepting a change to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from arbtui.ui.scenarios import SHOTS, Shot, make_app, make_replay_app

SESSION = Path(__file__).parent / "data" / "sim-session-15s.jsonl.gz"


@pytest.mark.parametrize("shot", SHOTS, ids=[s.name for s in SHOTS])
def test_console_state(snap_compare: Any, shot: Shot) -> None:
    app, clock = make_replay_app(SESSION) if shot.replay else make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await shot.scenario(pilot, app, clock)

    assert snap_compare(app, terminal_size=shot.size, run_before=run_before)
