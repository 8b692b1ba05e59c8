"""Rate-limit budgets: a request waits for budget instead of failing.

One primitive covers the venues' schemes: a counter that each request raises by its cost and that
decays at a fixed rate; a request may go when ``counter + cost <= limit``. Kraken's trading counter
is exactly that, per pair (docs.kraken.com/api/docs/guides/spot-ratelimits: AddOrder +1, and
CancelOrder +8/+6/+5/+4/+2/+1 by the order's age; the tiers from support.kraken.com article
360045239571 and krakenfx/kraken-cli: Starter 60 decaying 1/s, Intermediate 125 at 2.34/s, Pro 180 at
3.75/s). A token bucket with capacity C refilled at r/s is the same thing seen from the other side.
Coinbase reports its remaining budget in response headers; :meth:`RateBudget.observe_remaining` lowers
the local budget to the venue's own figure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from arbtui.domain.clock import NS_PER_S, Clock

KRAKEN_TIERS: dict[str, tuple[float, float]] = {
    "starter": (60.0, 1.0),
    "intermediate": (125.0, 2.34),
    "pro": (180.0, 3.75),
}

# Kraken's decaying cancel penalty by the order's age (seconds, cost).
_KRAKEN_CANCEL = ((5, 8), (10, 6), (15, 5), (45, 4), (90, 2), (300, 1))


def kraken_cancel_cost(order_age_s: float) -> int:
    for limit, cost in _KRAKEN_CANCEL:
        if order_age_s < limit:
            return cost
    return 0


@dataclass(frozen=True, slots=True)
class BudgetView:
    name: str
    used: float
    limit: float
    waits: int
    waited_s: float


class RateBudget:
    """A decaying counter (see the module docstring). Safe to share between tasks on one loop."""

    def __init__(self, name: str, limit: float, decay_per_s: float, clock: Clock) -> None:
        if limit <= 0 or decay_per_s <= 0:
            raise ValueError("limit and decay must be positive")
        self.name = name
        self.limit = limit
        self.decay_per_s = decay_per_s
        self._clock = clock
        self._level = 0.0
        self._at = clock.now_ns()
        self._lock = asyncio.Lock()
        self.waits = 0
        self.waited_s = 0.0

    def level(self) -> float:
        now = self._clock.now_ns()
        elapsed = (now - self._at) / NS_PER_S
        if elapsed > 0:
            self._level = max(0.0, self._level - elapsed * self.decay_per_s)
            self._at = now
        return self._level

    def charge(self, cost: float) -> None:
        """Add a cost that is due regardless (Kraken charges a cancel penalty after the fact)."""
        self._level = self.level() + cost

    def wait_s(self, cost: float) -> float:
        """How long a request of ``cost`` would wait now."""
        excess = self.level() + cost - self.limit
        return max(0.0, excess / self.decay_per_s)

    async def acquire(self, cost: float = 1.0) -> float:
        """Wait until ``cost`` fits, take it, and return how long it waited (seconds)."""
        cost = min(cost, self.limit)  # a request larger than the whole budget waits for an empty one
        waited = 0.0
        async with self._lock:  # first come, first served
            while True:
                wait = self.wait_s(cost)
                if wait <= 0:
                    break
                if waited == 0.0:
                    self.waits += 1
                await self._clock.sleep(int(wait * NS_PER_S) + 1)
                waited += wait
            self._level += cost
        self.waited_s += waited
        return waited

    def observe_remaining(self, remaining: float, limit: float | None = None) -> None:
        """The venue says ``remaining`` requests are left (of ``limit``): trust the stricter view."""
        cap = self.limit if limit is None else min(self.limit, limit)
        self._level = max(self.level(), cap - remaining)

    def view(self) -> BudgetView:
        return BudgetView(self.name, round(self.level(), 2), self.limit, self.waits, round(self.waited_s, 3))
