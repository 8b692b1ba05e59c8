"""The composition root: build an engine for a configuration (the venues it names, its journal, the
drivers, and the session recorder when one is asked for). It sits above the engine and the replay
side (layers: cli/ui > assembly > replay > engine > venues > domain), so the engine imports neither."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from arbtui.config import REAL_KINDS, Config, VenueConfig
from arbtui.domain.clock import Clock, ManualClock
from arbtui.domain.instruments import Listing, Market
from arbtui.engine.engine import Driver, Engine
from arbtui.engine.journal import Journal, default_journal_path
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.base import Venue
from arbtui.venues.connection import Tap
from arbtui.venues.secrets import REQUIRED, Credentials, load_credentials
from arbtui.venues.sim_remote import RemoteSimVenue


class LiveRefused(Exception):
    """``--live`` was asked for but one of its three conditions is not met (the message lists them)."""


@dataclass(frozen=True)
class RunOptions:
    """How to run real venues: ``live`` is the command line's ``--live``; ``secrets_file`` its
    ``--secrets`` (else ``[trading] secrets_file``, else the default path if it exists)."""

    live: bool = False
    secrets_file: Path | None = None
    tap: Tap | None = None  # sees every market-data frame as received
    record: Path | None = None  # start recording the session to this file at once (``--record``)


class RealVenueBuilder(Protocol):
    def __call__(
        self,
        vc: VenueConfig,
        listings: list[Listing],
        markets: dict[str, Market],
        clock: Clock,
        credentials: Credentials | None,
        *,
        live: bool,
        tap: Tap | None,
    ) -> Venue: ...


def real_venue_builder(kind: str) -> RealVenueBuilder:
    """``arbtui.venues.<kind>.build_venue``."""
    builder: RealVenueBuilder = importlib.import_module(f"arbtui.venues.{kind}").build_venue
    return builder


def engine_mode(config: Config, options: RunOptions, credentials: dict[str, Credentials]) -> str:
    """ "sim", "paper" or "live". Live needs ``--live``, ``[trading] live = true`` and every real venue's keys;
    asking for it without all three raises :class:`LiveRefused` naming what is missing."""
    real = [vc for vc in config.venues if vc.kind in REAL_KINDS]
    if not real:
        if options.live:
            raise LiveRefused("--live needs real venues; this configuration has only simulated ones")
        return config.mode
    if not options.live:
        return "paper"
    missing: list[str] = []
    if not config.trading.live:
        missing.append(f"{config.source}: [trading] live = true")
    for vc in real:
        cred = credentials.get(vc.name)
        if cred is None or not cred.complete(vc.kind):
            have = set(cred.fields) if cred is not None else set()
            need = [f for f in REQUIRED[vc.kind] if f not in have]
            names = ", ".join(f"ARBTUI_{vc.name.upper()}_{f.upper()}" for f in need)
            missing.append(f"keys for {vc.name} ({names}, or the secrets file)")
    if missing:
        raise LiveRefused("live trading refused; missing: " + "; ".join(missing))
    return "live"


def _credentials(config: Config, options: RunOptions) -> dict[str, Credentials]:
    real = {vc.name: vc.kind for vc in config.venues if vc.kind in REAL_KINDS}
    if not real:
        return {}
    secrets = options.secrets_file
    if secrets is None and config.trading.secrets_file:
        secrets = Path(config.trading.secrets_file).expanduser()
    return load_credentials(real, secrets)


def check_run_options(config: Config, options: RunOptions) -> str:
    """The mode a run would have; raises :class:`LiveRefused` or ``SecretsError`` before anything starts."""
    return engine_mode(config, options, _credentials(config, options))


def build_engine(
    config: Config, clock: Clock, journal_path: Path | None = None, options: RunOptions | None = None
) -> tuple[Engine, SimulatedMarket | None]:
    """The engine for ``config``, and the in-process simulated market if any venue uses one.

    ``simulated`` venues live in this process, driven by a :class:`SimulatedMarket`; ``remote-sim``
    venues are simulated venues in another process (``python -m arbtui.sim.server``), reached over
    loopback, which keep their state when this process dies. Real venue kinds (``kraken``,
    ``coinbase``, ``polymarket``) are built by their modules: paper trading unless :func:`engine_mode`
    says live. The journal defaults to :func:`~arbtui.engine.journal.default_journal_path`.
    """
    options = options or RunOptions()
    instruments = config.instruments()
    credentials = _credentials(config, options)
    mode = engine_mode(config, options, credentials)
    from arbtui.replay.recorder import RecordingVenue, SessionRecorder

    recorder = SessionRecorder(config, clock)
    tap: Tap | None = recorder if recorder is not None else options.tap
    venues: list[Venue] = []
    drivers: list[tuple[str, Driver]] = []
    market: SimulatedMarket | None = None
    if any(v.kind == "simulated" for v in config.venues):
        market = SimulatedMarket(config, clock)
        for sim in market.venues:
            sim.tap = tap
        venues.extend(market.venues)
        drivers.append(("sim-market", market.run))
    for vc in config.venues:
        if vc.kind == "remote-sim":
            assert vc.url is not None  # config validation requires it
            venues.append(
                RemoteSimVenue(vc.name, vc.url, instruments.listings_for_venue(vc.name), vc.fees, clock, vc.sim.depth)
            )
        elif vc.kind in REAL_KINDS:
            venues.append(
                real_venue_builder(vc.kind)(
                    vc,
                    instruments.listings_for_venue(vc.name),
                    dict(instruments.markets),
                    clock,
                    credentials.get(vc.name),
                    live=mode == "live",
                    tap=tap,
                )
            )
    venues = [RecordingVenue(v, recorder) for v in venues]
    recorder.venues = {v.name: v for v in venues}
    recorder.mode = mode
    journal = Journal(journal_path if journal_path is not None else default_journal_path())
    if isinstance(clock, ManualClock):
        # Simulated time must not move while a journal write is in flight (deterministic runs).
        clock.add_settler(journal.wait_idle)
    engine = Engine(config, clock, venues, journal, mode=mode, drivers=drivers)
    engine.subscribe(recorder.on_event)
    engine.recorder = recorder
    if options.record is not None:
        recorder.start(options.record)
    return engine, market
