"""Quotes: what the operator is shown is what is sent.

A :class:`~arbtui.domain.execution.Quote` freezes both legs of a spread (venue, side, quantity,
limit) with the fees, expected PnL and worst case the books give them when it is made. Confirming
it sends exactly those legs or less:

- the quote must be known, unexpired (``[execution] quote_ttl_ms``) and not sent before;
- at send time the current books are walked *at the quote's limits*: the quantity sent is the
  quote's, or less when the books now hold less within those limits or a leg's notional would now
  exceed ``risk.max_notional`` (rounded down to the lot), and never more; the limits are the
  quote's, never worse;
- what that quantity would make now (fees and the slippage buffer charged as the detector charges
  them) must still pay (above ``min_expected_pnl`` and ``min_net_edge_bps``), else nothing is sent
  and the refusal says what the figures are now against the quote's (``EDGE_GONE``).

The risk checks then run on exactly the legs that would be sent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.events import LegPlan, Spread, SpreadKind
from arbtui.domain.execution import Quote, QuoteLeg
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Instruments
from arbtui.domain.money import BPS, ZERO, floor_to_step
from arbtui.domain.orders import Side
from arbtui.engine.risk import Refusal

CENT = Decimal("0.01")
KEEP_QUOTES = 512  # quotes remembered for a confirm (the newest); an older id refuses as unknown


@dataclass(frozen=True, slots=True)
class Walk:
    """Taking ``filled`` of one side within a limit: its notional, taker fee and worst price."""

    filled: Decimal
    notional: Decimal
    fee: Decimal
    worst: Decimal | None

    @property
    def vwap(self) -> Decimal | None:
        return self.notional / self.filled if self.filled else None


def walk(book: OrderBook | None, side: Side, quantity: Decimal, limit: Decimal, fees: FeeSchedule) -> Walk:
    """Take up to ``quantity`` from the side ``side`` trades against, at prices no worse than
    ``limit``; the fee is charged level by level, as the detector charges it."""
    if book is None or quantity <= 0:
        return Walk(ZERO, ZERO, ZERO, None)
    levels = book.taken_side(side)
    remaining = quantity
    notional = fee = ZERO
    worst: Decimal | None = None
    for price, qty in levels:
        if remaining <= 0 or not levels.is_better_or_equal(price, limit):
            break
        take = qty if qty < remaining else remaining
        notional += price * take
        fee += fees.fee(price, take)
        remaining -= take
        worst = price
    return Walk(quantity - remaining, notional, fee, worst)


def _bps(numerator: Decimal, denominator: Decimal) -> Decimal:
    if denominator == 0:
        return ZERO
    return (numerator / denominator * BPS).quantize(CENT, ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Priced:
    """Two legs walked at one quantity within their limits, and what that makes."""

    quantity: Decimal
    walks: tuple[Walk, Walk]
    fees: Decimal
    gross: Decimal
    cost: Decimal
    buffer: Decimal
    pnl_before_buffer: Decimal
    pnl: Decimal
    net_bps: Decimal


class QuoteBook:
    """Makes quotes, remembers the newest ones, and re-checks one at send time."""

    def __init__(
        self,
        instruments: Instruments,
        books: Callable[[str, str], OrderBook | None],
        fees: Callable[[str, str], FeeSchedule],
        slippage_bps: Callable[[str], Decimal],
        payout: Callable[[str], Decimal],
        ttl_ms: int,
        min_expected_pnl: Decimal,
        min_net_edge_bps: Decimal,
        max_notional: Decimal,
    ) -> None:
        self._inst = instruments
        self._books = books
        self._fees = fees
        self._slippage_bps = slippage_bps
        self._payout = payout
        self.ttl_ns = ttl_ms * NS_PER_MS
        self._min_pnl = min_expected_pnl
        self._min_edge = min_net_edge_bps
        self._max_notional = max_notional
        self._quotes: OrderedDict[str, Quote] = OrderedDict()
        self._used: set[str] = set()
        self._next = 1

    # --- pricing -------------------------------------------------------------------------------
    def _lot(self, spread: Spread) -> tuple[Decimal, Decimal]:
        a = self._inst.listing(spread.legs[0].venue, spread.legs[0].market)
        b = self._inst.listing(spread.legs[1].venue, spread.legs[1].market)
        return max(a.lot_size, b.lot_size), max(a.min_size, b.min_size)

    def price(self, spread: Spread, limits: tuple[Decimal, Decimal], quantity: Decimal) -> Priced:
        """Walk both legs of ``spread`` at their ``limits`` for up to ``quantity`` (rounded down to the
        common lot to what both books hold), and price the result as the detector does."""
        lot, _ = self._lot(spread)
        plans = spread.legs
        f0 = self._fees(plans[0].venue, plans[0].market)
        f1 = self._fees(plans[1].venue, plans[1].market)
        first = walk(self._books(plans[0].venue, plans[0].market), plans[0].side, quantity, limits[0], f0)
        second = walk(self._books(plans[1].venue, plans[1].market), plans[1].side, quantity, limits[1], f1)
        q = floor_to_step(min(quantity, first.filled, second.filled), lot)
        if q != first.filled:
            first = walk(self._books(plans[0].venue, plans[0].market), plans[0].side, q, limits[0], f0)
        if q != second.filled:
            second = walk(self._books(plans[1].venue, plans[1].market), plans[1].side, q, limits[1], f1)
        fees = first.fee + second.fee
        if spread.kind is SpreadKind.COMPLEMENT:
            cost = first.notional + second.notional
            gross = self._payout(spread.key) * q - cost
        else:
            cost = first.notional
            gross = second.notional - first.notional
        buffer = self._slippage_bps(spread.key) / BPS * (first.notional + second.notional)
        before = gross - fees
        pnl = before - buffer
        return Priced(q, (first, second), fees, gross, cost, buffer, before, pnl, _bps(pnl, cost))

    def _within_notional(self, spread: Spread, limits: tuple[Decimal, Decimal], priced: Priced) -> Priced:
        """``priced`` cut down (by whole lots) until no leg's notional at the prices the books give now
        exceeds ``risk.max_notional``, as the detector sizes: a sell whose bids improved since the
        quote raises more per unit, and is sent smaller rather than refused."""
        lot, _ = self._lot(spread)
        for _ in range(8):
            biggest = max(w.notional for w in priced.walks)
            if biggest <= self._max_notional or priced.quantity <= 0:
                return priced
            smaller = floor_to_step(priced.quantity * self._max_notional / biggest, lot)
            if smaller >= priced.quantity:
                smaller = priced.quantity - lot
            priced = self.price(spread, limits, max(smaller, ZERO))
        return priced

    def pays(self, priced: Priced, min_size: Decimal) -> bool:
        return (
            priced.quantity >= min_size
            and priced.quantity > 0
            and priced.pnl > 0
            and priced.pnl >= self._min_pnl
            and priced.net_bps >= self._min_edge
        )

    def unwind_cost(self, plan: LegPlan, w: Walk) -> Decimal:
        """PnL if only this leg filled and it was flattened at once at the opposite side of its book."""
        book = self._books(plan.venue, plan.market)
        if book is None or w.vwap is None or w.filled == 0:
            return ZERO
        fees = self._fees(plan.venue, plan.market)
        back = book.estimate_fill(plan.side.opposite, w.filled)
        if back.vwap is None or back.quantity < w.filled:
            return -w.notional - w.fee  # nothing (or not enough) to unwind into: the notional is at risk
        fee_back = fees.fee(back.vwap, back.quantity)
        if plan.side is Side.BUY:
            return back.notional - w.notional - w.fee - fee_back
        return w.notional - back.notional - w.fee - fee_back

    def sending_spread(self, spread: Spread, priced: Priced, limits: tuple[Decimal, Decimal]) -> Spread:
        """The spread as it would be sent: the priced quantity at the given limits (for the risk checks)."""
        legs = tuple(
            LegPlan(p.venue, p.market, p.side, priced.quantity, w.vwap or lim, lim, w.fee)
            for p, w, lim in zip(spread.legs, priced.walks, limits, strict=True)
        )
        return Spread(
            spread.key,
            spread.kind,
            spread.group,
            (legs[0], legs[1]),
            priced.quantity,
            _bps(priced.gross, priced.cost),
            priced.net_bps,
            priced.fees,
            priced.buffer,
            priced.pnl,
            spread.opportunity_id,
            spread.since_ns,
        )

    # --- quotes --------------------------------------------------------------------------------
    def make(
        self,
        spread: Spread,
        purpose: str,
        now: int,
        check: Callable[[Spread], Refusal | None],
    ) -> Quote:
        """A quote for ``spread`` on the current books, at the detector's limits and size."""
        limits = (spread.legs[0].limit_price, spread.legs[1].limit_price)
        priced = self.price(spread, limits, spread.quantity)
        _, min_size = self._lot(spread)
        pays = spread.pays and self.pays(priced, min_size)
        sending = self.sending_spread(spread, priced, limits)
        refusal: Refusal | None
        if not spread.pays:
            refusal = Refusal("EDGE_GONE", "the spread does not pay after fees and slippage")
        elif not pays:
            refusal = Refusal("EDGE_GONE", f"at its limits the books give {priced.pnl:+.2f} for {priced.quantity:f}")
        else:
            refusal = check(sending)
        qid = f"Q-{self._next}"
        self._next += 1
        legs = tuple(
            QuoteLeg(p.venue, p.market, p.side, priced.quantity, lim, w.vwap, w.fee, full.filled)
            for p, w, lim, full in zip(
                spread.legs,
                priced.walks,
                limits,
                (
                    walk(self._books(p.venue, p.market), p.side, spread.quantity, lim, self._fees(p.venue, p.market))
                    for p, lim in zip(spread.legs, limits, strict=True)
                ),
                strict=True,
            )
        )
        quote = Quote(
            qid,
            purpose,
            spread.opportunity_id if spread.pays else None,
            spread,
            (legs[0], legs[1]),
            priced.fees,
            priced.pnl_before_buffer,
            priced.pnl,
            priced.net_bps,
            self.unwind_cost(spread.legs[1], priced.walks[1]),
            self.unwind_cost(spread.legs[0], priced.walks[0]),
            now,
            now + self.ttl_ns,
            refusal.code if refusal is not None else None,
            refusal.detail if refusal is not None else "",
        )
        self._quotes[qid] = quote
        while len(self._quotes) > KEEP_QUOTES:
            old, _ = self._quotes.popitem(last=False)
            self._used.discard(old)
        return quote

    def get(self, quote_id: str) -> Quote | None:
        return self._quotes.get(quote_id)

    def mark_sent(self, quote_id: str) -> None:
        self._used.add(quote_id)

    def recheck(self, quote: Quote, now: int) -> tuple[Spread, Priced] | Refusal:
        """What a confirm of ``quote`` would send now (at most its quantity, at its limits), or why
        nothing may be sent. Reads only."""
        if quote.quote_id in self._used:
            return Refusal("QUOTE_USED", f"{quote.quote_id} was already sent; a quote is sent at most once")
        if now > quote.expires_ns:
            age = (now - quote.created_ns) // NS_PER_MS
            return Refusal(
                "QUOTE_EXPIRED",
                f"{quote.quote_id} is {age} ms old (quotes last {self.ttl_ns // NS_PER_MS} ms): re-quote",
            )
        if quote.opportunity_id is None or quote.quantity <= 0:
            return Refusal("EDGE_GONE", f"{quote.quote_id} did not pay when it was made")
        limits = (quote.legs[0].limit_price, quote.legs[1].limit_price)
        priced = self._within_notional(quote.spread, limits, self.price(quote.spread, limits, quote.quantity))
        _, min_size = self._lot(quote.spread)
        if not self.pays(priced, min_size):
            return Refusal(
                "EDGE_GONE",
                f"at the quote's limits the books now give {priced.pnl:+.2f} ({priced.net_bps:+} bp) for "
                f"{priced.quantity:f}; quoted {quote.expected_pnl:+.2f} ({quote.net_bps:+} bp) for {quote.quantity:f}",
            )
        return self.sending_spread(quote.spread, priced, limits), priced
