"""A simulated venue: the embedded default, and the paper-trading fill engine.

Each simulated venue keeps its own L2 book per listing, made of simulated market makers' quotes
around the market's shared fair value as this venue sees it: late by ``lag_ms`` (plus the market's
own lag) and shifted by a mean-reverting venue-specific noise. Quotes are repriced every
``update_interval_ms`` (with jitter) and published as L2 changes, not as whole snapshots.

Orders go through a real price-time matching engine (:mod:`arbtui.sim.matching`): IOC and FOK
orders fill against the book and the liquidity they take is gone until the market makers refill it
(after a pause); GTC orders rest and are filled when quotes cross them. Every order pays the ack
latency (half on the way in, half on the way out, with jitter), and draws its fate from the
configured fault rates: rejected, no reply (the order is executed but the answer never comes:
ask ``order_status``), or partially filled (someone else takes part of the liquidity first).
Balances move with every fill; taker and maker fees are charged by the venue's fee schedule.

Deterministic for a given seed and clock: every random draw comes from generators seeded from the
config seed and the venue and market names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from arbtui.config import MarketSimConfig, VenueConfig
from arbtui.domain.book import Level, OrderBook
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, Clock
from arbtui.domain.events import VenueStatus
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing, Market, MarketKind
from arbtui.domain.money import ZERO, floor_to_step
from arbtui.domain.orders import Fill, Liquidity, OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.sim.matching import MatchingBook, MatchResult, Trade
from arbtui.sim.price_process import Noise
from arbtui.venues.base import UnknownOrder, VenueError, VenueListener
from arbtui.venues.connection import Tap
from arbtui.venues.sim_feed import render_frame

MM = "mm"
CLIENT = "client"
OTHER = "other"  # other takers, in the partial-fill fault
REFILL_PAUSE_NS = NS_PER_S  # market makers wait this long before refilling a level that traded
LEVEL_SPACING = 0.00005  # levels 0.5 bp apart (at least one tick): similar depth on every venue
CHURN = 0.12  # chance per refresh that a market maker resizes a level


@dataclass(slots=True)
class _ClientOrder:
    request: OrderRequest
    order_id: int | None = None
    status: OrderStatus = OrderStatus.OPEN
    filled: Decimal = ZERO
    notional: Decimal = ZERO
    fee: Decimal = ZERO
    reason: str | None = None
    venue_order_id: str = ""
    fills: list[Fill] = field(default_factory=list)
    reserved: Decimal = ZERO  # quote (buys) or base (sells) held for the resting remainder


@dataclass(slots=True)
class _ListingState:
    listing: Listing
    market: Market
    sim: MarketSimConfig
    matching: MatchingBook
    book: OrderBook
    noise: Noise
    rng: random.Random
    mm_orders: dict[tuple[Side, Decimal], int] = field(default_factory=dict)
    sizes: dict[tuple[Side, Decimal], Decimal] = field(default_factory=dict)
    last_taken_ns: dict[tuple[Side, Decimal], int] = field(default_factory=dict)
    last_refresh_ns: int = 0


FairLookup = Callable[[str, int], float]


class SimulatedVenue:
    """One simulated venue. Implements :class:`arbtui.venues.base.Venue`."""

    def __init__(
        self,
        config: VenueConfig,
        listings: Sequence[Listing],
        markets: Mapping[str, Market],
        sims: Mapping[str, MarketSimConfig],
        clock: Clock,
        seed: int,
        fair: FairLookup,
    ) -> None:
        self._config = config
        self._sim = config.sim
        self._clock = clock
        self._fair = fair
        self._rng = random.Random(f"{seed}:{config.name}:orders")
        self._listings = list(listings)
        self._state: dict[str, _ListingState] = {}
        for lst in self._listings:
            rng = random.Random(f"{seed}:{config.name}:{lst.market}")
            self._state[lst.market] = _ListingState(
                lst,
                markets[lst.market],
                sims[lst.market],
                MatchingBook(),
                OrderBook(depth=self._sim.depth),
                Noise(rng, float(self._sim.noise_bps)),
                rng,
            )
        self._balances: dict[str, Decimal] = dict(config.sim.balances)
        self._orders: dict[str, _ClientOrder] = {}
        self._by_order_id: dict[tuple[str, int], str] = {}
        self._listener: VenueListener | None = None
        self._status = VenueStatus.CLOSED
        self._closed = asyncio.Event()
        self._next_refresh_ns: int | None = None
        self._venue_ids = 0
        self.orders_received = 0
        self.frames_published = 0
        self.tap: Tap | None = None  # the session recorder: every published change as a frame

    # --- Venue protocol ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._config.name

    @property
    def listings(self) -> Sequence[Listing]:
        return self._listings

    @property
    def status(self) -> VenueStatus:
        return self._status

    async def connect(self, listener: VenueListener) -> None:
        self._listener = listener
        self._closed.clear()
        self._set_status(VenueStatus.CONNECTED, "simulated")
        now = self._clock.now_ns()
        if self.tap is not None:
            self.tap.connected(self.name, "market", now)
        for st in self._state.values():
            self._refresh(st, now)

    async def close(self) -> None:
        if self._status is not VenueStatus.CLOSED:
            self._set_status(VenueStatus.CLOSED, "closed")
        self._listener = None
        self._closed.set()

    def book(self, market: str) -> OrderBook | None:
        st = self._state.get(market)
        return st.book if st is not None and st.book.last_update_ns is not None else None

    def fees(self, market: str) -> FeeSchedule:
        return self._config.fees

    @property
    def counters(self) -> dict[str, int]:
        """Feed integrity counters. An in-process simulation has no wire, so only frames can grow."""
        return {"frames": self.frames_published, "integrity_failures": 0, "resyncs": 0, "reconnects": 0, "malformed": 0}

    async def balances(self) -> Mapping[str, Decimal]:
        return self.free_balances()

    def free_balances(self) -> dict[str, Decimal]:
        free = dict(self._balances)
        for order in self._orders.values():
            if order.reserved:
                st = self._state[order.request.market]
                asset = st.market.quote if order.request.side is Side.BUY else st.market.base
                free[asset] = free.get(asset, ZERO) - order.reserved
        return free

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if self._status is VenueStatus.CLOSED:
            raise VenueError(self.name, "not connected", retryable=True)
        if request.venue != self.name:
            raise ValueError(f"order for {request.venue} sent to {self.name}")
        if request.client_order_id in self._orders:
            raise VenueError(self.name, f"duplicate client order id {request.client_order_id}")
        order = _ClientOrder(request)
        self._orders[request.client_order_id] = order
        self.orders_received += 1
        # The fault is drawn when the order is sent, so a run is reproducible whatever the timing.
        roll = self._rng.random()
        reject_below = float(self._sim.reject_rate)  # float ok: probabilities, not money
        timeout_below = reject_below + float(self._sim.timeout_rate)  # float ok
        partial_below = timeout_below + float(self._sim.partial_fill_rate)  # float ok
        taken_share = 0.3 + 0.6 * self._rng.random()
        inbound, outbound = self._latencies()
        await self._clock.sleep(inbound)
        if order.status is OrderStatus.CANCELLED:
            pass  # a cancel overtook the order on its way in: it never reaches the book
        elif roll < reject_below:
            self._reject(order, "simulated reject: venue busy, try again")
        else:
            self._execute(order, other_takes=taken_share if timeout_below <= roll < partial_below else 0.0)
        if reject_below <= roll < timeout_below:
            await self._closed.wait()  # the reply is lost; only order_status can tell what happened
            raise VenueError(self.name, "connection closed before the reply", retryable=True)
        await self._clock.sleep(outbound)
        return self._report(order)

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        order = self._orders.get(client_order_id)
        if order is None:
            raise UnknownOrder(self.name, f"unknown order {client_order_id}")
        inbound, outbound = self._latencies()
        await self._clock.sleep(inbound)
        if order.order_id is None and order.status is OrderStatus.OPEN:
            # Received but not yet matched (still travelling in): the cancel wins the race.
            order.status = OrderStatus.CANCELLED
            order.reason = "cancelled before it reached the book"
        elif order.order_id is not None and not order.status.is_final:
            st = self._state[order.request.market]
            if st.matching.cancel(order.order_id) is not None:
                order.status = OrderStatus.CANCELLED
                order.reserved = ZERO
                self._publish(st, self._clock.now_ns())
        await self._clock.sleep(outbound)
        return self._report(order)

    async def order_status(self, client_order_id: str) -> OrderReport:
        order = self._orders.get(client_order_id)
        inbound, outbound = self._latencies()
        await self._clock.sleep(inbound + outbound)
        if order is None:
            raise UnknownOrder(self.name, f"unknown order {client_order_id}")
        return self._report(order)

    def configure_faults(
        self,
        *,
        reject_rate: Decimal | None = None,
        timeout_rate: Decimal | None = None,
        partial_fill_rate: Decimal | None = None,
        ack_latency_ms: int | None = None,
    ) -> None:
        """Change the fault knobs while running (fault-injection tests, and the crash test)."""
        changes: dict[str, object] = {}
        if reject_rate is not None:
            changes["reject_rate"] = reject_rate
        if timeout_rate is not None:
            changes["timeout_rate"] = timeout_rate
        if partial_fill_rate is not None:
            changes["partial_fill_rate"] = partial_fill_rate
        if ack_latency_ms is not None:
            changes["ack_latency_ms"] = ack_latency_ms
        self._sim = dataclasses.replace(self._sim, **changes)  # type: ignore[arg-type]

    # --- the market makers -------------------------------------------------------------------
    def maybe_refresh(self, now_ns: int) -> None:
        """Reprice every listing if this venue's next update is due (called by the market driver)."""
        if self._listener is None:
            return
        if self._next_refresh_ns is None:
            self._next_refresh_ns = now_ns
        if now_ns < self._next_refresh_ns:
            return
        for st in self._state.values():
            self._refresh(st, now_ns)
        interval = self._sim.update_interval_ms * NS_PER_MS
        self._next_refresh_ns = now_ns + int(interval * (0.75 + 0.5 * self._rng.random()))

    def _refresh(self, st: _ListingState, now_ns: int) -> None:
        if st.last_refresh_ns:
            st.noise.step(now_ns - st.last_refresh_ns)
        st.last_refresh_ns = max(st.last_refresh_ns, now_ns)
        lag_ns = (self._sim.lag_ms + st.sim.lag_ms) * NS_PER_MS
        fair = self._fair(st.market.id, now_ns - lag_ns)
        tick = float(st.listing.tick_size)  # float ok: choosing a quote grid, rounded to ticks below
        probability = st.market.kind is MarketKind.OUTCOME
        ref = fair + st.noise.value if probability else fair * (1.0 + st.noise.value)
        spread = self._sim.spread_ticks
        bid_top = math.floor(ref / tick - spread / 2)
        spacing = max(1, round(ref * LEVEL_SPACING / tick)) if not probability else 1
        max_ticks = round(1.0 / tick) - 1 if probability else None
        targets: dict[tuple[Side, Decimal], Decimal] = {}
        for side, top, sign in ((Side.BUY, bid_top, -1), (Side.SELL, bid_top + spread, 1)):
            for i in range(self._sim.depth):
                ticks = top + sign * i * spacing
                if ticks < 1 or (max_ticks is not None and ticks > max_ticks):
                    break
                price = st.listing.tick_size * ticks
                key = (side, price)
                size = st.sizes.get(key)
                if size is None or st.rng.random() < CHURN:
                    raw = float(st.sim.level_size) * (0.4 + 1.2 * st.rng.random()) * (1 + 0.15 * i)
                    size = max(st.listing.min_size, floor_to_step(Decimal(repr(raw)), st.listing.lot_size))
                    st.sizes[key] = size
                targets[key] = size
        for key in [k for k in st.sizes if k not in targets]:
            del st.sizes[key]
        # Withdraw quotes that are no longer wanted first, so new quotes never cross old ones.
        for key, mm_oid in list(st.mm_orders.items()):
            resting = st.matching.order(mm_oid)
            if resting is None:
                del st.mm_orders[key]
            elif key not in targets:
                st.matching.cancel(mm_oid)
                del st.mm_orders[key]
            elif resting.remaining > targets[key]:
                st.matching.reduce(mm_oid, targets[key])
        for key, size in targets.items():
            oid = st.mm_orders.get(key)
            resting = st.matching.order(oid) if oid is not None else None
            current = resting.remaining if resting is not None else ZERO
            if current >= size:
                continue
            if now_ns - st.last_taken_ns.get(key, -REFILL_PAUSE_NS) < REFILL_PAUSE_NS:
                continue  # taken liquidity stays gone for a while
            if oid is not None and resting is not None:
                st.matching.cancel(oid)  # a top-up goes to the back of the queue
            side, price = key
            result = st.matching.submit(MM, side, price, size, TimeInForce.GTC)
            self._settle_resting_fills(st, result, now_ns)
            if result.rested is not None:
                st.mm_orders[key] = result.order_id
        self._publish(st, now_ns)

    # --- matching ------------------------------------------------------------------------------
    def _execute(self, order: _ClientOrder, other_takes: float) -> None:
        req = order.request
        st = self._state.get(req.market)
        now = self._clock.now_ns()
        if st is None:
            self._reject(order, f"unknown market {req.market}")
            return
        lst = st.listing
        if not lst.is_valid_price(req.limit_price):
            self._reject(order, f"price {req.limit_price} is not a multiple of tick {lst.tick_size}")
            return
        if not lst.is_valid_quantity(req.quantity):
            self._reject(
                order, f"quantity {req.quantity} is below {lst.min_size} or not a multiple of lot {lst.lot_size}"
            )
            return
        free = self.free_balances()
        fees = self._config.fees
        if req.side is Side.BUY:
            need = req.quantity * req.limit_price + fees.fee(req.limit_price, req.quantity)
            asset = st.market.quote
        else:
            need = req.quantity
            asset = st.market.base
        if free.get(asset, ZERO) < need:
            self._reject(order, f"insufficient funds: {asset} {free.get(asset, ZERO)} available, {need} needed")
            return
        if other_takes > 0:
            self._others_take(st, req.side, req.limit_price, other_takes, now)
        result = st.matching.submit(
            CLIENT, req.side, req.limit_price, req.quantity, req.time_in_force, tag=req.client_order_id
        )
        self._venue_ids += 1
        order.venue_order_id = f"{self.name[:2].upper()}-{self._venue_ids:06d}"
        order.order_id = result.order_id
        self._by_order_id[(req.market, result.order_id)] = req.client_order_id
        for trade in result.trades:
            self._apply_fill(order, trade.price, trade.quantity, Liquidity.TAKER, now)
            if trade.maker.owner == CLIENT:
                self._maker_fill(st, trade, now)
            st.last_taken_ns[(trade.maker.side, trade.price)] = now
        if result.rested is not None:
            order.reserved = (
                result.rested.remaining * req.limit_price if req.side is Side.BUY else result.rested.remaining
            )
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
        elif order.filled == req.quantity:
            order.status = OrderStatus.FILLED
        else:
            order.status = OrderStatus.EXPIRED
            order.reason = "IOC remainder expired" if req.time_in_force is TimeInForce.IOC else "FOK could not fill"
        self._publish(st, now)

    def _others_take(self, st: _ListingState, side: Side, limit: Decimal, share: float, now: int) -> None:
        """Another trader takes ``share`` of the liquidity within ``limit`` just before our order."""
        available = st.matching.available(side, limit)
        take = floor_to_step(available * Decimal(repr(share)), st.listing.lot_size)
        if take > 0:
            result = st.matching.submit(OTHER, side, limit, take, TimeInForce.IOC)
            for trade in result.trades:
                st.last_taken_ns[(trade.maker.side, trade.price)] = now
                if trade.maker.owner == CLIENT:
                    self._maker_fill(st, trade, now)

    def _settle_resting_fills(self, st: _ListingState, result: MatchResult, now: int) -> None:
        for trade in result.trades:
            if trade.maker.owner == CLIENT:
                self._maker_fill(st, trade, now)

    def _maker_fill(self, st: _ListingState, trade: Trade, now: int) -> None:
        cid = self._by_order_id.get((st.listing.market, trade.maker.order_id))
        if cid is None:
            return
        order = self._orders[cid]
        self._apply_fill(order, trade.price, trade.quantity, Liquidity.MAKER, now)
        req = order.request
        order.reserved = trade.maker.remaining * req.limit_price if req.side is Side.BUY else trade.maker.remaining
        order.status = OrderStatus.FILLED if trade.maker.remaining == 0 else OrderStatus.PARTIALLY_FILLED

    def _apply_fill(self, order: _ClientOrder, price: Decimal, qty: Decimal, liquidity: Liquidity, now: int) -> None:
        req = order.request
        st = self._state[req.market]
        fee = self._config.fees.fee(price, qty, taker=liquidity is Liquidity.TAKER)
        order.filled += qty
        order.notional += price * qty
        order.fee += fee
        order.fills.append(Fill(req.client_order_id, qty, price, fee, liquidity, now))
        base, quote = st.market.base, st.market.quote
        sign = 1 if req.side is Side.BUY else -1
        self._balances[base] = self._balances.get(base, ZERO) + sign * qty
        self._balances[quote] = self._balances.get(quote, ZERO) - sign * price * qty - fee

    def _reject(self, order: _ClientOrder, reason: str) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = reason

    def _report(self, order: _ClientOrder) -> OrderReport:
        avg = order.notional / order.filled if order.filled else None
        return OrderReport(
            client_order_id=order.request.client_order_id,
            venue=self.name,
            venue_order_id=order.venue_order_id or None,
            status=order.status,
            quantity=order.request.quantity,
            filled_quantity=order.filled,
            average_price=avg,
            fee=order.fee,
            ts_ns=self._clock.now_ns(),
            reason=order.reason,
            fills=tuple(order.fills),
        )

    def _latencies(self) -> tuple[int, int]:
        base = self._sim.ack_latency_ms * NS_PER_MS
        jitter = self._sim.latency_jitter_ms * NS_PER_MS
        total = base + int(jitter * self._rng.random())
        return total // 2, total - total // 2

    # --- publishing ----------------------------------------------------------------------------
    def _publish(self, st: _ListingState, now_ns: int) -> None:
        """Publish the top ``depth`` levels as an L2 change of the venue's book."""
        st.matching.dirty.clear()
        depth = self._sim.depth
        new_bids, new_asks = st.matching.snapshot()
        bids = _diff(st.book.bids.top(depth), new_bids[:depth])
        asks = _diff(st.book.asks.top(depth), new_asks[:depth])
        first = st.book.last_update_ns is None
        if not first and not bids and not asks:
            return
        st.book.apply_update(bids, asks, now_ns)
        self.frames_published += 1
        if self.tap is not None:
            self.tap.frame(self.name, "market", render_frame(st.listing.market, bids, asks, snapshot=first), now_ns)
        if self._listener is not None:
            self._listener.on_book(self.name, st.listing.market, st.book)

    def record_snapshots(self) -> None:
        """A recording starts mid-session: give it a connection boundary and every book in full."""
        if self.tap is None:
            return
        now = self._clock.now_ns()
        self.tap.connected(self.name, "market", now)
        for st in self._state.values():
            if st.book.last_update_ns is not None:
                frame = render_frame(st.listing.market, list(st.book.bids), list(st.book.asks), snapshot=True)
                self.tap.frame(self.name, "market", frame, now)

    def _set_status(self, status: VenueStatus, detail: str) -> None:
        self._status = status
        if self._listener is not None:
            self._listener.on_status(self.name, status, detail)


def _diff(old: list[Level], new: list[Level]) -> list[Level]:
    """L2 changes (absolute quantities, zero deletes) that turn ``old`` into ``new``."""
    old_map = dict(old)
    new_map = dict(new)
    changes = [(p, q) for p, q in new if old_map.get(p) != q]
    changes.extend((p, ZERO) for p in old_map if p not in new_map)
    return changes
