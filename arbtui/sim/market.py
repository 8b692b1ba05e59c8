"""The simulated market: one fair value per market, shared by every simulated venue, moved in
fixed steps of simulated time.

Time comes from the injected clock. :meth:`SimulatedMarket.step_to` advances the processes on a
fixed 10 ms grid up to a given time, so a run depends only on the seed and on the times it is
driven to, not on how often a driver calls it. :meth:`SimulatedMarket.run` is the live driver.
"""

from __future__ import annotations

import random

from arbtui.config import Config
from arbtui.domain.clock import NS_PER_MS, Clock
from arbtui.domain.instruments import MarketKind
from arbtui.sim.price_process import FairValue
from arbtui.venues.simulated import SimulatedVenue

STEP_NS = 10 * NS_PER_MS
MAX_CATCH_UP_NS = 5_000 * NS_PER_MS


class SimulatedMarket:
    """Fair values for every configured market and the simulated venues that quote them."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self._clock = clock
        instruments = config.instruments()
        self._fair: dict[str, FairValue] = {}
        self._complement: dict[str, str] = {}  # NO token -> YES token of the same event
        yes_of = {m.event: m.id for m in config.markets if m.outcome == "YES"}
        sim_venues = {vc.name for vc in config.venues if vc.kind == "simulated"}
        for mc in config.markets:
            if not any(lc.venue in sim_venues for lc in mc.listings):
                continue  # quoted by real venues only: no simulated fair value
            if mc.kind is MarketKind.OUTCOME and mc.outcome == "NO" and mc.event in yes_of:
                self._complement[mc.id] = yes_of[mc.event]
                continue
            assert mc.sim.start_price is not None  # config requires it for every other market
            rng = random.Random(f"{config.seed}:fair:{mc.id}")
            self._fair[mc.id] = FairValue(
                rng,
                float(mc.sim.start_price),
                float(mc.sim.volatility_bps),  # float ok: model state
                float(mc.sim.jump_rate_per_min),
                float(mc.sim.jump_bps),  # float ok: model parameters
                probability=mc.kind is MarketKind.OUTCOME,
            )
        sims = {mc.id: mc.sim for mc in config.markets}
        self.venues: list[SimulatedVenue] = [
            SimulatedVenue(
                vc,
                instruments.listings_for_venue(vc.name),
                instruments.markets,
                sims,
                clock,
                config.seed,
                self.fair_value,
            )
            for vc in config.venues
            if vc.kind == "simulated"
        ]
        now = clock.now_ns()
        self._next_step_ns = now + STEP_NS
        for fv in self._fair.values():
            fv.step(now, 0)

    def fair_value(self, market: str, at_ns: int) -> float:
        """The fair value of ``market`` at time ``at_ns`` (NO tokens: 1 - YES)."""
        yes = self._complement.get(market)
        if yes is not None:
            return 1.0 - self._fair[yes].at(at_ns)
        return self._fair[market].at(at_ns)

    def jumps(self) -> int:
        return sum(fv.jumps for fv in self._fair.values())

    def step_to(self, t_ns: int) -> None:
        """Advance every process, on the 10 ms grid, up to ``t_ns``."""
        while self._next_step_ns <= t_ns:
            now = self._next_step_ns
            for fv in self._fair.values():
                fv.step(now, STEP_NS)
            for venue in self.venues:
                venue.maybe_refresh(now)
            self._next_step_ns += STEP_NS

    async def run(self) -> None:
        """Drive the market in real time from the clock until cancelled."""
        while True:
            await self._clock.sleep(STEP_NS)
            now = self._clock.now_ns()
            if now - self._next_step_ns > MAX_CATCH_UP_NS:
                # The process was suspended (a laptop lid, a debugger): skip the gap, don't replay it.
                self._next_step_ns = now - now % STEP_NS
            self.step_to(now)
