"""Seeded stochastic fair values.

Each market has one fair value shared by every venue: a Brownian motion (volatility in basis points
per square root of a second) with Poisson jumps (rate per minute, exponentially distributed size,
random sign). Venues see it through their own lag and noise (:mod:`arbtui.venues.simulated`), so
a jump reaches a fast venue before a slow one and a cross-venue dislocation opens until the slow
venue catches up: a few per minute, most of them too small to pay both taker fees.

The process state is a float: it is a model of a price, not money. Prices that reach a book are
rounded to the listing's tick as Decimals by the venue.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import deque

from arbtui.domain.clock import NS_PER_S


class FairValue:
    """One market's fair value over time, with enough history to answer lagged look-ups."""

    def __init__(
        self,
        rng: random.Random,
        start: float,
        volatility_bps: float,
        jump_rate_per_min: float,
        jump_bps: float,
        *,
        probability: bool = False,
        history_ns: int = 10 * NS_PER_S,
    ) -> None:
        """``probability`` markets live in (0, 1) and their bps are of the payout (100 bps = 0.01)."""
        self._rng = rng
        self.value = start
        self._vol = volatility_bps / 10_000.0
        self._jump_rate_per_s = jump_rate_per_min / 60.0
        self._jump = jump_bps / 10_000.0
        self._probability = probability
        self._history_ns = history_ns
        self._times: deque[int] = deque()
        self._values: deque[float] = deque()
        self.jumps = 0

    def step(self, now_ns: int, dt_ns: int) -> None:
        dt = dt_ns / NS_PER_S
        shock = self._rng.gauss(0.0, 1.0) * self._vol * math.sqrt(dt)
        if self._rng.random() < self._jump_rate_per_s * dt:
            self.jumps += 1
            shock += self._rng.choice((-1.0, 1.0)) * self._rng.expovariate(1.0 / self._jump)
        if self._probability:
            self.value = min(0.97, max(0.03, self.value + shock))
        else:
            self.value *= math.exp(shock)
        self._record(now_ns)

    def _record(self, now_ns: int) -> None:
        self._times.append(now_ns)
        self._values.append(self.value)
        while self._times and self._times[0] < now_ns - self._history_ns:
            self._times.popleft()
            self._values.popleft()

    def at(self, t_ns: int) -> float:
        """The fair value as it was at ``t_ns`` (the oldest kept value for earlier times)."""
        if not self._times:
            return self.value
        i = bisect_right(self._times, t_ns) - 1
        return self._values[max(i, 0)]


class Noise:
    """A mean-reverting (Ornstein-Uhlenbeck) offset in bps with a given stationary deviation."""

    def __init__(self, rng: random.Random, stdev_bps: float, reversion_s: float = 5.0) -> None:
        self._rng = rng
        self._stdev = stdev_bps / 10_000.0
        self._tau = reversion_s
        self.value = rng.gauss(0.0, 1.0) * self._stdev

    def step(self, dt_ns: int) -> None:
        if dt_ns <= 0:
            return
        dt = dt_ns / NS_PER_S
        a = math.exp(-dt / self._tau)
        self.value = self.value * a + self._stdev * math.sqrt(1 - a * a) * self._rng.gauss(0.0, 1.0)
