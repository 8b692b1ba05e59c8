"""A real venue = a WebSocket book feed + a trader, behind the one :class:`~arbtui.venues.base.Venue`.

- The **feed** (a :class:`BookFeed`, one per venue module) parses frames and keeps verified books; a
  :class:`~arbtui.venues.connection.ConnectionSupervisor` keeps its connection alive. Replay drives the
  same feed with recorded frames and no socket.
- The **trader** places, cancels and queries orders. In ``paper`` mode (the default) it is a
  :class:`PaperTrader`, which fills orders against the live book inside arbtui; in ``live`` mode it is
  the venue's REST client.

The venue also runs the crossed-book check every feed gets: a book whose best bid reaches its best
ask is not shown to anyone; it is counted and the feed is asked for a fresh snapshot.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from arbtui.domain.book import OrderBook
from arbtui.domain.clock import Clock
from arbtui.domain.events import VenueStatus
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.orders import Fill, Liquidity, OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.venues.base import UnknownOrder, VenueError, VenueListener
from arbtui.venues.connection import ConnectionSupervisor, FeedCounters, FeedHandler, SupervisorConfig, Tap
from arbtui.venues.ratelimit import BudgetView

ZERO = Decimal(0)
NS_PER_MS = 1_000_000


class BookFeed(FeedHandler, Protocol):
    """A venue module's feed handler that keeps one book per canonical market."""

    counters: FeedCounters

    def set_on_change(self, on_change: Callable[[str], None]) -> None:
        """``on_change(market)`` is called after each verified change of a market's book."""
        ...

    def book(self, market: str) -> OrderBook | None:
        """The market's book, or None before its first snapshot or while it is being resynced."""
        ...

    def resync(self, market: str, reason: str) -> None:
        """Throw the market's book away and ask the venue for a fresh snapshot."""
        ...


class Trader(Protocol):
    """Order entry for one venue: a REST client (live) or the :class:`PaperTrader`."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def on_book(self, market: str, book: OrderBook) -> None:
        """The feed changed ``market``'s book (the paper trader fills resting orders from it)."""
        ...

    async def place_order(self, request: OrderRequest) -> OrderReport: ...

    async def cancel_order(self, client_order_id: str) -> OrderReport: ...

    async def order_status(self, client_order_id: str) -> OrderReport: ...

    async def balances(self) -> Mapping[str, Decimal]: ...

    async def live_fees(self) -> Mapping[str, FeeSchedule]:
        """The account's fee schedule per canonical market, from the venue (empty if unknown)."""
        ...

    def budgets(self) -> list[BudgetView]: ...


class LiveVenue:
    """A real venue (see the module docstring). Implements :class:`~arbtui.venues.base.Venue`."""

    def __init__(
        self,
        name: str,
        kind: str,
        listings: Sequence[Listing],
        feed: BookFeed,
        supervisor: SupervisorConfig,
        trader: Trader,
        fees: FeeSchedule,
        clock: Clock,
        *,
        mode: str = "paper",
        use_live_fees: bool = False,
        tap: Tap | None = None,
        rng: random.Random | None = None,
        replay: bool = False,
    ) -> None:
        """``replay``: no connection; a replay player drives ``feed``. Paper trading that reads live fees
        uses a :class:`PaperWithLiveFees` trader."""
        self._name = name
        self.replay = replay
        self.kind = kind
        self.mode = mode
        self._listings = list(listings)
        self.feed = feed
        self.trader = trader
        self._configured_fees = fees
        self._fees: dict[str, FeeSchedule] = {}
        self.fee_source = "config"
        self._use_live_fees = use_live_fees
        self._clock = clock
        self._listener: VenueListener | None = None
        self._status = VenueStatus.CLOSED
        self.supervisor = ConnectionSupervisor(
            name, "market", supervisor, feed, clock, feed.counters, self._on_status, tap=tap, rng=rng
        )
        feed.set_on_change(self._changed)

    # --- Venue protocol ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def listings(self) -> Sequence[Listing]:
        return self._listings

    @property
    def status(self) -> VenueStatus:
        return self._status

    async def connect(self, listener: VenueListener) -> None:
        """Start the feed and the trader. A feed that cannot connect keeps retrying in the
        background (the status shows it); it does not stop the console from starting."""
        self._listener = listener
        await self.trader.start()
        if self.replay:
            self._on_status(VenueStatus.CONNECTED, "replay")
            return
        if self._use_live_fees:
            try:
                fees = await self.trader.live_fees()
            except VenueError as exc:
                listener.on_status(self._name, self._status, f"live fees unavailable, using config: {exc}")
            else:
                if fees:
                    self._fees = dict(fees)
                    self.fee_source = "venue"
        await self.supervisor.start()

    async def close(self) -> None:
        await self.supervisor.stop()
        await self.trader.close()
        self._listener = None

    def book(self, market: str) -> OrderBook | None:
        return self.feed.book(market)

    async def place_order(self, request: OrderRequest) -> OrderReport:
        return await self.trader.place_order(request)

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        return await self.trader.cancel_order(client_order_id)

    async def order_status(self, client_order_id: str) -> OrderReport:
        return await self.trader.order_status(client_order_id)

    async def balances(self) -> Mapping[str, Decimal]:
        return await self.trader.balances()

    def fees(self, market: str) -> FeeSchedule:
        return self._fees.get(market, self._configured_fees)

    # --- extras read by analytics --------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        return self.feed.counters.as_dict()

    def budgets(self) -> list[BudgetView]:
        return self.trader.budgets()

    # --- internals ---------------------------------------------------------------------------
    def _on_status(self, status: VenueStatus, detail: str) -> None:
        self._status = status
        if self._listener is not None:
            self._listener.on_status(self._name, status, detail)

    def _changed(self, market: str) -> None:
        book = self.feed.book(market)
        if book is None:
            return
        if book.is_crossed():
            self.feed.counters.crossed += 1
            self.feed.resync(market, "crossed book")
            return
        self.trader.on_book(market, book)
        if self._listener is not None:
            self._listener.on_book(self._name, market, book)


# ------------------------------------------------------------------------------------------------
# Paper trading
# ------------------------------------------------------------------------------------------------


@dataclass
class _PaperOrder:
    request: OrderRequest
    venue_order_id: str
    status: OrderStatus = OrderStatus.OPEN
    filled: Decimal = ZERO
    notional: Decimal = ZERO
    fee: Decimal = ZERO
    reason: str | None = None
    fills: list[Fill] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.request.quantity - self.filled


class PaperTrader:
    """Fills orders against the venue's live book inside arbtui; nothing reaches the venue.

    An order takes liquidity at or better than its limit, level by level, as a taker (taker fee). The
    book is not ours to change, so liquidity a paper order took is remembered per price level and not
    offered again until the feed updates that market's book. A GTC remainder rests and fills (as a
    maker, at its limit) when the live book trades through it. Funds are checked like a venue does
    (a buy needs ``quantity * limit + fee`` of the quote asset, a sell the base quantity); a venue's
    minimum size, tick and lot are enforced. ``latency_ms`` delays each reply by a simulated round trip.
    """

    def __init__(
        self,
        venue: str,
        listings: Sequence[Listing],
        markets: Mapping[str, Market],
        books: Callable[[str], OrderBook | None],
        fees: Callable[[str], FeeSchedule],
        balances: Mapping[str, Decimal],
        clock: Clock,
        latency_ms: int = 0,
    ) -> None:
        self._venue = venue
        self._listings = {lst.market: lst for lst in listings}
        self._markets = markets
        self._books = books
        self._fees = fees
        self._balances: dict[str, Decimal] = dict(balances)
        self._clock = clock
        self._latency_ns = latency_ms * NS_PER_MS
        self._orders: dict[str, _PaperOrder] = {}
        self._resting: dict[str, dict[str, _PaperOrder]] = {}  # market -> GTC orders still resting
        self._taken: dict[str, dict[tuple[Side, Decimal], Decimal]] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def budgets(self) -> list[BudgetView]:
        return []

    async def live_fees(self) -> Mapping[str, FeeSchedule]:
        return {}

    async def balances(self) -> Mapping[str, Decimal]:
        return self._free()

    def on_book(self, market: str, book: OrderBook) -> None:
        self._taken.pop(market, None)  # the venue's book moved on: its levels are what it says now
        resting = self._resting.get(market)
        if not resting:
            return
        for order in list(resting.values()):
            req = order.request
            if order.status not in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
                resting.pop(req.client_order_id, None)
                continue
            for price, qty in list(book.taken_side(req.side)):
                if order.remaining <= 0 or not _crosses(req.side, price, req.limit_price):
                    break
                self._fill(order, req.limit_price, min(qty, order.remaining), Liquidity.MAKER)
            if order.remaining == 0:
                order.status = OrderStatus.FILLED
                resting.pop(req.client_order_id, None)
            elif order.filled > 0:
                order.status = OrderStatus.PARTIALLY_FILLED

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if self._latency_ns:
            await self._clock.sleep(self._latency_ns // 2)
        if request.client_order_id in self._orders:
            report = self._report(self._orders[request.client_order_id])
        else:
            order = _PaperOrder(request, f"PAPER-{self._venue[:2].upper()}-{next(self._ids):06d}")
            self._orders[request.client_order_id] = order
            self._execute(order)
            report = self._report(order)
        if self._latency_ns:
            await self._clock.sleep(self._latency_ns - self._latency_ns // 2)
        return report

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        order = self._orders.get(client_order_id)
        if order is None:
            raise UnknownOrder(self._venue, f"no order {client_order_id}")
        if order.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            order.status = OrderStatus.CANCELLED
            order.reason = "cancelled"
        return self._report(order)

    async def order_status(self, client_order_id: str) -> OrderReport:
        order = self._orders.get(client_order_id)
        if order is None:
            raise UnknownOrder(self._venue, f"no order {client_order_id}")
        return self._report(order)

    # --- internals ---------------------------------------------------------------------------
    def _free(self) -> dict[str, Decimal]:
        free = dict(self._balances)
        for order in self._orders.values():
            if order.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
                market = self._markets[order.request.market]
                if order.request.side is Side.BUY:
                    free[market.quote] = free.get(market.quote, ZERO) - order.remaining * order.request.limit_price
                else:
                    free[market.base] = free.get(market.base, ZERO) - order.remaining
        return free

    def _execute(self, order: _PaperOrder) -> None:
        req = order.request
        lst = self._listings.get(req.market)
        market = self._markets.get(req.market)
        if lst is None or market is None:
            self._reject(order, f"unknown market {req.market}")
            return
        if not lst.is_valid_price(req.limit_price):
            self._reject(order, f"price {req.limit_price} is not a multiple of tick {lst.tick_size}")
            return
        if not lst.is_valid_quantity(req.quantity):
            self._reject(order, f"quantity {req.quantity} is below {lst.min_size} or not a multiple of {lst.lot_size}")
            return
        book = self._books(req.market)
        if book is None:
            self._reject(order, "no live book for this market yet")
            return
        free = self._free()
        if req.side is Side.BUY:
            asset, need = (
                market.quote,
                req.quantity * req.limit_price + self._fees(req.market).fee(req.limit_price, req.quantity),
            )
        else:
            asset, need = market.base, req.quantity
        # The order under test is already registered as OPEN: add back its own reservation.
        own = req.quantity * req.limit_price if req.side is Side.BUY else req.quantity
        if free.get(asset, ZERO) + own < need:
            self._reject(order, f"insufficient funds: {asset} {free.get(asset, ZERO) + own} available, {need} needed")
            return
        taken = self._taken.setdefault(req.market, {})
        plan: list[tuple[Decimal, Decimal]] = []
        left = req.quantity
        for price, qty in book.taken_side(req.side):
            if left <= 0 or not _crosses(req.side, price, req.limit_price):
                break
            avail = qty - taken.get((req.side, price), ZERO)
            if avail <= 0:
                continue
            q = min(avail, left)
            plan.append((price, q))
            left -= q
        if req.time_in_force is TimeInForce.FOK and left > 0:
            order.status = OrderStatus.EXPIRED
            order.reason = "FOK could not fill"
            return
        for price, q in plan:
            taken[(req.side, price)] = taken.get((req.side, price), ZERO) + q
            self._fill(order, price, q, Liquidity.TAKER)
        if order.remaining == 0:
            order.status = OrderStatus.FILLED
        elif req.time_in_force is TimeInForce.GTC:
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
            self._resting.setdefault(req.market, {})[req.client_order_id] = order
        else:
            order.status = OrderStatus.EXPIRED
            order.reason = "IOC remainder expired"

    def _fill(self, order: _PaperOrder, price: Decimal, qty: Decimal, liquidity: Liquidity) -> None:
        req = order.request
        market = self._markets[req.market]
        fee = self._fees(req.market).fee(price, qty, taker=liquidity is Liquidity.TAKER)
        order.filled += qty
        order.notional += price * qty
        order.fee += fee
        now = self._clock.now_ns()
        order.fills.append(Fill(req.client_order_id, qty, price, fee, liquidity, now))
        sign = 1 if req.side is Side.BUY else -1
        self._balances[market.base] = self._balances.get(market.base, ZERO) + sign * qty
        self._balances[market.quote] = self._balances.get(market.quote, ZERO) - sign * price * qty - fee

    def _reject(self, order: _PaperOrder, reason: str) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = reason

    def _report(self, order: _PaperOrder) -> OrderReport:
        return OrderReport(
            client_order_id=order.request.client_order_id,
            venue=self._venue,
            venue_order_id=order.venue_order_id,
            status=order.status,
            quantity=order.request.quantity,
            filled_quantity=order.filled,
            average_price=order.notional / order.filled if order.filled else None,
            fee=order.fee,
            ts_ns=self._clock.now_ns(),
            reason=order.reason,
            fills=tuple(order.fills),
        )


class PaperWithLiveFees:
    """Paper trading (every order filled inside arbtui by :class:`PaperTrader`) while a venue's REST
    client only reads the account's fee rates and budgets: paper mode with keys and ``live_fees``.
    Nothing but reads is ever sent to the venue."""

    def __init__(self, paper: PaperTrader, rest: Trader) -> None:
        self.paper = paper
        self.rest = rest

    async def start(self) -> None:
        await self.paper.start()
        await self.rest.start()

    async def close(self) -> None:
        await self.rest.close()
        await self.paper.close()

    def on_book(self, market: str, book: OrderBook) -> None:
        self.paper.on_book(market, book)

    async def place_order(self, request: OrderRequest) -> OrderReport:
        return await self.paper.place_order(request)

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        return await self.paper.cancel_order(client_order_id)

    async def order_status(self, client_order_id: str) -> OrderReport:
        return await self.paper.order_status(client_order_id)

    async def balances(self) -> Mapping[str, Decimal]:
        return await self.paper.balances()

    async def live_fees(self) -> Mapping[str, FeeSchedule]:
        return await self.rest.live_fees()

    def budgets(self) -> list[BudgetView]:
        return self.rest.budgets()


def _crosses(side: Side, level_price: Decimal, limit: Decimal) -> bool:
    return level_price <= limit if side is Side.BUY else level_price >= limit
