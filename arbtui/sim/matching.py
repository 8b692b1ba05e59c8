"""A price-time priority matching engine for one listing of a simulated venue.

Resting orders queue FIFO at each price level. An incoming order trades against the opposite side
from the best price outwards while its limit allows; a GTC remainder rests at the back of its
level's queue, an IOC remainder expires, and a FOK that cannot fill entirely trades nothing.
Liquidity that trades is gone: the level shrinks or disappears.

Everything goes through here, the simulated market makers' quotes included, so a client order
resting in the book is filled when a market maker's repriced quote crosses it.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from arbtui.domain.money import ZERO
from arbtui.domain.orders import Side, TimeInForce


@dataclass(slots=True)
class RestingOrder:
    order_id: int
    owner: str  # "mm" for the simulated market makers, "client" for orders placed through the venue
    side: Side
    price: Decimal
    remaining: Decimal
    tag: str = ""  # the client order id, for client orders


@dataclass(frozen=True, slots=True)
class Trade:
    taker_id: int
    maker: RestingOrder  # the resting order after the trade (``remaining`` already reduced)
    price: Decimal
    quantity: Decimal


@dataclass(slots=True)
class MatchResult:
    order_id: int
    trades: list[Trade] = field(default_factory=list)
    filled: Decimal = ZERO
    rested: RestingOrder | None = None
    expired: Decimal = ZERO  # the IOC/FOK remainder that did not trade


class _Side:
    __slots__ = ("descending", "levels", "prices")

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.levels: dict[Decimal, deque[RestingOrder]] = {}
        self.prices: list[Decimal] = []  # ascending

    def best_price(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.descending else self.prices[0]

    def iter_prices(self) -> Iterator[Decimal]:
        return reversed(self.prices) if self.descending else iter(self.prices)

    def add(self, order: RestingOrder) -> None:
        queue = self.levels.get(order.price)
        if queue is None:
            queue = self.levels[order.price] = deque()
            insort(self.prices, order.price)
        queue.append(order)

    def drop_level_if_empty(self, price: Decimal) -> None:
        queue = self.levels.get(price)
        if queue is not None and not queue:
            del self.levels[price]
            del self.prices[bisect_left(self.prices, price)]

    def total_at(self, price: Decimal) -> Decimal:
        queue = self.levels.get(price)
        return sum((o.remaining for o in queue), ZERO) if queue else ZERO

    def crosses(self, level_price: Decimal, limit: Decimal) -> bool:
        """Whether a taker with ``limit`` may trade with this side's level at ``level_price``."""
        return level_price >= limit if self.descending else level_price <= limit


class MatchingBook:
    """Resting orders of one listing, with price-time priority."""

    def __init__(self) -> None:
        self.bids = _Side(descending=True)
        self.asks = _Side(descending=False)
        self._orders: dict[int, RestingOrder] = {}
        self._ids = itertools.count(1)
        self.dirty: set[tuple[Side, Decimal]] = set()  # levels changed since the last publish

    def _book_side(self, side: Side) -> _Side:
        return self.bids if side is Side.BUY else self.asks

    def available(self, side: Side, limit: Decimal) -> Decimal:
        """Quantity a taker of ``side`` could trade right now within ``limit``."""
        opposite = self._book_side(side.opposite)
        total = ZERO
        for price in opposite.iter_prices():
            if not opposite.crosses(price, limit):
                break
            total += opposite.total_at(price)
        return total

    def submit(
        self, owner: str, side: Side, price: Decimal, quantity: Decimal, tif: TimeInForce, tag: str = ""
    ) -> MatchResult:
        order_id = next(self._ids)
        result = MatchResult(order_id)
        if tif is TimeInForce.FOK and self.available(side, price) < quantity:
            result.expired = quantity
            return result
        opposite = self._book_side(side.opposite)
        remaining = quantity
        while remaining > 0:
            best = opposite.best_price()
            if best is None or not opposite.crosses(best, price):
                break
            queue = opposite.levels[best]
            while queue and remaining > 0:
                maker = queue[0]
                qty = maker.remaining if maker.remaining < remaining else remaining
                maker.remaining -= qty
                remaining -= qty
                if maker.remaining == 0:
                    queue.popleft()
                    del self._orders[maker.order_id]
                result.trades.append(Trade(order_id, maker, best, qty))
            self.dirty.add((side.opposite, best))
            opposite.drop_level_if_empty(best)
        result.filled = quantity - remaining
        if remaining > 0:
            if tif is TimeInForce.GTC:
                rest = RestingOrder(order_id, owner, side, price, remaining, tag)
                self._book_side(side).add(rest)
                self._orders[order_id] = rest
                self.dirty.add((side, price))
                result.rested = rest
            else:
                result.expired = remaining
        return result

    def cancel(self, order_id: int) -> RestingOrder | None:
        order = self._orders.pop(order_id, None)
        if order is None:
            return None
        book_side = self._book_side(order.side)
        book_side.levels[order.price].remove(order)
        book_side.drop_level_if_empty(order.price)
        self.dirty.add((order.side, order.price))
        return order

    def reduce(self, order_id: int, new_remaining: Decimal) -> None:
        """Shrink a resting order in place (keeps its queue position, as venues do for size cuts)."""
        order = self._orders[order_id]
        if new_remaining <= 0:
            self.cancel(order_id)
            return
        if new_remaining > order.remaining:
            raise ValueError("reduce cannot grow an order; cancel and submit again")
        order.remaining = new_remaining
        self.dirty.add((order.side, order.price))

    def order(self, order_id: int) -> RestingOrder | None:
        return self._orders.get(order_id)

    def orders_of(self, owner: str) -> list[RestingOrder]:
        return [o for o in self._orders.values() if o.owner == owner]

    def level_quantity(self, side: Side, price: Decimal) -> Decimal:
        return self._book_side(side).total_at(price)

    def take_dirty(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Absolute quantities of the levels changed since the last call: (bids, asks)."""
        bids: list[tuple[Decimal, Decimal]] = []
        asks: list[tuple[Decimal, Decimal]] = []
        for side, price in self.dirty:
            entry = (price, self.level_quantity(side, price))
            (bids if side is Side.BUY else asks).append(entry)
        self.dirty.clear()
        bids.sort(reverse=True)
        asks.sort()
        return bids, asks

    def snapshot(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        bids = [(p, self.bids.total_at(p)) for p in self.bids.iter_prices()]
        asks = [(p, self.asks.total_at(p)) for p in self.asks.iter_prices()]
        return bids, asks
