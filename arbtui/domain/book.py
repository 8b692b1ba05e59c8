"""An L2 order book: price levels with absolute quantities.

Updates carry the new absolute quantity of a level; a quantity of zero deletes the level. With a
depth cap the book keeps only the best ``depth`` levels per side after every update, as venues
that publish a fixed depth (Kraken ``book`` at depth 10) expect for their checksums.

Prices are kept sorted ascending in a list beside a dict of quantities, so the best level is an
index away and walking the book is a slice; ``bisect`` keeps inserts O(log n + shift) at the
depths venues publish.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from arbtui.domain.money import ZERO
from arbtui.domain.orders import Side

Level = tuple[Decimal, Decimal]  # (price, quantity)


@dataclass(frozen=True, slots=True)
class FillEstimate:
    """What taking ``requested`` from one side of a book would cost right now."""

    requested: Decimal
    quantity: Decimal  # <= requested when the book is too thin
    notional: Decimal  # sum of price * quantity over the levels taken
    worst_price: Decimal | None  # the last level touched: the limit price that gets this fill

    @property
    def vwap(self) -> Decimal | None:
        return self.notional / self.quantity if self.quantity else None

    @property
    def complete(self) -> bool:
        return self.quantity == self.requested


class BookSide:
    """One side of a book. ``descending`` is True for bids (best = highest)."""

    __slots__ = ("_qty", "_prices", "descending")

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self._qty: dict[Decimal, Decimal] = {}
        self._prices: list[Decimal] = []  # ascending

    def __len__(self) -> int:
        return len(self._prices)

    def clear(self) -> None:
        self._qty.clear()
        self._prices.clear()

    def set(self, price: Decimal, quantity: Decimal) -> None:
        """Set a level's absolute quantity; zero deletes it (deleting an absent level is a no-op)."""
        if quantity < 0:
            raise ValueError(f"negative quantity {quantity} at {price}")
        if quantity == ZERO:
            if self._qty.pop(price, None) is not None:
                del self._prices[bisect_left(self._prices, price)]
            return
        if price not in self._qty:
            insort(self._prices, price)
        self._qty[price] = quantity

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels."""
        extra = len(self._prices) - depth
        if extra <= 0:
            return
        dropped = self._prices[:extra] if self.descending else self._prices[depth:]
        for p in dropped:
            del self._qty[p]
        if self.descending:
            del self._prices[:extra]
        else:
            del self._prices[depth:]

    def best(self) -> Level | None:
        if not self._prices:
            return None
        p = self._prices[-1] if self.descending else self._prices[0]
        return p, self._qty[p]

    def quantity_at(self, price: Decimal) -> Decimal:
        return self._qty.get(price, ZERO)

    def __iter__(self) -> Iterator[Level]:
        """Levels from best to worst."""
        prices = reversed(self._prices) if self.descending else iter(self._prices)
        qty = self._qty
        for p in prices:
            yield p, qty[p]

    def top(self, n: int) -> list[Level]:
        if n <= 0:
            return []
        prices = self._prices[-n:][::-1] if self.descending else self._prices[:n]
        return [(p, self._qty[p]) for p in prices]

    def is_better_or_equal(self, price: Decimal, limit: Decimal) -> bool:
        """Whether a level at ``price`` is within ``limit`` for a taker on this side."""
        return price >= limit if self.descending else price <= limit


class OrderBook:
    """An L2 book for one listing on one venue."""

    __slots__ = ("bids", "asks", "depth", "last_update_ns", "sequence")

    def __init__(self, depth: int | None = None) -> None:
        if depth is not None and depth <= 0:
            raise ValueError("depth must be positive")
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)
        self.depth = depth
        self.last_update_ns: int | None = None
        self.sequence = 0  # number of snapshots and updates applied

    # --- writing -------------------------------------------------------------------------
    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], ts_ns: int) -> None:
        """Replace the whole book."""
        self.bids.clear()
        self.asks.clear()
        self.apply_update(bids, asks, ts_ns)

    def apply_update(self, bids: Iterable[Level], asks: Iterable[Level], ts_ns: int) -> None:
        """Apply absolute level quantities (zero deletes), then cap the depth."""
        for price, qty in bids:
            self.bids.set(price, qty)
        for price, qty in asks:
            self.asks.set(price, qty)
        if self.depth is not None:
            self.bids.truncate(self.depth)
            self.asks.truncate(self.depth)
        self.last_update_ns = ts_ns
        self.sequence += 1

    # --- reading -------------------------------------------------------------------------
    def best_bid(self) -> Level | None:
        return self.bids.best()

    def best_ask(self) -> Level | None:
        return self.asks.best()

    def mid(self) -> Decimal | None:
        bid, ask = self.bids.best(), self.asks.best()
        if bid is None or ask is None:
            return None
        return (bid[0] + ask[0]) / 2

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask (a book no venue would publish)."""
        bid, ask = self.bids.best(), self.asks.best()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def is_stale(self, now_ns: int, max_age_ns: int) -> bool:
        """True when nothing has been applied for longer than ``max_age_ns`` (or ever)."""
        return self.last_update_ns is None or now_ns - self.last_update_ns > max_age_ns

    def taken_side(self, side: Side) -> BookSide:
        """The side a taker of ``side`` trades against: a buy lifts asks, a sell hits bids."""
        return self.asks if side is Side.BUY else self.bids

    def estimate_fill(self, side: Side, quantity: Decimal, limit: Decimal | None = None) -> FillEstimate:
        """VWAP and worst price to ``side`` ``quantity`` now, optionally within a limit price."""
        levels = self.taken_side(side)
        remaining = quantity
        notional = ZERO
        worst: Decimal | None = None
        for price, qty in levels:
            if remaining <= 0:
                break
            if limit is not None and not levels.is_better_or_equal(price, limit):
                break
            take = qty if qty < remaining else remaining
            notional += take * price
            remaining -= take
            worst = price
        return FillEstimate(quantity, quantity - remaining, notional, worst)

    def size_up_to(self, side: Side, limit: Decimal) -> Decimal:
        """Quantity a taker of ``side`` can get at prices no worse than ``limit``."""
        levels = self.taken_side(side)
        total = ZERO
        for price, qty in levels:
            if not levels.is_better_or_equal(price, limit):
                break
            total += qty
        return total
