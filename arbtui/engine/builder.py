"""Build an engine for a configuration: the venues it names, and the drivers they need."""

from __future__ import annotations

from arbtui.config import Config
from arbtui.domain.clock import Clock
from arbtui.engine.engine import Engine
from arbtui.sim.market import SimulatedMarket


def build_engine(config: Config, clock: Clock) -> tuple[Engine, SimulatedMarket | None]:
    """The engine for ``config``; in ``sim`` mode also the simulated market that drives it."""
    if config.mode != "sim":  # pragma: no cover - config validation only admits "sim" so far
        raise ValueError(f"mode {config.mode!r} is not available yet")
    market = SimulatedMarket(config, clock)
    engine = Engine(config, clock, market.venues, mode="sim", drivers=[("sim-market", market.run)])
    return engine, market
