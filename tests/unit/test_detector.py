"""The spread detector on small books built by hand, every figure worked out by hand below.

Two venues A and B list X-USD (tick 0.1, lot 0.01). The dynamic part of the slippage buffer is
switched off (``volatility_multiplier = 0``) so the buffer is exactly the configured floor, and
every expected number is written out as arithmetic in a comment and compared with Decimal
equality.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from arbtui.config import Config, parse_config
from arbtui.domain.book import OrderBook
from arbtui.domain.events import (
    OpportunityDetected,
    OpportunityExpired,
    OpportunityUpdated,
    SpreadChanged,
    SpreadEvent,
    SpreadKind,
)
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.money import ZERO
from arbtui.domain.orders import Side
from arbtui.engine.detector import Detector
from tests.detector_reference import ReferenceDetector

D = Decimal
X = "X-USD"
AB = "X-USD A>B"  # buy on A, sell on B
BA = "X-USD B>A"
BIG = D("1000000000")
MS = 1_000_000

Levels = Sequence[tuple[str, str]]


def cross_config(
    *,
    fee_a: str = "0.001",
    fee_b: str = "0.001",
    slip: str = "1",
    max_quantity: str = "100",
    max_notional: str = "1000000",
    min_net_edge_bps: str = "0",
    min_expected_pnl: str = "0",
) -> Config:
    listing = {"tick_size": "0.1", "lot_size": "0.01"}
    return parse_config(
        {
            "detector": {
                "slippage_floor_bps": slip,
                "volatility_multiplier": "0",
                "stale_after_ms": 1000,
                "min_net_edge_bps": min_net_edge_bps,
            },
            "risk": {"max_notional": max_notional, "min_expected_pnl": min_expected_pnl},
            "venues": {"A": {"maker_fee": "0", "taker_fee": fee_a}, "B": {"maker_fee": "0", "taker_fee": fee_b}},
            "markets": {
                X: {
                    "base": "X",
                    "quote": "USD",
                    "max_quantity": max_quantity,
                    "sim": {"start_price": "100"},
                    "venues": {"A": {"symbol": "X/USD", **listing}, "B": {"symbol": "X-USD", **listing}},
                }
            },
        },
        "test",
    )


def outcome_config(*, fee: str = "0.01") -> Config:
    listing = {"tick_size": "0.01", "lot_size": "0.01", "min_size": "1"}
    return parse_config(
        {
            "detector": {"slippage_floor_bps": "0", "volatility_multiplier": "0"},
            "venues": {"P": {"fee_model": "probability", "maker_fee": "0", "taker_fee": fee}},
            "markets": {
                "EV-YES": {
                    "kind": "outcome",
                    "event": "EV",
                    "outcome": "YES",
                    "base": "EV-YES",
                    "quote": "USDC",
                    "max_quantity": "1000",
                    "sim": {"start_price": "0.4"},
                    "venues": {"P": {"symbol": "y", **listing}},
                },
                "EV-NO": {
                    "kind": "outcome",
                    "event": "EV",
                    "outcome": "NO",
                    "base": "EV-NO",
                    "quote": "USDC",
                    "max_quantity": "1000",
                    "venues": {"P": {"symbol": "n", **listing}},
                },
            },
        },
        "test",
    )


class Harness:
    """A Detector over books and balances the test owns."""

    def __init__(self, cfg: Config, balances: dict[tuple[str, str], Decimal] | None = None) -> None:
        self.books: dict[tuple[str, str], OrderBook] = {}
        self.balances = balances or {}
        self.detector = Detector(
            cfg,
            cfg.instruments(),
            {v.name: v.fees for v in cfg.venues},
            lambda venue, market: self.books.get((venue, market)),
            lambda venue, asset: self.balances.get((venue, asset), BIG),
        )

    def snapshot(self, venue: str, market: str, bids: Levels, asks: Levels, ts_ns: int = 0) -> None:
        book = self.books.setdefault((venue, market), OrderBook())
        book.apply_snapshot(_levels(bids), _levels(asks), ts_ns)

    def update(self, venue: str, market: str, bids: Levels, asks: Levels, ts_ns: int) -> dict[str, SpreadEvent]:
        book = self.books[(venue, market)]
        book.apply_update(_levels(bids), _levels(asks), ts_ns)
        return by_key(self.detector.on_book(venue, market, book, ts_ns))

    def evaluate(self, now_ns: int = 0) -> dict[str, SpreadEvent]:
        return by_key(self.detector.evaluate_all(now_ns))


def _levels(levels: Levels) -> list[tuple[Decimal, Decimal]]:
    return [(D(p), D(q)) for p, q in levels]


def by_key(events: list[SpreadEvent]) -> dict[str, SpreadEvent]:
    out: dict[str, SpreadEvent] = {}
    for ev in events:
        assert ev.spread.key not in out, "one event per spread per evaluation"
        out[ev.spread.key] = ev
    return out


# The books of case (a), used by several tests:
#   A: bids 99.5 x 1, 99.0 x 2          asks 100.0 x 1, 100.5 x 2, 101.0 x 5
#   B: bids 102.0 x 1.5, 101.2 x 2, 100.0 x 5      asks 102.5 x 1, 103.0 x 2
A_BIDS = [("99.5", "1"), ("99.0", "2")]
A_ASKS = [("100.0", "1"), ("100.5", "2"), ("101.0", "5")]
B_BIDS = [("102.0", "1.5"), ("101.2", "2"), ("100.0", "5")]
B_ASKS = [("102.5", "1"), ("103.0", "2")]


def case_a(cfg: Config | None = None, balances: dict[tuple[str, str], Decimal] | None = None) -> Harness:
    h = Harness(cfg or cross_config(), balances)
    h.snapshot("A", X, A_BIDS, A_ASKS)
    h.snapshot("B", X, B_BIDS, B_ASKS)
    return h


# --- (a) buy A / sell B pays ---------------------------------------------------------------------


def test_buy_a_sell_b_pays_and_is_sized_where_the_marginal_profit_reaches_zero() -> None:
    h = case_a()  # taker fees 0.001 on both venues, slippage floor 1 bp = 0.0001 per leg notional
    ev = h.evaluate()[AB]
    # Marginal profit of one more unit = sell * (1 - 0.001) - buy * (1 + 0.001) - 0.0001 * (buy + sell):
    #   units 0-1    buy 100.0 sell 102.0: 101.898 - 100.1    - 0.0202  = 1.7778   > 0  (A's 100.0 level done)
    #   units 1-1.5  buy 100.5 sell 102.0: 101.898 - 100.6005 - 0.02025 = 1.27725  > 0  (B's 102.0 level done)
    #   units 1.5-3  buy 100.5 sell 101.2: 101.0988 - 100.6005 - 0.02017 = 0.47813 > 0 (A's 100.5 level done)
    #   unit 3+      buy 101.0 sell 101.2: 101.0988 - 101.101  - 0.02022 < 0: stop at 3.
    assert isinstance(ev, OpportunityDetected)
    s = ev.spread
    assert s.opportunity_id == "O-1" and s.pays
    assert s.kind is SpreadKind.CROSS_VENUE and s.group == X
    assert s.quantity == D("3")
    buy, sell = s.legs
    # Buy leg: 1 @ 100.0 + 2 @ 100.5 = 301.0; fee 301.0 * 0.001 = 0.301; the limit is the worst level taken.
    assert (buy.venue, buy.market, buy.side, buy.quantity) == ("A", X, Side.BUY, D("3"))
    assert buy.vwap == D("301.0") / 3
    assert buy.limit_price == D("100.5")
    assert buy.fee == D("0.301")
    # Sell leg: 1.5 @ 102.0 + 1.5 @ 101.2 = 153.0 + 151.8 = 304.8 (vwap 101.6); fee 0.3048.
    assert (sell.venue, sell.side, sell.quantity) == ("B", Side.SELL, D("3"))
    assert sell.vwap == D("101.6")
    assert sell.limit_price == D("101.2")
    assert sell.fee == D("0.3048")
    # gross 304.8 - 301.0 = 3.8; fees 0.301 + 0.3048 = 0.6058; slippage 0.0001 * (301.0 + 304.8) = 0.06058
    # pnl 3.8 - 0.6058 - 0.06058 = 3.13362
    assert s.fees == D("0.6058")
    assert s.slippage == D("0.06058")
    assert s.expected_pnl == D("3.13362")
    # bps of the buy notional: 3.8 / 301.0 = 126.2458.. bp -> 126.25; 3.13362 / 301.0 = 104.1070.. bp -> 104.11
    assert s.gross_bps == D("126.25")
    assert s.net_bps == D("104.11")
    assert s.since_ns == 0
    assert h.detector.spread(AB) == s
    assert h.detector.slippage_bps(AB) == D("1")


# --- (b) the reverse direction ----------------------------------------------------------------------


def test_reverse_direction_is_priced_at_the_touch_and_does_not_pay() -> None:
    h = case_a()
    ev = h.evaluate()[BA]
    # Buy B at 102.5 and sell A at 99.5 loses at once: price the touch, min(1, 1) = 1 unit.
    assert isinstance(ev, SpreadChanged)
    s = ev.spread
    assert s.opportunity_id is None and not s.pays
    assert s.quantity == D("1")
    buy, sell = s.legs
    assert (buy.venue, buy.side, buy.vwap, buy.limit_price, buy.fee) == (
        "B",
        Side.BUY,
        D("102.5"),
        D("102.5"),
        D("0.1025"),
    )
    assert (sell.venue, sell.side, sell.vwap, sell.limit_price, sell.fee) == (
        "A",
        Side.SELL,
        D("99.5"),
        D("99.5"),
        D("0.0995"),
    )
    # gross 99.5 - 102.5 = -3; fees 0.1025 + 0.0995 = 0.202; slippage 0.0001 * 202.0 = 0.0202
    # pnl -3 - 0.202 - 0.0202 = -3.2222; bps of 102.5: -292.6829.. -> -292.68, -314.3609.. -> -314.36
    assert s.fees == D("0.202")
    assert s.slippage == D("0.0202")
    assert s.expected_pnl == D("-3.2222")
    assert s.gross_bps == D("-292.68")
    assert s.net_bps == D("-314.36")
    # Best net edge first.
    assert [sp.key for sp in h.detector.spreads()] == [AB, BA]


def test_a_non_paying_spread_keeps_its_since_and_repeats_nothing_when_unchanged() -> None:
    h = case_a()
    assert isinstance(h.evaluate(0)[BA], SpreadChanged)
    assert BA not in h.evaluate(5 * MS)  # nothing changed: no event
    # Same touch quantity (min(3, 1) = 1) at the same prices: the figures do not change, no event.
    assert BA not in h.update("B", X, [], [("102.5", "3")], ts_ns=7 * MS)
    ev = h.update("B", X, [], [("102.4", "1")], ts_ns=10 * MS)[BA]  # a better ask: re-priced
    assert isinstance(ev, SpreadChanged)
    assert ev.spread.legs[0].vwap == D("102.4")
    assert ev.spread.since_ns == 0  # still the same non-paying state that began at 0
    assert ev.ts_ns == 10 * MS


# --- (c) fees kill the edge ----------------------------------------------------------------------------


def test_fees_large_enough_kill_the_edge() -> None:
    h = case_a(cross_config(fee_a="0.01", fee_b="0.01"))
    ev = h.evaluate()[AB]
    # First unit: 102.0 * 0.99 - 100.0 * 1.01 - 0.0202 = 100.98 - 101.0 - 0.0202 < 0: nothing pays.
    # Touch: min(1, 1.5) = 1 unit. gross 102.0 - 100.0 = 2; fees 1.00 + 1.02 = 2.02; slippage 0.0202
    # pnl 2 - 2.02 - 0.0202 = -0.0402; gross 200.00 bp, net -4.02 bp of 100.0
    assert isinstance(ev, SpreadChanged)
    s = ev.spread
    assert s.opportunity_id is None
    assert s.quantity == D("1")
    assert s.fees == D("2.02")
    assert s.expected_pnl == D("-0.0402")
    assert (s.gross_bps, s.net_bps) == (D("200.00"), D("-4.02"))


# --- (d) the slippage floor alone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slip", "pays", "slippage", "pnl", "net_bps"),
    [
        # 0.0004 * (100.0 + 100.1) = 0.08004; 0.1 - 0.08004 = 0.01996; 0.01996 / 100 = 1.996 bp -> 2.00
        ("4", True, D("0.08004"), D("0.01996"), D("2.00")),
        # 0.0005 * 200.1 = 0.10005 > 0.1 by a hair
        ("5", False, D("0.10005"), D("-0.00005"), D("-0.00")),
        # 0.0006 * 200.1 = 0.12006; 0.1 - 0.12006 = -0.02006; -2.006 bp -> -2.01
        ("6", False, D("0.12006"), D("-0.02006"), D("-2.01")),
    ],
)
def test_the_slippage_floor_alone_kills_a_marginal_edge(
    slip: str, pays: bool, slippage: Decimal, pnl: Decimal, net_bps: Decimal
) -> None:
    h = Harness(cross_config(fee_a="0", fee_b="0", slip=slip))
    h.snapshot("A", X, [("99.0", "1")], [("100.0", "1")])
    h.snapshot("B", X, [("100.1", "1")], [("101.0", "1")])
    ev = h.evaluate()[AB]
    s = ev.spread
    # No fees: gross 100.1 - 100.0 = 0.1 on one unit (10.00 bp).
    assert s.quantity == D("1")
    assert s.fees == 0
    assert s.gross_bps == D("10.00")
    assert s.slippage == slippage
    assert s.expected_pnl == pnl
    assert s.net_bps == net_bps
    assert s.pays is pays
    assert isinstance(ev, OpportunityDetected if pays else SpreadChanged)


# --- (e) size caps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balances", "overrides", "quantity", "pnl"),
    [
        # No cap binds: both levels hold 10; 10 * (101.0 - 100.0) = 10
        ({}, {}, D("10"), D("10")),
        # 250 USD on A buys 250 / 100.0 = 2.5
        ({("A", "USD"): D("250")}, {}, D("2.5"), D("2.5")),
        # 1.705 X on B sells 1.705, floored to the 0.01 lot: 1.70
        ({("B", "X"): D("1.705")}, {}, D("1.70"), D("1.70")),
        # Balances on the other assets do not matter: USD on B, X on A
        ({("B", "USD"): D("0"), ("A", "X"): D("0")}, {}, D("10"), D("10")),
        # max_quantity 4
        ({}, {"max_quantity": "4"}, D("4"), D("4")),
        # risk.max_notional 320 caps each leg; the sell leg's is the larger:
        # 320 / 101.0 = 3.1683.. -> 3.16 (0.01 lot); pnl 3.16 * (101.0 - 100.0) = 3.16
        ({}, {"max_notional": "320"}, D("3.16"), D("3.16")),
        # The tightest of several wins: min(2.5, 1.70, 4, 3.2) = 1.70
        (
            {("A", "USD"): D("250"), ("B", "X"): D("1.705")},
            {"max_quantity": "4", "max_notional": "320"},
            D("1.70"),
            D("1.70"),
        ),
        # The buy budget pays the taker fee too: 250 / (100.0 * 1.001) = 2.4975.. -> 2.49
        # pnl 2.49 * 101.0 - 2.49 * 100.0 - 2.49 * 100.0 * 0.001 = 251.49 - 249.00 - 0.249 = 2.241
        ({("A", "USD"): D("250")}, {"fee_a": "0.001"}, D("2.49"), D("2.241")),
    ],
)
def test_balances_max_quantity_and_max_notional_cap_the_size(
    balances: dict[tuple[str, str], Decimal],
    overrides: dict[str, Any],
    quantity: Decimal,
    pnl: Decimal,
) -> None:
    cfg = cross_config(**{"fee_a": "0", "fee_b": "0", "slip": "0", **overrides})
    h = Harness(cfg, balances)
    h.snapshot("A", X, [("99.0", "1")], [("100.0", "10")])
    h.snapshot("B", X, [("101.0", "10")], [("102.0", "1")])
    ev = h.evaluate()[AB]
    assert isinstance(ev, OpportunityDetected)
    assert ev.spread.quantity == quantity
    assert all(leg.quantity == quantity for leg in ev.spread.legs)
    assert ev.spread.expected_pnl == pnl


def test_no_quote_balance_means_no_opportunity() -> None:
    h = Harness(cross_config(fee_a="0", fee_b="0", slip="0"), {("A", "USD"): D("0")})
    h.snapshot("A", X, [("99.0", "1")], [("100.0", "10")])
    h.snapshot("B", X, [("101.0", "10")], [("102.0", "1")])
    ev = h.evaluate()[AB]
    # Priced at the touch (min(10, 10) = 10 units, pnl 10) so the operator sees it, but it carries no id.
    assert isinstance(ev, SpreadChanged)
    assert ev.spread.quantity == D("10") and ev.spread.expected_pnl == D("10")
    assert ev.spread.opportunity_id is None


@pytest.mark.parametrize("overrides", [{"min_net_edge_bps": "104.12"}, {"min_expected_pnl": "3.13363"}])
def test_thresholds_just_above_the_edge_stop_it_paying(overrides: dict[str, str]) -> None:
    # Case (a) makes 104.11 bp and 3.13362: one step more on either threshold and it does not pay.
    ev = case_a(cross_config(**overrides)).evaluate()[AB]
    assert isinstance(ev, SpreadChanged)
    assert ev.spread.quantity == D("3") and ev.spread.expected_pnl == D("3.13362")


@pytest.mark.parametrize("overrides", [{"min_net_edge_bps": "104.11"}, {"min_expected_pnl": "3.13362"}])
def test_thresholds_met_exactly_still_pay(overrides: dict[str, str]) -> None:
    assert isinstance(case_a(cross_config(**overrides)).evaluate()[AB], OpportunityDetected)


# --- (f) the complement -----------------------------------------------------------------------------------

# YES asks 0.40 x 100, 0.42 x 100; NO asks 0.55 x 50, 0.57 x 200 (one venue, probability fees at 0.01).
# Taker fee per share = 0.01 * p * (1 - p):
#   0.40 -> 0.0024   0.42 -> 0.002436   0.55 -> 0.002475   0.57 -> 0.002451
YES_ASKS = [("0.40", "100"), ("0.42", "100")]
NO_ASKS = [("0.55", "50"), ("0.57", "200")]
COMPLEMENT = "EV P:YES+P:NO"


def complement(balances: dict[tuple[str, str], Decimal] | None = None) -> Harness:
    h = Harness(outcome_config(), balances)
    h.snapshot("P", "EV-YES", [("0.38", "100")], YES_ASKS)
    h.snapshot("P", "EV-NO", [("0.53", "100")], NO_ASKS)
    return h


def test_complement_buys_equal_shares_of_yes_and_no_for_less_than_the_payout() -> None:
    h = complement()
    events = h.evaluate()
    assert set(events) == {COMPLEMENT}  # one venue each: no cross-venue spreads
    ev = events[COMPLEMENT]
    # Marginal profit = 1 - (yes + fee) - (no + fee):
    #   shares 0-50     1 - 0.4024   - 0.552475 = 0.045125 > 0   (NO 0.55 done)
    #   shares 50-100   1 - 0.4024   - 0.572451 = 0.025149 > 0   (YES 0.40 done)
    #   shares 100-200  1 - 0.422436 - 0.572451 = 0.005113 > 0   (YES 0.42 done: the YES book is empty)
    assert isinstance(ev, OpportunityDetected)
    s = ev.spread
    assert s.kind is SpreadKind.COMPLEMENT and s.group == "EV"
    assert s.quantity == D("200")
    yes, no = s.legs
    assert (yes.market, yes.side, yes.quantity) == ("EV-YES", Side.BUY, D("200"))
    assert (no.market, no.side, no.quantity) == ("EV-NO", Side.BUY, D("200"))
    # YES: 100 * 0.40 + 100 * 0.42 = 82; fee 100 * 0.0024 + 100 * 0.002436 = 0.24 + 0.2436 = 0.4836
    assert (yes.vwap, yes.limit_price, yes.fee) == (D("0.41"), D("0.42"), D("0.4836"))
    # NO: 50 * 0.55 + 150 * 0.57 = 27.5 + 85.5 = 113; fee 50 * 0.002475 + 150 * 0.002451 = 0.12375 + 0.36765
    assert (no.vwap, no.limit_price, no.fee) == (D("0.565"), D("0.57"), D("0.4914"))
    # cost 82 + 113 = 195; gross 200 * 1 - 195 = 5; fees 0.975; pnl 4.025
    assert s.fees == D("0.975")
    assert s.slippage == 0
    assert s.expected_pnl == D("4.025")
    # 5 / 195 = 256.4102.. bp; 4.025 / 195 = 206.4102.. bp
    assert (s.gross_bps, s.net_bps) == (D("256.41"), D("206.41"))


def test_complement_shares_one_budget_across_both_legs() -> None:
    h = complement({("P", "USDC"): D("100")})
    s = h.evaluate()[COMPLEMENT].spread
    # 100 USDC for both legs, fees included, at the LIMIT prices (what an IOC at the worst level
    # needs the venue to hold), not at the VWAP:
    #   the walk reaches 103.53 shares (YES worst 0.42, NO worst 0.57);
    #   per share at the limits: (0.42 + 0.002436) + (0.57 + 0.002451) = 0.994887
    #   100 / 0.994887 = 100.5139.. -> lot 0.01 -> 100.51 (still YES 0.42 / NO 0.57 as the worst levels)
    assert s.quantity == D("100.51")
    yes, no = s.legs
    assert (yes.limit_price, no.limit_price) == (D("0.42"), D("0.57"))
    # YES 100 * 0.40 + 0.51 * 0.42 = 40.2142; fee 0.24 + 0.51 * 0.002436 = 0.24124236
    # NO  50 * 0.55 + 50.51 * 0.57 = 56.2907; fee 0.12375 + 50.51 * 0.002451 = 0.24755001
    assert (yes.fee, no.fee) == (D("0.24124236"), D("0.24755001"))
    at_limits = s.quantity * (yes.limit_price + no.limit_price) + s.quantity * (D("0.002436") + D("0.002451"))
    assert at_limits <= D("100")
    # gross 100.51 - (40.2142 + 56.2907) = 4.0051; pnl 4.0051 - 0.48879237 = 3.51630763
    assert s.expected_pnl == D("3.51630763")


def test_complement_that_costs_more_than_the_payout_does_not_pay() -> None:
    h = Harness(outcome_config())
    h.snapshot("P", "EV-YES", [("0.48", "100")], [("0.50", "100")])
    h.snapshot("P", "EV-NO", [("0.48", "100")], [("0.50", "100")])
    ev = h.evaluate()[COMPLEMENT]
    # 0.50 + 0.50 = 1.00 before fees; fees 2 * 100 * 0.01 * 0.25 = 0.5: pnl 100 - 100 - 0.5 = -0.5
    assert isinstance(ev, SpreadChanged)
    assert ev.spread.quantity == D("100")
    assert ev.spread.expected_pnl == D("-0.5")


# --- (g) lifecycle ------------------------------------------------------------------------------------------


def test_lifecycle_detected_updated_expired_and_a_new_id_when_it_comes_back() -> None:
    h = case_a()
    first = h.evaluate(0)[AB]
    assert isinstance(first, OpportunityDetected) and first.spread.opportunity_id == "O-1"

    # B's 102.0 level shrinks from 1.5 to 1: still pays, same id, new figures.
    ev = h.update("B", X, [("102.0", "1")], [], ts_ns=10 * MS)[AB]
    #   units 0-1  buy 100.0 sell 102.0: 1.7778 > 0      (both top levels done)
    #   units 1-3  buy 100.5 sell 101.2: 0.47813 > 0     (A's 100.5 and B's 101.2 done)
    #   unit 3+    buy 101.0 sell 100.0: < 0
    # sell 1 @ 102.0 + 2 @ 101.2 = 304.4, fee 0.3044; buy as before 301.0, fee 0.301
    # slippage 0.0001 * 605.4 = 0.06054; pnl 3.4 - 0.6054 - 0.06054 = 2.73406
    assert isinstance(ev, OpportunityUpdated)
    assert ev.spread.opportunity_id == "O-1"
    assert ev.spread.since_ns == 0  # detected at 0, still the same opportunity
    assert ev.spread.quantity == D("3")
    assert ev.spread.expected_pnl == D("2.73406")
    assert ev.ts_ns == 10 * MS

    # Nothing changed: no event at all.
    assert AB not in h.evaluate(15 * MS)

    # B's bids fall to 100.2: the edge is gone.
    ev = h.update("B", X, [("102.0", "0"), ("101.2", "0"), ("100.2", "1")], [], ts_ns=20 * MS)[AB]
    # Touch: 1 unit, buy 100.0 (fee 0.1), sell 100.2 (fee 0.1002), slippage 0.0001 * 200.2 = 0.02002
    # pnl 0.2 - 0.2002 - 0.02002 = -0.02022
    assert isinstance(ev, OpportunityExpired)
    assert ev.opportunity_id == "O-1"
    assert ev.reason == "edge no longer beats fees and slippage"
    assert ev.spread.opportunity_id is None
    assert ev.spread.quantity == D("1")
    assert ev.spread.expected_pnl == D("-0.02022")
    assert ev.spread.since_ns == 20 * MS
    assert AB not in h.evaluate(25 * MS)

    # It comes back: a new opportunity, with a new id.
    ev = h.update("B", X, [("102.0", "1.5"), ("101.2", "2"), ("100.2", "0")], [], ts_ns=30 * MS)[AB]
    assert isinstance(ev, OpportunityDetected)
    assert ev.spread.opportunity_id == "O-2"
    assert ev.spread.since_ns == 30 * MS
    assert ev.spread.expected_pnl == D("3.13362")


def test_an_opportunity_whose_book_side_empties_expires() -> None:
    """Every bid on B is deleted: nothing can be sold there, so O-1 must not go on paying.

    The UI learns only from events, so the expiry has to be one.
    """
    h = case_a()
    assert isinstance(h.evaluate(0)[AB], OpportunityDetected)
    events = h.update("B", X, [("102.0", "0"), ("101.2", "0"), ("100.0", "0")], [], ts_ns=10 * MS)
    ev = events.get(AB)
    assert isinstance(ev, OpportunityExpired) and ev.opportunity_id == "O-1"
    current = h.detector.spread(AB)
    assert current is None or not current.pays


def test_a_better_price_just_past_the_walk_re_prices_the_spread() -> None:
    """The walk stopped where buying A's 101.0 no longer paid; that level was read without being taken.
    When it is replaced by 100.7 (the levels taken are untouched), one more unit pays again."""
    h = case_a()
    assert h.evaluate(0)[AB].spread.quantity == D("3")
    ev = h.update("A", X, [], [("101.0", "0"), ("100.7", "5")], ts_ns=10 * MS)[AB]
    #   unit 3+  buy 100.7 sell 101.2: 101.0988 - 100.8007 - 0.02019 = 0.27791 > 0 (B's 101.2 done at 3.5)
    #   unit 3.5+ buy 100.7 sell 100.0: < 0
    assert isinstance(ev, OpportunityUpdated) and ev.spread.quantity == D("3.5")
    # A change deeper than anything either walk read (A's bids for B>A, A's first three asks for A>B) is
    # not re-walked at all, and emits nothing.
    unchanged, walked = h.detector.unchanged, h.detector.evaluations
    assert h.update("A", X, [], [("101.5", "7")], ts_ns=20 * MS) == {}
    assert (h.detector.unchanged, h.detector.evaluations) == (unchanged + 2, walked)


def test_a_level_added_behind_a_side_the_walk_used_up_re_prices_the_spread() -> None:
    h = Harness(cross_config())
    h.snapshot("A", X, A_BIDS, [("100.0", "1")])  # one ask only: the walk runs out of A's book
    h.snapshot("B", X, B_BIDS, B_ASKS)
    assert h.evaluate(0)[AB].spread.quantity == D("1")
    ev = h.update("A", X, [], [("100.2", "1")], ts_ns=10 * MS)[AB]
    assert isinstance(ev, OpportunityUpdated) and ev.spread.quantity == D("2")


# --- (h) stale and crossed books ------------------------------------------------------------------------------


def test_a_stale_book_expires_the_opportunity() -> None:
    h = case_a()  # books stamped 0; stale after 1000 ms
    assert isinstance(h.evaluate(0)[AB], OpportunityDetected)
    assert AB not in h.evaluate(1_000 * MS)  # exactly 1000 ms old: not stale yet, unchanged
    ev = h.evaluate(1_000 * MS + 1)[AB]
    assert isinstance(ev, OpportunityExpired)
    assert ev.opportunity_id == "O-1"
    assert ev.reason == "book stale"
    # Priced at the touch (1 unit: gross 2, fees 0.202, slippage 0.0202, pnl 1.7778): profitable on paper,
    # but no id while the data is old.
    assert ev.spread.quantity == D("1")
    assert ev.spread.expected_pnl == D("1.7778")
    assert not ev.spread.pays


def test_a_crossed_book_expires_the_opportunity() -> None:
    h = case_a()
    assert isinstance(h.evaluate(0)[AB], OpportunityDetected)
    # An ask at 101.5 under B's 102.0 bid: B's book is crossed.
    events = h.update("B", X, [], [("101.5", "1")], ts_ns=10 * MS)
    ev = events[AB]
    assert isinstance(ev, OpportunityExpired)
    assert ev.opportunity_id == "O-1"
    assert ev.reason == "book crossed"
    assert not ev.spread.pays
    # The reverse spread uses the crossed book too and must not pay either.
    assert isinstance(events[BA], SpreadChanged) and not events[BA].spread.pays


def test_a_stale_or_crossed_book_never_yields_a_new_opportunity() -> None:
    h = case_a()
    ev = h.evaluate(5_000 * MS)[AB]  # both books 5 s old from the start
    assert isinstance(ev, SpreadChanged) and not ev.spread.pays
    h2 = case_a()
    h2.books[("A", X)].apply_update([(D("100.0"), D("1"))], [], 0)  # A's bid = A's ask: a locked book
    assert h2.books[("A", X)].is_crossed()
    ev = h2.evaluate(0)[AB]
    assert isinstance(ev, SpreadChanged) and not ev.spread.pays


def test_venue_fees_learned_after_connect_reprice_the_spread() -> None:
    from arbtui.domain.fees import FeeSchedule

    h = case_a()
    assert h.evaluate()[AB].spread.pays
    # The account's live rate on B (a venue's fee endpoint) is far higher than the configured one.
    h.detector.set_fees("B", X, FeeSchedule(D("0"), D("0.03")))
    ev = h.evaluate()[AB]
    assert not ev.spread.pays
    h.detector.set_fees("B", X, FeeSchedule(D("0"), D("0.001")))
    assert h.evaluate()[AB].spread.pays


# --- (i) the fast detector decides exactly what the old one did ----------------------------------------------
#
# tests/detector_reference.py is the detector before the hot-path work (it re-walked every book on every
# update). Both run on the same books, balances and clock; every event must be the same, down to the
# Decimal representations (repr of the events), and the spreads they keep must be equal.

KRAKEN_STREAM = Path(__file__).parent.parent / "data" / "kraken-v2-book-btcusd-2023-07-30.jsonl"
OUTCOME_LISTING = {"tick_size": "0.01", "lot_size": "0.1", "min_size": "1"}


def fuzz_config(rng: random.Random) -> Config:
    return parse_config(
        {
            "detector": {
                "slippage_floor_bps": rng.choice(["0", "0.5", "2"]),
                "volatility_multiplier": rng.choice(["0", "1", "3"]),
                "volatility_halflife_s": "2",
                "expected_latency_ms": 150,
                "stale_after_ms": 1000,
                "min_net_edge_bps": rng.choice(["0", "0", "3"]),
            },
            "risk": {
                "max_notional": rng.choice(["300", "5000", "1000000"]),
                "min_expected_pnl": rng.choice(["0", "0", "0.05"]),
            },
            "venues": {
                "A": {"maker_fee": "0", "taker_fee": rng.choice(["0", "0.001", "0.0026"])},
                "B": {"maker_fee": "0", "taker_fee": rng.choice(["0.0005", "0.004"])},
                "P": {"fee_model": "probability", "maker_fee": "0", "taker_fee": rng.choice(["0", "0.02"])},
            },
            "markets": {
                X: {
                    "base": "X",
                    "quote": "USD",
                    "max_quantity": rng.choice(["3", "40"]),
                    "sim": {"start_price": "100"},
                    "venues": {
                        "A": {"symbol": "X/USD", "tick_size": "0.1", "lot_size": "0.0001"},
                        "B": {"symbol": "X-USD", "tick_size": "0.01", "lot_size": "0.0001", "min_size": "0.01"},
                    },
                },
                "EV-YES": {
                    "kind": "outcome",
                    "event": "EV",
                    "outcome": "YES",
                    "base": "EV-YES",
                    "quote": "USDC",
                    "max_quantity": "500",
                    "sim": {"start_price": "0.4"},
                    "venues": {"P": {"symbol": "y", **OUTCOME_LISTING}, "A": {"symbol": "EVY", **OUTCOME_LISTING}},
                },
                "EV-NO": {
                    "kind": "outcome",
                    "event": "EV",
                    "outcome": "NO",
                    "base": "EV-NO",
                    "quote": "USDC",
                    "max_quantity": "500",
                    "venues": {"P": {"symbol": "n", **OUTCOME_LISTING}},
                },
            },
        },
        "fuzz",
    )


class Twin:
    """The fast detector and the reference detector over the same books and balances."""

    def __init__(self, cfg: Config, balances: dict[tuple[str, str], Decimal]) -> None:
        self.books: dict[tuple[str, str], OrderBook] = {}
        self.balances = balances
        fees = {v.name: v.fees for v in cfg.venues}

        def book(venue: str, market: str) -> OrderBook | None:
            return self.books.get((venue, market))

        def balance(venue: str, asset: str) -> Decimal:
            return self.balances.get((venue, asset), ZERO)

        self.fast = Detector(cfg, cfg.instruments(), fees, book, balance)
        self.ref = ReferenceDetector(cfg, cfg.instruments(), fees, book, balance)
        self.events = 0

    def same(self, fast: list[SpreadEvent], ref: list[SpreadEvent]) -> None:
        assert repr(fast) == repr(ref)
        self.events += len(fast)

    def on_book(self, venue: str, market: str, now: int) -> None:
        book = self.books[(venue, market)]
        self.same(self.fast.on_book(venue, market, book, now), self.ref.on_book(venue, market, book, now))

    def evaluate_all(self, now: int) -> None:
        self.same(self.fast.evaluate_all(now), self.ref.evaluate_all(now))

    def check_spreads(self) -> None:
        assert repr(self.fast.spreads()) == repr(self.ref.spreads())


def _random_levels(
    rng: random.Random, mid: int, tick: Decimal, lot: Decimal, side: str, n: int
) -> list[tuple[Decimal, Decimal]]:
    out = []
    for _ in range(n):
        offset = rng.choice([0, 0, 1, 1, 2, 3, 5, 8, 13]) + 1
        ticks = mid - offset if side == "bid" else mid + offset
        if ticks <= 0:
            continue
        qty = ZERO if rng.random() < 0.25 else lot * rng.choice([1, 3, 10, 25, 100, 400, 2500, 10000])
        out.append((tick * ticks, qty))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_random_streams_give_the_same_events_as_the_reference_detector(seed: int) -> None:
    rng = random.Random(seed)
    cfg = fuzz_config(rng)
    balances: dict[tuple[str, str], Decimal] = {}

    def new_balances() -> None:
        for venue in ("A", "B", "P"):
            for asset in ("USD", "X", "USDC", "EV-YES", "EV-NO"):
                balances[(venue, asset)] = D(rng.choice(["0", "2", "50", "400", "100000"]))

    def new_balance() -> None:  # one balance moves a little (a fill elsewhere): sizes that bind on it shrink or grow
        venue, asset = rng.choice([("A", "USD"), ("B", "X"), ("B", "USD"), ("A", "X"), ("P", "USDC"), ("A", "USDC")])
        balances[(venue, asset)] = D(rng.choice(["0.5", "3", "20", "45", "90", "150", "300", "900"]))

    new_balances()
    twin = Twin(cfg, balances)
    # (venue, market): tick, lot, depth, fair value in ticks, width of the quote in ticks, noise in ticks
    books = {
        ("A", X): (D("0.1"), D("0.0001"), 10, 1000, 1, 15),
        ("B", X): (D("0.01"), D("0.0001"), None, 10000, 5, 150),
        ("P", "EV-YES"): (D("0.01"), D("0.1"), None, 40, 1, 2),
        ("A", "EV-YES"): (D("0.01"), D("0.1"), 10, 40, 1, 3),
        ("P", "EV-NO"): (D("0.01"), D("0.1"), None, 58, 1, 2),
    }
    now = 0
    for (venue, market), (tick, lot, depth, fair, width, _) in books.items():
        twin.books[(venue, market)] = book = OrderBook(depth)
        book.apply_snapshot(
            _random_levels(rng, fair, tick, lot, "bid", 12), _random_levels(rng, fair + width, tick, lot, "ask", 12), 0
        )
    twin.evaluate_all(now)
    for _ in range(1500):
        roll = rng.random()
        now += rng.choice([1, 5, 20, 80]) * MS if roll > 0.02 else 1_500 * MS  # now and then a book goes stale
        if roll < 0.03:
            new_balances()
            twin.evaluate_all(now)
            continue
        if roll < 0.13:
            new_balance()
            twin.evaluate_all(now)
            continue
        if roll < 0.14:
            venue = rng.choice(["A", "B"])
            fees = FeeSchedule(ZERO, D(rng.choice(["0", "0.001", "0.003"])))
            twin.fast.set_fees(venue, X, fees)
            twin.ref.set_fees(venue, X, fees)
            twin.evaluate_all(now)
            continue
        key = rng.choice(list(books))
        tick, lot, depth, fair, width, noise = books[key]
        mid = fair + rng.randint(-noise, noise)  # each venue quotes around the fair value: spreads open and close
        book = twin.books[key]
        if roll < 0.16:  # one side swept away entirely, or a fresh snapshot
            if rng.random() < 0.5:
                book.apply_update([(p, ZERO) for p, _ in book.bids.top(1000)], [], now)
            else:
                book.apply_snapshot(
                    _random_levels(rng, mid, tick, lot, "bid", 8),
                    _random_levels(rng, mid + width, tick, lot, "ask", 8),
                    now,
                )
        elif roll < 0.17:  # a crossed level
            book.apply_update([(tick * (mid + width + 2), lot * 10)], [], now)
        else:
            n = rng.choice([1, 1, 2, 3])
            bids = _random_levels(rng, mid, tick, lot, "bid", n)
            asks = _random_levels(rng, mid + width, tick, lot, "ask", n)
            # Levels the quote moved through are gone (the venue's own book never crosses).
            top_bid, low_ask = tick * mid, tick * (mid + width)
            bids += [(p, ZERO) for p, _ in book.bids.top(1000) if p >= low_ask]
            asks += [(p, ZERO) for p, _ in book.asks.top(1000) if p <= top_bid]
            book.apply_update(bids, asks, now)
        twin.on_book(key[0], key[1], now)
    twin.check_spreads()
    assert twin.events > 300  # the streams do produce decisions to compare
    assert twin.fast.unchanged > 0 and twin.fast.evaluations > 0


def _kraken_levels(raw: list[dict[str, float]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(repr(lv["price"])), Decimal(repr(lv["qty"]))) for lv in raw]


def test_the_recorded_kraken_stream_gives_the_same_events_as_the_reference_detector() -> None:
    """Kraken's recorded BTC/USD book on A; B quotes the same book shifted by an offset that moves, so
    spreads open, grow, shrink and close; every frame is priced by both detectors."""
    rng = random.Random(5)
    cfg = cross_config(fee_a="0.0010", fee_b="0.0005", slip="0.5", max_quantity="5", max_notional="150000")
    twin = Twin(cfg, {("A", "USD"): D("250000"), ("B", "X"): D("3.5"), ("B", "USD"): D("250000"), ("A", "X"): D("3.5")})
    a = twin.books[("A", X)] = OrderBook(10)
    b = twin.books[("B", X)] = OrderBook()
    offset = ZERO
    frames = [orjson.loads(line) for line in KRAKEN_STREAM.read_bytes().splitlines() if line.strip()]
    now = 0
    for msg in frames:
        if msg.get("channel") != "book":
            continue
        data = msg["data"][0]
        bids, asks = _kraken_levels(data.get("bids", [])), _kraken_levels(data.get("asks", []))
        now += 7 * MS
        if msg["type"] == "snapshot":
            a.apply_snapshot(bids, asks, now)
        else:
            a.apply_update(bids, asks, now)
        twin.on_book("A", X, now)
        if rng.random() < 0.3:  # B re-quotes A's top 10 shifted by an offset that comes and goes
            offset = D(rng.choice([-600, -200, 0, 200, 450, 550, 700, 900])) / 10
            b.apply_snapshot(
                [(p + offset, q) for p, q in a.bids.top(10)], [(p + offset, q) for p, q in a.asks.top(10)], now
            )
            twin.on_book("B", X, now)
    twin.check_spreads()
    kinds = {type(ev).__name__ for ev in twin.fast.spreads()}
    assert kinds and twin.events > 100
    assert twin.fast.unchanged > 0  # frames that changed nothing a walk read were not re-walked
