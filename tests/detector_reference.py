"""The spread detector as it was before the hot-path work (commit 6a0fb90), kept verbatim as an oracle.

tests/unit/test_detector.py runs it beside :class:`arbtui.engine.detector.Detector` on the same books,
balances and clock and asserts that both emit exactly the same events (same types, same figures, same
Decimal representations): the fast detector must not change what it decides. Do not optimise this file.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from arbtui.config import Config
from arbtui.domain.book import BookSide, OrderBook
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
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Instruments, Listing
from arbtui.domain.money import BPS, ZERO, bps, floor_to_step
from arbtui.domain.orders import Side
from arbtui.engine.volatility import VolatilityEstimator

BookLookup = Callable[[str, str], "OrderBook | None"]
BalanceLookup = Callable[[str, str], Decimal]  # (venue, asset) -> free balance


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


@dataclass(frozen=True, slots=True)
class _LegCost:
    quantity: Decimal
    notional: Decimal
    fee: Decimal
    worst: Decimal | None


def _walk_cost(side: BookSide, quantity: Decimal, fees: FeeSchedule) -> _LegCost:
    """Notional and taker fee of taking ``quantity`` from ``side``, level by level."""
    remaining = quantity
    notional = fee = ZERO
    worst: Decimal | None = None
    for price, qty in side:
        if remaining <= 0:
            break
        take = qty if qty < remaining else remaining
        notional += price * take
        fee += fees.fee(price, take)
        remaining -= take
        worst = price
    return _LegCost(quantity - remaining, notional, fee, worst)


class ReferenceDetector:
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
        self._stale_ns = self._cfg.stale_after_ms * NS_PER_MS
        halflife = float(self._cfg.volatility_halflife_s)  # float ok: a time constant
        self._vol: dict[tuple[str, str], VolatilityEstimator] = {}
        self._specs: list[_PairSpec] = []
        self._by_market: dict[str, list[_PairSpec]] = {}
        self._current: dict[str, Spread] = {}
        self._ids = itertools.count(1)
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
        self._by_market = {}
        for sp in specs:
            self._add(sp)

    def _add(self, spec: _PairSpec) -> None:
        self._specs.append(spec)
        for lg in (spec.first, spec.second):
            lst = self._by_market.setdefault(lg.listing.market, [])
            if spec not in lst:
                lst.append(spec)

    # --- inputs ----------------------------------------------------------------------------
    def on_book(self, venue: str, market: str, book: OrderBook, now_ns: int) -> list[SpreadEvent]:
        """A book changed: update its volatility and re-price the spreads that use it."""
        vol = self._vol.get((venue, market))
        mid = book.mid()
        if vol is not None and mid is not None:
            vol.update(mid, now_ns)
        return self.evaluate_market(market, now_ns)

    def evaluate_market(self, market: str, now_ns: int) -> list[SpreadEvent]:
        out: list[SpreadEvent] = []
        for spec in self._by_market.get(market, ()):
            ev = self._evaluate(spec, now_ns)
            if ev is not None:
                out.append(ev)
        return out

    def evaluate_all(self, now_ns: int) -> list[SpreadEvent]:
        out: list[SpreadEvent] = []
        for spec in self._specs:
            ev = self._evaluate(spec, now_ns)
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

    def slippage_bps(self, spec_key: str) -> Decimal:
        spec = next(s for s in self._specs if s.key == spec_key)
        return self._slippage_bps(spec)

    def _slippage_bps(self, spec: _PairSpec) -> Decimal:
        dynamic = ZERO
        for lg in (spec.first, spec.second):
            vol = self._vol.get((lg.venue, lg.listing.market))
            if vol is not None:
                dynamic = max(dynamic, vol.move_bps(self._latency_ns))
        return self._cfg.slippage_floor_bps + self._cfg.volatility_multiplier * dynamic

    # --- pricing ---------------------------------------------------------------------------
    def _evaluate(self, spec: _PairSpec, now_ns: int) -> SpreadEvent | None:
        book1 = self._books(spec.first.venue, spec.first.listing.market)
        book2 = self._books(spec.second.venue, spec.second.listing.market)
        side1 = book1.taken_side(spec.first.side) if book1 is not None else None
        side2 = book2.taken_side(spec.second.side) if book2 is not None else None
        if book1 is None or book2 is None or side1 is None or side2 is None or not len(side1) or not len(side2):
            return self._unpriceable(spec, now_ns)
        slip = self._slippage_bps(spec) / BPS
        blocked = self._blocked(book1, book2, now_ns)
        quantity = ZERO if blocked else self._optimal_quantity(spec, side1, side2, slip)
        lot = max(spec.first.listing.lot_size, spec.second.listing.lot_size)
        min_size = max(spec.first.listing.min_size, spec.second.listing.min_size)
        quantity = floor_to_step(quantity, lot)
        touch = False
        if quantity < min_size or quantity <= 0:
            touch = True
            b1, b2 = side1.best(), side2.best()
            assert b1 is not None and b2 is not None
            quantity = max(min_size, lot, floor_to_step(min(b1[1], b2[1], spec.max_quantity), lot))
        c1 = _walk_cost(side1, quantity, spec.first.fees)
        c2 = _walk_cost(side2, quantity, spec.second.fees)
        if c1.quantity < quantity or c2.quantity < quantity:  # the touch is thinner than one lot pair
            quantity = min(c1.quantity, c2.quantity)
            if quantity <= 0:
                return None
            c1 = _walk_cost(side1, quantity, spec.first.fees)
            c2 = _walk_cost(side2, quantity, spec.second.fees)
        if c1.worst is None or c2.worst is None:
            return None
        if not touch:
            quantity, c1, c2 = self._fit_budget(spec, side1, side2, quantity, c1, c2, lot, min_size)
            if quantity <= 0:
                return None
        if c1.worst is None or c2.worst is None:  # for the type checker: fit_budget keeps the worst levels
            return None
        slippage = slip * (c1.notional + c2.notional)
        fees = c1.fee + c2.fee
        if spec.kind is SpreadKind.CROSS_VENUE:
            gross = c2.notional - c1.notional
            cost = c1.notional
        else:
            cost = c1.notional + c2.notional
            gross = spec.payout * quantity - cost
        pnl = gross - fees - slippage
        net_bps = bps(pnl, cost)
        pays = not touch and pnl > 0 and pnl >= self._risk.min_expected_pnl and net_bps >= self._cfg.min_net_edge_bps
        legs = (
            LegPlan(
                spec.first.venue,
                spec.first.listing.market,
                spec.first.side,
                quantity,
                c1.notional / quantity,
                c1.worst,
                c1.fee,
            ),
            LegPlan(
                spec.second.venue,
                spec.second.listing.market,
                spec.second.side,
                quantity,
                c2.notional / quantity,
                c2.worst,
                c2.fee,
            ),
        )
        prev = self._current.get(spec.key)
        same = prev is not None and prev.legs == legs and prev.expected_pnl == pnl
        if pays:
            if prev is not None and prev.opportunity_id is not None:
                if same:
                    return None
                spread = self._spread(
                    spec, legs, quantity, gross, cost, fees, slippage, pnl, prev.opportunity_id, prev.since_ns
                )
                self._current[spec.key] = spread
                return OpportunityUpdated(now_ns, spread)
            spread = self._spread(
                spec, legs, quantity, gross, cost, fees, slippage, pnl, f"O-{next(self._ids)}", now_ns
            )
            self._current[spec.key] = spread
            return OpportunityDetected(now_ns, spread)
        if prev is not None and prev.opportunity_id is not None:
            spread = self._spread(spec, legs, quantity, gross, cost, fees, slippage, pnl, None, now_ns)
            self._current[spec.key] = spread
            return OpportunityExpired(
                now_ns, prev.opportunity_id, spread, blocked or "edge no longer beats fees and slippage"
            )
        if same:
            return None
        since = prev.since_ns if prev is not None else now_ns
        spread = self._spread(spec, legs, quantity, gross, cost, fees, slippage, pnl, None, since)
        self._current[spec.key] = spread
        return SpreadChanged(now_ns, spread)

    def _unpriceable(self, spec: _PairSpec, now_ns: int) -> SpreadEvent | None:
        """A book or the side a leg needs is missing: a paying spread stops paying at once.

        Its last figures stay on screen (there is nothing newer to show), without an id.
        """
        prev = self._current.get(spec.key)
        if prev is None or prev.opportunity_id is None:
            return None
        spread = replace(prev, opportunity_id=None, since_ns=now_ns)
        self._current[spec.key] = spread
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
        oid: str | None,
        since: int,
    ) -> Spread:
        return Spread(
            spec.key,
            spec.kind,
            spec.group,
            legs,
            quantity,
            bps(gross, cost),
            bps(pnl, cost),
            fees,
            slippage,
            pnl,
            oid,
            since,
        )

    def _fit_budget(
        self,
        spec: _PairSpec,
        side1: BookSide,
        side2: BookSide,
        quantity: Decimal,
        c1: _LegCost,
        c2: _LegCost,
        lot: Decimal,
        min_size: Decimal,
    ) -> tuple[Decimal, _LegCost, _LegCost]:
        """Shrink the size until each venue can pay for it at the legs' limit prices, fees included:
        an IOC at the worst level is what the venue reserves, not the VWAP the walk used."""
        for _ in range(4):
            assert c1.worst is not None and c2.worst is not None
            per_unit1 = c1.worst + spec.first.fees.taker_fee_per_unit(c1.worst)
            budget1 = self._balances(spec.first.venue, spec.first.asset)
            if spec.second.side is Side.BUY:
                per_unit2 = c2.worst + spec.second.fees.taker_fee_per_unit(c2.worst)
                if spec.first.venue == spec.second.venue and spec.first.asset == spec.second.asset:
                    cap = budget1 / (per_unit1 + per_unit2)
                else:
                    cap = min(budget1 / per_unit1, self._balances(spec.second.venue, spec.second.asset) / per_unit2)
            else:
                cap = min(budget1 / per_unit1, self._balances(spec.second.venue, spec.second.asset))
            if quantity <= cap:
                return quantity, c1, c2
            quantity = floor_to_step(cap, lot)
            if quantity < min_size or quantity <= 0:
                return ZERO, c1, c2
            c1 = _walk_cost(side1, quantity, spec.first.fees)
            c2 = _walk_cost(side2, quantity, spec.second.fees)
        return quantity, c1, c2

    def _blocked(self, book1: OrderBook, book2: OrderBook, now_ns: int) -> str:
        for book in (book1, book2):
            if book.is_crossed():
                return "book crossed"
            if book.is_stale(now_ns, self._stale_ns):
                return "book stale"
        return ""

    def _optimal_quantity(self, spec: _PairSpec, side1: BookSide, side2: BookSide, slip: Decimal) -> Decimal:
        """Walk both books while one more unit still adds profit and no limit binds."""
        first, second = spec.first, spec.second
        qty = ZERO
        cap = spec.max_quantity
        notional_left = notional_left2 = self._risk.max_notional
        budget1 = self._balances(first.venue, first.asset)
        budget2 = self._balances(second.venue, second.asset)
        shared_budget = second.side is Side.BUY and first.venue == second.venue and first.asset == second.asset
        it1: Iterator[tuple[Decimal, Decimal]] = iter(side1)
        it2: Iterator[tuple[Decimal, Decimal]] = iter(side2)
        lvl1 = next(it1, None)
        lvl2 = next(it2, None)
        left1 = lvl1[1] if lvl1 else ZERO
        left2 = lvl2[1] if lvl2 else ZERO
        while lvl1 is not None and lvl2 is not None and qty < cap:
            p1, p2 = lvl1[0], lvl2[0]
            unit_cost1 = p1 + first.fees.taker_fee_per_unit(p1)
            if second.side is Side.SELL:
                unit2 = p2 - second.fees.taker_fee_per_unit(p2)
                margin = unit2 - unit_cost1 - slip * (p1 + p2)
            else:
                unit2 = p2 + second.fees.taker_fee_per_unit(p2)
                margin = spec.payout - unit_cost1 - unit2 - slip * (p1 + p2)
            if margin <= 0:
                break
            level_step = min(left1, left2)
            # Limits that bind inside a level: size, notional (on the buy leg), each venue's balance.
            # Each leg's notional is capped (a sell leg's notional is the larger one of a paying spread).
            limit_step = min(cap - qty, notional_left / p1, notional_left2 / p2)
            if shared_budget:
                limit_step = min(limit_step, budget1 / (unit_cost1 + unit2))
            else:
                limit_step = min(limit_step, budget1 / unit_cost1)
                limit_step = min(limit_step, budget2 / unit2 if second.side is Side.BUY else budget2)
            step = min(level_step, limit_step)
            if step <= 0:
                break
            qty += step
            if limit_step < level_step:
                break
            notional_left -= step * p1
            notional_left2 -= step * p2
            if shared_budget:
                budget1 -= step * (unit_cost1 + unit2)
            else:
                budget1 -= step * unit_cost1
                budget2 -= step * unit2 if second.side is Side.BUY else step
            left1 -= step
            left2 -= step
            if left1 <= 0:
                lvl1 = next(it1, None)
                left1 = lvl1[1] if lvl1 else ZERO
            if left2 <= 0:
                lvl2 = next(it2, None)
                left2 = lvl2[1] if lvl2 else ZERO
        return qty
