"""Build an engine for a configuration: the venues it names, its journal, and the drivers."""

from __future__ import annotations

from pathlib import Path

from arbtui.config import Config
from arbtui.domain.clock import Clock, ManualClock
from arbtui.engine.engine import Engine
from arbtui.engine.journal import Journal, default_journal_path
from arbtui.sim.market import SimulatedMarket


def build_engine(
    config: Config, clock: Clock, journal_path: Path | None = None
) -> tuple[Engine, SimulatedMarket | None]:
    """The engine for ``config``; in ``sim`` mode also the simulated market that drives it.

    The journal defaults to :func:`~arbtui.engine.journal.default_journal_path`.
    """
    if config.mode != "sim":  # pragma: no cover - config validation only admits "sim" so far
        raise ValueError(f"mode {config.mode!r} is not available yet")
    market = SimulatedMarket(config, clock)
    journal = Journal(journal_path if journal_path is not None else default_journal_path())
    if isinstance(clock, ManualClock):
        # Simulated time must not move while a journal write is in flight (deterministic runs).
        clock.add_settler(journal.wait_idle)
    engine = Engine(config, clock, market.venues, journal, mode="sim", drivers=[("sim-market", market.run)])
    return engine, market
