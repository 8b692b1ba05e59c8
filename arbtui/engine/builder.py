"""Build an engine for a configuration: the venues it names, its journal, and the drivers."""

from __future__ import annotations

from pathlib import Path

from arbtui.config import Config
from arbtui.domain.clock import Clock, ManualClock
from arbtui.engine.engine import Driver, Engine
from arbtui.engine.journal import Journal, default_journal_path
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.base import Venue
from arbtui.venues.sim_remote import RemoteSimVenue


def build_engine(
    config: Config, clock: Clock, journal_path: Path | None = None
) -> tuple[Engine, SimulatedMarket | None]:
    """The engine for ``config``, and the in-process simulated market if any venue uses one.

    ``simulated`` venues live in this process, driven by a :class:`SimulatedMarket`; ``remote-sim``
    venues are simulated venues in another process (``python -m arbtui.sim.server``), reached over
    loopback, which keep their state when this process dies. The journal defaults to
    :func:`~arbtui.engine.journal.default_journal_path`.
    """
    if config.mode != "sim":  # pragma: no cover - config validation only admits "sim" so far
        raise ValueError(f"mode {config.mode!r} is not available yet")
    instruments = config.instruments()
    venues: list[Venue] = []
    drivers: list[tuple[str, Driver]] = []
    market: SimulatedMarket | None = None
    if any(v.kind == "simulated" for v in config.venues):
        market = SimulatedMarket(config, clock)
        venues.extend(market.venues)
        drivers.append(("sim-market", market.run))
    for vc in config.venues:
        if vc.kind == "remote-sim":
            assert vc.url is not None  # config validation requires it
            venues.append(
                RemoteSimVenue(vc.name, vc.url, instruments.listings_for_venue(vc.name), vc.fees, clock, vc.sim.depth)
            )
    journal = Journal(journal_path if journal_path is not None else default_journal_path())
    if isinstance(clock, ManualClock):
        # Simulated time must not move while a journal write is in flight (deterministic runs).
        clock.add_settler(journal.wait_idle)
    return Engine(config, clock, venues, journal, mode="sim", drivers=drivers), market
