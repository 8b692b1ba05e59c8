"""Deterministic apps for UI and snapshot tests: the demo config, a fixed seed and a manual clock."""

from __future__ import annotations

from arbtui.config import default_config
from arbtui.domain.clock import NS_PER_S, ManualClock
from arbtui.ui.app import ArbApp

# 2026-11-25 14:30:00 UTC: the header shows 14:30:xx.
START_NS = 1_795_617_000 * NS_PER_S


def make_app(*, auto_refresh: bool = False) -> tuple[ArbApp, ManualClock]:
    clock = ManualClock(START_NS)
    app = ArbApp(default_config(), clock=clock, auto_refresh=auto_refresh)
    return app, clock


async def warm_up(app: ArbApp, clock: ManualClock, seconds: int) -> None:
    """Start the engine, run the simulated market for ``seconds`` of engine time, flush the panes."""
    await app.engine_started.wait()
    await clock.advance(seconds * NS_PER_S)
    await app.flush()
