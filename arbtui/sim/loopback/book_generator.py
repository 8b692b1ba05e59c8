"""A moving L2 book for the loopback venue servers: a seeded random walk of the mid, levels around it.

Every value is an exact Decimal on the market's tick and lot grids. :meth:`BookGenerator.step` moves
the book and returns only the levels that changed (quantity 0 = the level is gone), which is what
the venues' incremental feeds send.
"""

from __future__ import annotations

import random
from decimal import Decimal

from arbtui.domain.book import Level

ZERO = Decimal(0)


class BookGenerator:
    def __init__(
        self,
        rng: random.Random,
        mid: Decimal,
        tick: Decimal,
        lot: Decimal,
        *,
        depth: int = 10,
        level_size: Decimal = Decimal(1),
        spread_ticks: int = 1,
        max_step_ticks: int = 2,
        floor: Decimal | None = None,
        ceiling: Decimal | None = None,
    ) -> None:
        self._rng = rng
        self.tick = tick
        self.lot = lot
        self.depth = depth
        self.level_size = level_size
        self.spread_ticks = spread_ticks
        self.max_step_ticks = max_step_ticks
        self.floor = floor if floor is not None else tick
        self.ceiling = ceiling
        self.mid_ticks = int(mid / tick)
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self._rebuild()

    def _size(self) -> Decimal:
        units = max(1, int(self._rng.uniform(0.2, 2.0) * float(self.level_size / self.lot)))
        return self.lot * units

    def _clamp(self) -> None:
        lo = int(self.floor / self.tick) + self.depth + self.spread_ticks
        self.mid_ticks = max(self.mid_ticks, lo)
        if self.ceiling is not None:
            hi = int(self.ceiling / self.tick) - self.depth - self.spread_ticks
            self.mid_ticks = min(self.mid_ticks, hi)

    def _rebuild(self) -> None:
        self._clamp()
        best_bid = self.mid_ticks - (self.spread_ticks // 2)
        best_ask = best_bid + self.spread_ticks
        bids = {self.tick * (best_bid - i): self.bids.get(self.tick * (best_bid - i)) for i in range(self.depth)}
        asks = {self.tick * (best_ask + i): self.asks.get(self.tick * (best_ask + i)) for i in range(self.depth)}
        self.bids = {p: q if q is not None else self._size() for p, q in bids.items()}
        self.asks = {p: q if q is not None else self._size() for p, q in asks.items()}

    def snapshot(self) -> tuple[list[Level], list[Level]]:
        """(bids best first, asks best first)."""
        bids = sorted(self.bids.items(), key=lambda lv: lv[0], reverse=True)
        asks = sorted(self.asks.items(), key=lambda lv: lv[0])
        return bids, asks

    def step(self) -> tuple[list[Level], list[Level]]:
        """Move the book once; returns the changed (bid levels, ask levels), quantity 0 = removed."""
        old_bids, old_asks = dict(self.bids), dict(self.asks)
        if self._rng.random() < 0.3:
            self.mid_ticks += self._rng.randint(-self.max_step_ticks, self.max_step_ticks)
            self._rebuild()
        for book in (self.bids, self.asks):  # a few sizes change at the touch and behind it
            for price in self._rng.sample(sorted(book), k=min(2, len(book))):
                book[price] = self._size()
        return _diff(old_bids, self.bids, reverse=True), _diff(old_asks, self.asks, reverse=False)


def _diff(old: dict[Decimal, Decimal], new: dict[Decimal, Decimal], *, reverse: bool) -> list[Level]:
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out += [(p, ZERO) for p in old if p not in new]
    out.sort(key=lambda lv: lv[0], reverse=reverse)
    return out


class LoopbackMarket:
    """One market a loopback venue server publishes: its symbol's starting mid and grids."""

    __slots__ = ("mid", "tick", "lot", "level_size", "depth", "spread_ticks", "probability")

    def __init__(
        self,
        mid: Decimal | str,
        tick: Decimal | str,
        lot: Decimal | str,
        *,
        level_size: Decimal | str = "1",
        depth: int = 25,
        spread_ticks: int = 1,
        probability: bool = False,
    ) -> None:
        self.mid = Decimal(mid)
        self.tick = Decimal(tick)
        self.lot = Decimal(lot)
        self.level_size = Decimal(level_size)
        self.depth = depth
        self.spread_ticks = spread_ticks
        self.probability = probability  # prices stay strictly between 0 and 1 (outcome tokens)

    def generator(self, rng: random.Random) -> BookGenerator:
        return BookGenerator(
            rng,
            self.mid,
            self.tick,
            self.lot,
            depth=self.depth,
            level_size=self.level_size,
            spread_ticks=self.spread_ticks,
            ceiling=Decimal(1) if self.probability else None,
        )
