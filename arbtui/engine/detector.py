"""The spread detector: what would pay right now, after fees and slippage, at an executable size.

Whenever a book changes, only the spreads that involve that book are re-priced. Two kinds:

- **Cross-venue**: for every ordered pair of venues (A, B) quoting a market, buy on A's asks and
  sell on B's bids, equal quantities.
- **Complement**: for a binary event, buy YES on A and NO on B (A may equal B) for less than the
  1.00 the pair pays out, equal shares.

For each, the two books are walked together level by level. The marginal profit of one more unit
is what the last unit sells for (or pays out) minus what it costs, net of both venues' taker fees
and of the slippage buffer; it falls as the walk goes deeper, so the size that maximises expected
profit is where it reaches zero, or where a limit binds first: the market's ``max_quantity``, the
risk ``max_notional``, or the balances on each venue. The size is rounded down to a lot valid on
both listings, and the figures are recomputed exactly at that size.

The slippage buffer per leg is a configured floor plus the market's recent mid-price volatility
over the expected execution latency (times a multiplier), charged on each leg's notional: an
estimate of how far prices move between seeing the spread and both orders arriving.

A spread that pays carries an opportunity id for as long as it keeps paying; one that does not is
still priced at the touch, so the operator sees the whole market and how far each spread is from
paying. All money is Decimal.

The hot path (every book update of a market re-prices its spreads, up to tens of thousands of times
a second):

- an evaluation reads each book side lazily, best level first, only as deep as a walk goes (the
  walk stops where one more unit no longer pays, so a spread that does not pay reads one level);
- it remembers what it read (those levels, the slippage, the blocked state, both balances): when
  none of that changed since the last evaluation, neither can the result, and the evaluation stops
  there. A frame that moved a level deeper than the walk went costs a comparison, not a walk, and a
  book whose identity and ``sequence`` (the count of changes applied to it) are the ones last seen
  is not compared at all;
- the per-unit cost of a level after the taker fee is computed once per price and kept; the
  volatility estimate is only fed a quote whose best bid or ask moved (the same mid changes nothing);
- the arithmetic itself is unchanged, operation for operation, so the figures are the same Decimals
  (values and representations) as before: ``tests/detector_reference.py`` is the old detector, and
  the tests run both side by side.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from arbtui.config import Config
from arbtui.domain.book import BookSide, Level, OrderBook
from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.events import (
    LegPlan,
    OpportunityDetected,
    OpportunityExpired,
    OpportunityUpdated,
    Spread,
    SpreadChanged,
    SpreadEvent,
    SpreadKind,
)
from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Instruments, Listing
from arbtui.domain.money import BPS, ONE, ZERO, floor_to_step
from arbtui.domain.orders import Side
from arbtui.engine.volatility import VolatilityEstimator

BookLookup = Callable[[str, str], "OrderBook | None"]
BalanceLookup = Callable[[str, str], Decimal]  # (venue, asset) -> free balance

CENT = Decimal("0.01")
UNIT_CACHE_MAX = 4096  # prices kept per fee schedule and direction; cleared when full (prices drift)

# What walking one side returns: (quantity filled, notional, taker fee, worst price reached).
_Cost = tuple[Decimal, Decimal, Decimal, Decimal | None]


@dataclass(frozen=True, slots=True)
class _LegSpec:
    venue: str
    listing: Listing
    side: Side
    fees: FeeSchedule
    asset: str  # what the leg spends: quote for a buy, base for a sell


@dataclass(frozen=True, slots=True)
class _PairSpec:
    key: str
    kind: SpreadKind
    group: str
    first: _LegSpec  # always a buy
    second: _LegSpec  # a sell (cross-venue) or a buy (complement)
    max_quantity: Decimal
    payout: Decimal  # complement only


class _Prefix:
    """The best levels of one book side, read lazily, remembering what an evaluation read.

    Levels come from the side's iterator one at a time, best first, and only when a walk asks for
    them, so ``levels`` is exactly what was read (a walk that stops at the touch reads one level).
    ``short``: a walk asked for a level past the last one, so the result also depends on the side
    having exactly ``len(side)`` levels.
    """

    __slots__ = ("side", "it", "levels", "short")

    def __init__(self, side: BookSide) -> None:
        self.side = side
        self.it = iter(side)
        self.levels: list[Level] = []
        self.short = False

    def at(self, i: int) -> Level | None:
        levels = self.levels
        while len(levels) <= i:
            level = next(self.it, None)
            if level is None:
                self.short = True
                return None
            levels.append(level)
        return levels[i]


class _Priced:
    """One spread's constants for pricing, and what its last full evaluation read.

    If everything the last evaluation read is equal (by value) now, it would price the same figures,
    and an evaluation that finds the same figures emits nothing: the walk is skipped. (The spread it
    left is still current: only a full evaluation or ``_unpriceable``, which forgets this, changes it.)
    """

    __slots__ = (
        "spec",
        "venue1",
        "market1",
        "asset1",
        "venue2",
        "market2",
        "asset2",
        "cross",
        "asks1",
        "asks2",
        "lot",
        "min_size",
        "selling",
        "shared_budget",
        "vol1",
        "vol2",
        "units1",
        "units2",
        "moves",
        "slip",
        "valid",
        "read_slip",
        "blocked",
        "budget1",
        "budget2",
        "levels1",
        "len1",
        "levels2",
        "len2",
        "book1",
        "seq1",
        "crossed1",
        "book2",
        "seq2",
        "crossed2",
    )

    def __init__(
        self,
        spec: _PairSpec,
        vol1: VolatilityEstimator | None,
        vol2: VolatilityEstimator | None,
        units1: dict[Decimal, Decimal],
        units2: dict[Decimal, Decimal],
    ) -> None:
        first, second = spec.first, spec.second
        self.spec = spec
        self.venue1, self.market1, self.asset1 = first.venue, first.listing.market, first.asset
        self.venue2, self.market2, self.asset2 = second.venue, second.listing.market, second.asset
        self.cross = spec.kind is SpreadKind.CROSS_VENUE
        self.asks1 = first.side is Side.BUY  # a buy takes the asks (OrderBook.taken_side)
        self.asks2 = second.side is Side.BUY
        self.lot = max(first.listing.lot_size, second.listing.lot_size)
        self.min_size = max(first.listing.min_size, second.listing.min_size)
        self.selling = second.side is Side.SELL
        self.shared_budget = not self.selling and first.venue == second.venue and first.asset == second.asset
        self.vol1 = vol1
        self.vol2 = vol2
        self.units1 = units1  # price -> price + the first leg's taker fee on one unit
        self.units2 = units2  # price -> price - (sell) or + (buy) the second leg's taker fee on one unit
        self.moves: tuple[Decimal, Decimal] | None = None  # the volatility moves ``slip`` was computed from
        self.slip = ZERO  # the current buffer (a fraction), for ``moves``
        self.valid = False  # whether the fields below describe the last evaluation
        self.read_slip = ZERO  # the buffer it priced with
        self.blocked = ""
        self.budget1 = ZERO
        self.budget2 = ZERO
        self.levels1: list[Level] = []
        self.len1 = -1  # -1, or the side's length when the evaluation read past its last level
        self.levels2: list[Level] = []
        self.len2 = -1
        # Each leg's book as last seen, by identity and change count (``OrderBook.sequence`` counts every
        # change a feed applies): while both are the same, the side's levels and crossed state are too.
        self.book1: OrderBook | None = None
        self.seq1 = -1
        self.crossed1 = False
        self.book2: OrderBook | None = None
        self.seq2 = -1
        self.crossed2 = False

    def remember(
        self,
        slip: Decimal,
        blocked: str,
        budget1: Decimal,
        budget2: Decimal,
        p1: _Prefix,
        p2: _Prefix,
    ) -> None:
        self.valid = True
        self.read_slip = slip
        self.blocked = blocked
        self.budget1 = budget1
        self.budget2 = budget2
        self.levels1 = p1.levels
        self.len1 = len(p1.side) if p1.short else -1
        self.levels2 = p2.levels
        self.len2 = len(p2.side) if p2.short else -1


def _walk(prefix: _Prefix, quantity: Decimal, fees: FeeSchedule) -> _Cost:
    """Notional and taker fee of taking ``quantity`` from a side, level by level.

    The fee is ``FeeSchedule.fee(price, take)`` written out (same operations, same order)."""
    remaining = quantity
    notional = fee = ZERO
    worst: Decimal | None = None
    rate = fees.taker_rate
    no_fee = rate == ZERO
    on_notional = fees.model is FeeModel.NOTIONAL
    levels = prefix.levels
    known = len(levels)
    i = 0
    while remaining > 0:
        if i < known:
            price, qty = levels[i]
        else:
            level = prefix.at(i)
            if level is None:
                break
            price, qty = level
            known = len(levels)  # at() appended to the same list
        take = qty if qty < remaining else remaining
        notional += price * take
        if no_fee:
            fee += ZERO
        elif on_notional:
            fee += price * take * rate
        else:
            fee += take * rate * price * (ONE - price)
        remaining -= take
        worst = price
        i += 1
    return quantity - remaining, notional, fee, worst


def _bps(numerator: Decimal, denominator: Decimal) -> Decimal:
    """:func:`arbtui.domain.money.bps`, the same operations (without building its quantum each call)."""
    if denominator == 0:
        return ZERO
    return (numerator / denominator * BPS).quantize(CENT, ROUND_HALF_EVEN)


class Detector:
    """Prices every configured spread; emits one event per spread whose figures changed."""

    def __init__(
        self,
        config: Config,
        instruments: Instruments,
        fees: Mapping[str, FeeSchedule],
        books: BookLookup,
        balances: BalanceLookup,
    ) -> None:
        self._cfg = config.detector
        self._risk = config.risk
        self._books = books
        self._balances = balances
        self._latency_ns = self._cfg.expected_latency_ms * NS_PER_MS
        self._min_pnl = self._risk.min_expected_pnl
        self._min_edge_bps = self._cfg.min_net_edge_bps
        self._stale_ns = self._cfg.stale_after_ms * NS_PER_MS
        halflife = float(self._cfg.volatility_halflife_s)  # float ok: a time constant
        self._vol: dict[tuple[str, str], VolatilityEstimator] = {}
        self._quotes: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}  # best bid and ask last observed
        self._specs: list[_PairSpec] = []
        self._priced: dict[str, _Priced] = {}
        self._by_market: dict[str, list[_Priced]] = {}
        self._current: dict[str, Spread] = {}
        # (fee schedule, buying?) -> price -> price +/- the taker fee on one unit at that price
        self._units: dict[tuple[FeeSchedule, bool], dict[Decimal, Decimal]] = {}
        self._ids = itertools.count(1)
        self.evaluations = 0  # spreads priced in full
        self.unchanged = 0  # evaluations skipped: nothing they read had changed
        max_qty = {m.id: m.max_quantity for m in config.markets}

        def leg(venue: str, market: str, side: Side) -> _LegSpec:
            lst = instruments.listing(venue, market)
            mk = instruments.markets[market]
            return _LegSpec(venue, lst, side, fees[venue], mk.quote if side is Side.BUY else mk.base)

        for market in instruments.markets.values():
            venues = instruments.venues_for_market(market.id)
            for v in venues:
                self._vol[(v, market.id)] = VolatilityEstimator(halflife)
            for a, b in itertools.permutations(venues, 2):
                self._add(
                    _PairSpec(
                        f"{market.id} {a}>{b}",
                        SpreadKind.CROSS_VENUE,
                        market.id,
                        leg(a, market.id, Side.BUY),
                        leg(b, market.id, Side.SELL),
                        max_qty[market.id],
                        ZERO,
                    )
                )
        for event, outcomes in sorted(instruments.events().items()):
            yes, no = outcomes["YES"], outcomes["NO"]
            for a in instruments.venues_for_market(yes.id):
                for b in instruments.venues_for_market(no.id):
                    self._add(
                        _PairSpec(
                            f"{event} {a}:YES+{b}:NO",
                            SpreadKind.COMPLEMENT,
                            event,
                            leg(a, yes.id, Side.BUY),
                            leg(b, no.id, Side.BUY),
                            min(max_qty[yes.id], max_qty[no.id]),
                            yes.payout,
                        )
                    )

    def set_fees(self, venue: str, market: str, fees: FeeSchedule) -> None:
        """The account's fee schedule for ``market`` on ``venue`` (a venue's live rates, once connected)."""

        def fix(lg: _LegSpec) -> _LegSpec:
            return replace(lg, fees=fees) if lg.venue == venue and lg.listing.market == market else lg

        specs = [replace(sp, first=fix(sp.first), second=fix(sp.second)) for sp in self._specs]
        if specs == self._specs:
            return
        self._specs = []
        self._priced = {}  # what the evaluations remembered was priced with the old fees
        self._by_market = {}
        for sp in specs:
            self._add(sp)

    def _add(self, spec: _PairSpec) -> None:
        self._specs.append(spec)
        first, second = spec.first, spec.second
        priced = _Priced(
            spec,
            self._vol.get((first.venue, first.listing.market)),
            self._vol.get((second.venue, second.listing.market)),
            self._units.setdefault((first.fees, True), {}),
            self._units.setdefault((second.fees, second.side is Side.BUY), {}),
        )
        self._priced[spec.key] = priced
        for lg in (first, second):
            lst = self._by_market.setdefault(lg.listing.market, [])
            if priced not in lst:
                lst.append(priced)

    # --- inputs ----------------------------------------------------------------------------
    def on_book(self, venue: str, market: str, book: OrderBook, now_ns: int) -> list[SpreadEvent]:
        """A book changed: update its volatility and re-price the spreads that use it."""
        self.observe(venue, market, book, now_ns)
        return self.evaluate_market(market, now_ns)

    def prices(self, market: str) -> bool:
        """Whether any spread uses ``market`` (a market listed on one venue only is not priced)."""
        return market in self._by_market

    def observe(self, venue: str, market: str, book: OrderBook, now_ns: int) -> None:
        """A book changed: update its volatility (every update counts), without re-pricing anything."""
        key = (venue, market)
        vol = self._vol.get(key)
        if vol is None:
            return
        bid, ask = book.bids.best(), book.asks.best()
        if bid is None or ask is None:
            return
        quote = (bid[0], ask[0])
        if quote == self._quotes.get(key):
            return  # the same mid: the estimator would ignore it
        self._quotes[key] = quote
        vol.update((quote[0] + quote[1]) / 2, now_ns)  # OrderBook.mid(), from the best levels just read

    def evaluate_market(self, market: str, now_ns: int) -> list[SpreadEvent]:
        """Re-price the spreads that use ``market``; one event per spread whose figures changed."""
        out: list[SpreadEvent] = []
        for priced in self._by_market.get(market, ()):
            ev = self._evaluate(priced, now_ns)
            if ev is not None:
                out.append(ev)
        return out

    def price_market(self, market: str, now_ns: int, emit: Callable[[SpreadEvent], None]) -> None:
        """:meth:`evaluate_market`, handing each event to ``emit`` as soon as its spread is priced
        (the same events in the same order; the first does not wait for the other spreads)."""
        for priced in self._by_market.get(market, ()):
            ev = self._evaluate(priced, now_ns)
            if ev is not None:
                emit(ev)

    def evaluate_all(self, now_ns: int) -> list[SpreadEvent]:
        out: list[SpreadEvent] = []
        for spec in self._specs:
            ev = self._evaluate(self._priced[spec.key], now_ns)
            if ev is not None:
                out.append(ev)
        return out

    # --- reading ---------------------------------------------------------------------------
    def spreads(self) -> list[Spread]:
        """Every priced spread, best net edge first."""
        return sorted(self._current.values(), key=lambda s: (-s.net_bps, s.key))

    def spread(self, key: str) -> Spread | None:
        return self._current.get(key)

    def find_opportunity(self, opportunity_id: str) -> Spread | None:
        """The current spread carrying ``opportunity_id``, or None once it stopped paying."""
        for spread in self._current.values():
            if spread.opportunity_id == opportunity_id:
                return spread
        return None

    def payout(self, spec_key: str) -> Decimal:
        """What one matched unit of a complement spread pays at resolution (cross-venue: zero)."""
        spec = self._priced[spec_key].spec
        return spec.payout if spec.kind is SpreadKind.COMPLEMENT else ZERO

    def slippage_bps(self, spec_key: str) -> Decimal:
        return self._slippage_bps(self._priced[spec_key])

    def _slippage_bps(self, priced: _Priced) -> Decimal:
        dynamic = ZERO
        for vol in (priced.vol1, priced.vol2):
            if vol is not None:
                dynamic = max(dynamic, vol.move_bps(self._latency_ns))
        return self._cfg.slippage_floor_bps + self._cfg.volatility_multiplier * dynamic

    def _slip(self, priced: _Priced) -> Decimal:
        """The slippage buffer as a fraction, recomputed only when a volatility estimate moved."""
        vol1, vol2 = priced.vol1, priced.vol2
        moves = (
            vol1.move_bps(self._latency_ns) if vol1 is not None else ZERO,
            vol2.move_bps(self._latency_ns) if vol2 is not None else ZERO,
        )
        known = priced.moves
        if known is None or known[0] is not moves[0] or known[1] is not moves[1]:
            priced.moves = moves
            priced.slip = self._slippage_bps(priced) / BPS
        return priced.slip

    # --- pricing ---------------------------------------------------------------------------
    def _evaluate(self, priced: _Priced, now_ns: int) -> SpreadEvent | None:
        book1 = self._books(priced.venue1, priced.market1)
        book2 = self._books(priced.venue2, priced.market2)
        if book1 is None or book2 is None:
            return self._unpriceable(priced, now_ns)
        side1 = book1.asks if priced.asks1 else book1.bids
        side2 = book2.asks if priced.asks2 else book2.bids
        if not len(side1) or not len(side2):
            return self._unpriceable(priced, now_ns)
        seq1, seq2 = book1.sequence, book2.sequence
        moved1 = book1 is not priced.book1 or seq1 != priced.seq1
        moved2 = book2 is not priced.book2 or seq2 != priced.seq2
        crossed1 = book1.is_crossed() if moved1 else priced.crossed1
        crossed2 = book2.is_crossed() if moved2 else priced.crossed2
        priced.book1, priced.seq1, priced.crossed1 = book1, seq1, crossed1
        priced.book2, priced.seq2, priced.crossed2 = book2, seq2, crossed2
        # Pricing is blocked by a crossed or stale book (the first book first, crossed before stale).
        stale_ns = self._stale_ns
        updated1, updated2 = book1.last_update_ns, book2.last_update_ns
        if crossed1:
            blocked = "book crossed"
        elif updated1 is None or now_ns - updated1 > stale_ns:
            blocked = "book stale"
        elif crossed2:
            blocked = "book crossed"
        elif updated2 is None or now_ns - updated2 > stale_ns:
            blocked = "book stale"
        else:
            blocked = ""
        slip = self._slip(priced)
        budget1 = self._balances(priced.venue1, priced.asset1)
        budget2 = self._balances(priced.venue2, priced.asset2)
        if (
            priced.valid
            and priced.read_slip == slip
            and priced.blocked == blocked
            and priced.budget1 == budget1
            and priced.budget2 == budget2
            and (
                not moved1
                or ((priced.len1 < 0 or len(side1) == priced.len1) and side1.top(len(priced.levels1)) == priced.levels1)
            )
            and (
                not moved2
                or ((priced.len2 < 0 or len(side2) == priced.len2) and side2.top(len(priced.levels2)) == priced.levels2)
            )
        ):
            # Everything the last evaluation read is equal (by value): it would price the same figures,
            # and an evaluation that finds the same figures emits nothing.
            self.unchanged += 1
            return None
        self.evaluations += 1
        p1, p2 = _Prefix(side1), _Prefix(side2)
        event = self._price(priced, p1, p2, slip, blocked, budget1, budget2, now_ns)
        priced.remember(slip, blocked, budget1, budget2, p1, p2)
        return event

    def _price(
        self,
        priced: _Priced,
        p1: _Prefix,
        p2: _Prefix,
        slip: Decimal,
        blocked: str,
        budget1: Decimal,
        budget2: Decimal,
        now_ns: int,
    ) -> SpreadEvent | None:
        spec = priced.spec
        first, second = spec.first, spec.second
        quantity = ZERO if blocked else self._optimal_quantity(priced, p1, p2, slip, budget1, budget2)
        lot = priced.lot
        min_size = priced.min_size
        quantity = (quantity / lot).to_integral_value(ROUND_FLOOR) * lot  # floor_to_step
        touch = False
        if quantity < min_size or quantity <= 0:
            touch = True
            b1, b2 = p1.at(0), p2.at(0)
            assert b1 is not None and b2 is not None
            quantity = max(min_size, lot, floor_to_step(min(b1[1], b2[1], spec.max_quantity), lot))
        c1 = _walk(p1, quantity, first.fees)
        c2 = _walk(p2, quantity, second.fees)
        if c1[0] < quantity or c2[0] < quantity:  # the touch is thinner than one lot pair
            quantity = min(c1[0], c2[0])
            if quantity <= 0:
                return None
            c1 = _walk(p1, quantity, first.fees)
            c2 = _walk(p2, quantity, second.fees)
        if c1[3] is None or c2[3] is None:
            return None
        if not touch:
            quantity, c1, c2 = self._fit_budget(priced, p1, p2, quantity, c1, c2, budget1, budget2)
            if quantity <= 0:
                return None
        _, notional1, fee1, worst1 = c1
        _, notional2, fee2, worst2 = c2
        if worst1 is None or worst2 is None:  # for the type checker: fit_budget keeps the worst levels
            return None
        slippage = slip * (notional1 + notional2)
        fees = fee1 + fee2
        if priced.cross:
            gross = notional2 - notional1
            cost = notional1
        else:
            cost = notional1 + notional2
            gross = spec.payout * quantity - cost
        pnl = gross - fees - slippage
        net_bps = _bps(pnl, cost)
        pays = not touch and pnl > 0 and pnl >= self._min_pnl and net_bps >= self._min_edge_bps
        vwap1, vwap2 = notional1 / quantity, notional2 / quantity
        prev = self._current.get(spec.key)
        # ``prev.legs == legs and prev.expected_pnl == pnl`` field by field (a spread's legs keep their venue,
        # market and side), without building the legs when nothing changed.
        same = False
        if prev is not None and prev.expected_pnl == pnl:
            leg1, leg2 = prev.legs
            same = (
                leg1.quantity == quantity
                and leg1.vwap == vwap1
                and leg1.limit_price == worst1
                and leg1.fee == fee1
                and leg2.quantity == quantity
                and leg2.vwap == vwap2
                and leg2.limit_price == worst2
                and leg2.fee == fee2
            )
        if same and pays == (prev is not None and prev.opportunity_id is not None):
            return None  # the same figures, paying (or not) as before: nothing to say
        legs = (
            LegPlan(priced.venue1, priced.market1, first.side, quantity, vwap1, worst1, fee1),
            LegPlan(priced.venue2, priced.market2, second.side, quantity, vwap2, worst2, fee2),
        )
        if pays:
            if prev is not None and prev.opportunity_id is not None:
                if same:
                    return None
                spread = self._spread(
                    spec, legs, quantity, gross, cost, fees, slippage, pnl, net_bps, prev.opportunity_id, prev.since_ns
                )
                self._current[spec.key] = spread
                return OpportunityUpdated(now_ns, spread)
            spread = self._spread(
                spec, legs, quantity, gross, cost, fees, slippage, pnl, net_bps, f"O-{next(self._ids)}", now_ns
            )
            self._current[spec.key] = spread
            return OpportunityDetected(now_ns, spread)
        if prev is not None and prev.opportunity_id is not None:
            spread = self._spread(spec, legs, quantity, gross, cost, fees, slippage, pnl, net_bps, None, now_ns)
            self._current[spec.key] = spread
            return OpportunityExpired(
                now_ns, prev.opportunity_id, spread, blocked or "edge no longer beats fees and slippage"
            )
        if same:
            return None
        since = prev.since_ns if prev is not None else now_ns
        spread = self._spread(spec, legs, quantity, gross, cost, fees, slippage, pnl, net_bps, None, since)
        self._current[spec.key] = spread
        return SpreadChanged(now_ns, spread)

    def _unpriceable(self, priced: _Priced, now_ns: int) -> SpreadEvent | None:
        """A book or the side a leg needs is missing: a paying spread stops paying at once.

        Its last figures stay on screen (there is nothing newer to show), without an id.
        """
        priced.valid = False
        key = priced.spec.key
        prev = self._current.get(key)
        if prev is None or prev.opportunity_id is None:
            return None
        spread = replace(prev, opportunity_id=None, since_ns=now_ns)
        self._current[key] = spread
        return OpportunityExpired(now_ns, prev.opportunity_id, spread, "book empty on one side")

    def _spread(
        self,
        spec: _PairSpec,
        legs: tuple[LegPlan, LegPlan],
        quantity: Decimal,
        gross: Decimal,
        cost: Decimal,
        fees: Decimal,
        slippage: Decimal,
        pnl: Decimal,
        net_bps: Decimal,  # bps(pnl, cost), already computed by the caller
        oid: str | None,
        since: int,
    ) -> Spread:
        return Spread(
            spec.key,
            spec.kind,
            spec.group,
            legs,
            quantity,
            _bps(gross, cost),
            net_bps,
            fees,
            slippage,
            pnl,
            oid,
            since,
        )

    def _fit_budget(
        self,
        priced: _Priced,
        p1: _Prefix,
        p2: _Prefix,
        quantity: Decimal,
        c1: _Cost,
        c2: _Cost,
        budget1: Decimal,
        budget2: Decimal,
    ) -> tuple[Decimal, _Cost, _Cost]:
        """Shrink the size until each venue can pay for it at the legs' limit prices, fees included:
        an IOC at the worst level is what the venue reserves, not the VWAP the walk used."""
        first, second = priced.spec.first, priced.spec.second
        units1, units2 = priced.units1, priced.units2
        for _ in range(4):
            worst1, worst2 = c1[3], c2[3]
            assert worst1 is not None and worst2 is not None
            per_unit1 = units1.get(worst1)
            if per_unit1 is None:
                per_unit1 = units1[worst1] = worst1 + first.fees.taker_fee_per_unit(worst1)
            if second.side is Side.BUY:
                per_unit2 = units2.get(worst2)
                if per_unit2 is None:
                    per_unit2 = units2[worst2] = worst2 + second.fees.taker_fee_per_unit(worst2)
                if first.venue == second.venue and first.asset == second.asset:
                    cap = budget1 / (per_unit1 + per_unit2)
                else:
                    cap = min(budget1 / per_unit1, budget2 / per_unit2)
            else:
                cap = min(budget1 / per_unit1, budget2)
            if quantity <= cap:
                return quantity, c1, c2
            quantity = floor_to_step(cap, priced.lot)
            if quantity < priced.min_size or quantity <= 0:
                return ZERO, c1, c2
            c1 = _walk(p1, quantity, first.fees)
            c2 = _walk(p2, quantity, second.fees)
        return quantity, c1, c2

    def _optimal_quantity(
        self, priced: _Priced, p1: _Prefix, p2: _Prefix, slip: Decimal, budget1: Decimal, budget2: Decimal
    ) -> Decimal:
        """Walk both books while one more unit still adds profit and no limit binds.

        ``min`` is written out: ``b if b < a else a`` is what ``min(a, b)`` returns (the first of equals)."""
        spec = priced.spec
        fees1, fees2 = spec.first.fees, spec.second.fees
        selling = priced.selling
        shared_budget = priced.shared_budget
        payout = spec.payout
        units1, units2 = priced.units1, priced.units2
        if len(units1) > UNIT_CACHE_MAX:
            units1.clear()  # prices drift: forget the old ones
        if len(units2) > UNIT_CACHE_MAX:
            units2.clear()
        qty = ZERO
        cap = spec.max_quantity
        notional_left = notional_left2 = self._risk.max_notional
        i1 = i2 = 0
        lvl1 = p1.at(0)
        lvl2 = p2.at(0)
        left1 = lvl1[1] if lvl1 else ZERO
        left2 = lvl2[1] if lvl2 else ZERO
        while lvl1 is not None and lvl2 is not None and qty < cap:
            price1, price2 = lvl1[0], lvl2[0]
            unit_cost1 = units1.get(price1)
            if unit_cost1 is None:
                unit_cost1 = units1[price1] = price1 + fees1.taker_fee_per_unit(price1)
            unit2 = units2.get(price2)
            if selling:
                if unit2 is None:
                    unit2 = units2[price2] = price2 - fees2.taker_fee_per_unit(price2)
                margin = unit2 - unit_cost1 - slip * (price1 + price2)
            else:
                if unit2 is None:
                    unit2 = units2[price2] = price2 + fees2.taker_fee_per_unit(price2)
                margin = payout - unit_cost1 - unit2 - slip * (price1 + price2)
            if margin <= 0:
                break
            level_step = left2 if left2 < left1 else left1
            # Limits that bind inside a level: size, notional (on the buy leg), each venue's balance.
            # Each leg's notional is capped (a sell leg's notional is the larger one of a paying spread).
            limit_step = cap - qty
            x = notional_left / price1
            if x < limit_step:
                limit_step = x
            x = notional_left2 / price2
            if x < limit_step:
                limit_step = x
            if shared_budget:
                x = budget1 / (unit_cost1 + unit2)
                if x < limit_step:
                    limit_step = x
            else:
                x = budget1 / unit_cost1
                if x < limit_step:
                    limit_step = x
                x = budget2 if selling else budget2 / unit2
                if x < limit_step:
                    limit_step = x
            binds = limit_step < level_step
            step = limit_step if binds else level_step
            if step <= 0:
                break
            qty += step
            if binds:
                break
            notional_left -= step * price1
            notional_left2 -= step * price2
            if shared_budget:
                budget1 -= step * (unit_cost1 + unit2)
            else:
                budget1 -= step * unit_cost1
                budget2 -= step if selling else step * unit2
            left1 -= step
            left2 -= step
            if left1 <= 0:
                i1 += 1
                lvl1 = p1.at(i1)
                left1 = lvl1[1] if lvl1 else ZERO
            if left2 <= 0:
                i2 += 1
                lvl2 = p2.at(i2)
                left2 = lvl2[1] if lvl2 else ZERO
        return qty
