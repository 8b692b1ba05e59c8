"""OrderBook: L2 levels with absolute quantities, depth caps, fill estimates and health checks.

The property tests compare the book with a deliberately naive reference (a dict per side, sorted
and truncated by brute force) over random snapshot + update sequences. Prices live on a 0.1 tick
grid and quantities on a 0.01 lot grid, all Decimal.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbtui.domain.book import BookSide, OrderBook
from arbtui.domain.orders import Side

TICK = Decimal("0.1")
LOT = Decimal("0.01")
ZERO = Decimal(0)

PROPERTY = settings(max_examples=200, deadline=None)


def px(ticks: int) -> Decimal:
    return ticks * TICK


def qty(lots: int) -> Decimal:
    return lots * LOT


# --- strategies ------------------------------------------------------------------------------

prices = st.integers(min_value=1, max_value=60).map(px)
# Zero deletes a level; give it a fair share of the draws so deletes of present and absent levels happen.
quantities = st.one_of(st.just(ZERO), st.integers(min_value=1, max_value=1_000).map(qty))
level_lists = st.lists(st.tuples(prices, quantities), max_size=6)
updates = st.tuples(level_lists, level_lists)
depths = st.one_of(st.none(), st.integers(min_value=1, max_value=6))

positive_quantities = st.integers(min_value=1, max_value=1_000).map(qty)
# One side of a book: distinct prices with positive quantities.
book_sides = st.dictionaries(
    st.integers(min_value=1, max_value=200).map(px), positive_quantities, min_size=1, max_size=12
)
sizes = st.integers(min_value=1, max_value=20_000).map(qty)


# --- the reference model ---------------------------------------------------------------------


class RefBook:
    """The obvious implementation: a dict per side, sorted and cut from scratch when asked."""

    def __init__(self, depth: int | None) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def snapshot(self, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]) -> None:
        self.bids = {}
        self.asks = {}
        self.update(bids, asks)

    def update(self, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if q == 0:
                    side.pop(p, None)
                else:
                    side[p] = q
        if self.depth is not None:
            self.bids = dict(self.bid_levels()[: self.depth])
            self.asks = dict(self.ask_levels()[: self.depth])

    def bid_levels(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.bids.items(), key=lambda lv: lv[0], reverse=True)

    def ask_levels(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.asks.items(), key=lambda lv: lv[0])


def assert_matches(book: OrderBook, ref: RefBook) -> None:
    assert list(book.bids) == ref.bid_levels()
    assert list(book.asks) == ref.ask_levels()
    assert len(book.bids) == len(ref.bids)
    assert len(book.asks) == len(ref.asks)
    bid_levels, ask_levels = ref.bid_levels(), ref.ask_levels()
    assert book.best_bid() == (bid_levels[0] if bid_levels else None)
    assert book.best_ask() == (ask_levels[0] if ask_levels else None)
    for n in (1, 3):
        assert book.bids.top(n) == bid_levels[:n]
        assert book.asks.top(n) == ask_levels[:n]
    for p, q in bid_levels:
        assert book.bids.quantity_at(p) == q
    for p, q in ask_levels:
        assert book.asks.quantity_at(p) == q


# --- (a) snapshot + updates against the reference ---------------------------------------------


@PROPERTY
@given(depth=depths, snapshot=updates, steps=st.lists(updates, max_size=8))
def test_snapshot_and_updates_match_the_reference_model(
    depth: int | None,
    snapshot: tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]],
    steps: list[tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]],
) -> None:
    book = OrderBook(depth=depth)
    ref = RefBook(depth)
    book.apply_snapshot(*snapshot, ts_ns=1)
    ref.snapshot(*snapshot)
    assert_matches(book, ref)
    for i, (bids, asks) in enumerate(steps, start=2):
        book.apply_update(bids, asks, ts_ns=i)
        ref.update(bids, asks)
        assert_matches(book, ref)
        if depth is not None:
            assert len(book.bids) <= depth and len(book.asks) <= depth
    assert book.sequence == 1 + len(steps)
    assert book.last_update_ns == 1 + len(steps)


@settings(max_examples=100, deadline=None)
@given(depth=depths, first=updates, second=updates)
def test_a_snapshot_replaces_everything_before_it(
    depth: int | None,
    first: tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]],
    second: tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]],
) -> None:
    book = OrderBook(depth=depth)
    book.apply_snapshot(*first, ts_ns=1)
    book.apply_snapshot(*second, ts_ns=2)
    fresh = OrderBook(depth=depth)
    fresh.apply_snapshot(*second, ts_ns=2)
    assert list(book.bids) == list(fresh.bids)
    assert list(book.asks) == list(fresh.asks)


def test_depth_cap_keeps_the_best_levels_of_each_side() -> None:
    book = OrderBook(depth=2)
    book.apply_snapshot(
        [(px(10), qty(1)), (px(12), qty(2)), (px(11), qty(3))],
        [(px(20), qty(4)), (px(22), qty(5)), (px(21), qty(6))],
        ts_ns=5,
    )
    assert list(book.bids) == [(px(12), qty(2)), (px(11), qty(3))]
    assert list(book.asks) == [(px(20), qty(4)), (px(21), qty(6))]
    # A level outside the cap is dropped at once; deleting the best brings nothing back (it was cut).
    book.apply_update([(px(9), qty(7))], [(px(20), ZERO)], ts_ns=6)
    assert list(book.bids) == [(px(12), qty(2)), (px(11), qty(3))]
    assert list(book.asks) == [(px(21), qty(6))]


def test_top_of_zero_levels_is_empty_on_both_sides() -> None:
    book = OrderBook()
    book.apply_snapshot([(px(10), qty(1)), (px(11), qty(2))], [(px(20), qty(3)), (px(21), qty(4))], ts_ns=1)
    assert book.asks.top(0) == []
    assert book.bids.top(0) == []  # not the whole side: ``prices[-0:]`` is every price
    assert book.bids.top(1) == [(px(11), qty(2))]
    assert book.bids.top(5) == [(px(11), qty(2)), (px(10), qty(1))]


def test_absolute_quantities_replace_not_add() -> None:
    book = OrderBook()
    book.apply_snapshot([(px(10), qty(5))], [], ts_ns=1)
    book.apply_update([(px(10), qty(2))], [], ts_ns=2)
    assert book.best_bid() == (px(10), qty(2))


def test_deleting_an_absent_level_is_a_no_op() -> None:
    book = OrderBook()
    book.apply_snapshot([(px(10), qty(5))], [(px(20), qty(6))], ts_ns=1)
    book.apply_update([(px(11), ZERO)], [(px(19), ZERO), (px(21), ZERO)], ts_ns=2)
    assert list(book.bids) == [(px(10), qty(5))]
    assert list(book.asks) == [(px(20), qty(6))]
    side = BookSide(descending=True)
    side.set(px(3), ZERO)
    assert len(side) == 0 and side.best() is None


def test_negative_quantity_is_refused() -> None:
    book = OrderBook()
    with pytest.raises(ValueError):
        book.apply_update([(px(10), Decimal("-0.01"))], [], ts_ns=1)


@pytest.mark.parametrize("depth", [0, -1])
def test_depth_must_be_positive(depth: int) -> None:
    with pytest.raises(ValueError):
        OrderBook(depth=depth)


def test_mid_needs_both_sides() -> None:
    book = OrderBook()
    assert book.mid() is None
    book.apply_snapshot([(px(10), qty(1))], [], ts_ns=1)
    assert book.mid() is None
    book.apply_update([], [(px(13), qty(1))], ts_ns=2)
    assert book.mid() == Decimal("1.15")


# --- (b) fill estimates ----------------------------------------------------------------------


def manual_walk(levels: list[tuple[Decimal, Decimal]], size: Decimal) -> tuple[Decimal, Decimal, Decimal | None]:
    """(quantity, notional, last price touched) of taking ``size`` from ``levels`` (best first)."""
    got = notional = ZERO
    worst = None
    for p, q in levels:
        if got >= size:
            break
        take = min(q, size - got)
        got += take
        notional += take * p
        worst = p
    return got, notional, worst


@PROPERTY
@given(side_levels=book_sides, a=sizes, b=sizes, side=st.sampled_from([Side.BUY, Side.SELL]))
def test_estimate_fill_is_never_better_than_the_touch_and_worsens_with_size(
    side_levels: dict[Decimal, Decimal],
    a: Decimal,
    b: Decimal,
    side: Side,
) -> None:
    book = OrderBook()
    if side is Side.BUY:
        book.apply_snapshot([], side_levels.items(), ts_ns=1)
        touch = book.best_ask()
    else:
        book.apply_snapshot(side_levels.items(), [], ts_ns=1)
        touch = book.best_bid()
    assert touch is not None
    small, large = sorted((a, b))
    est_small = book.estimate_fill(side, small)
    est_large = book.estimate_fill(side, large)
    assert est_small.vwap is not None and est_large.vwap is not None
    if side is Side.BUY:
        assert est_small.vwap >= touch[0]
        assert est_large.vwap >= est_small.vwap
        assert est_large.worst_price is not None and est_small.worst_price is not None
        assert est_large.worst_price >= est_small.worst_price
    else:
        assert est_small.vwap <= touch[0]
        assert est_large.vwap <= est_small.vwap
        assert est_large.worst_price is not None and est_small.worst_price is not None
        assert est_large.worst_price <= est_small.worst_price


@PROPERTY
@given(side_levels=book_sides, size=sizes, side=st.sampled_from([Side.BUY, Side.SELL]))
def test_estimate_fill_matches_a_manual_walk(side_levels: dict[Decimal, Decimal], size: Decimal, side: Side) -> None:
    book = OrderBook()
    if side is Side.BUY:
        book.apply_snapshot([], side_levels.items(), ts_ns=1)
        levels = sorted(side_levels.items())
    else:
        book.apply_snapshot(side_levels.items(), [], ts_ns=1)
        levels = sorted(side_levels.items(), reverse=True)
    got, notional, worst = manual_walk(levels, size)
    est = book.estimate_fill(side, size)
    assert est.requested == size
    assert est.quantity == got
    assert est.notional == notional
    assert est.worst_price == worst  # the last level touched, i.e. the limit that gets this fill
    assert est.complete == (got == size)
    assert est.quantity <= sum(side_levels.values())


@PROPERTY
@given(
    side_levels=book_sides,
    limit=st.integers(min_value=1, max_value=200).map(px),
    size=sizes,
    side=st.sampled_from([Side.BUY, Side.SELL]),
)
def test_size_up_to_and_limited_estimates_match_a_manual_sum(
    side_levels: dict[Decimal, Decimal],
    limit: Decimal,
    size: Decimal,
    side: Side,
) -> None:
    book = OrderBook()
    if side is Side.BUY:
        book.apply_snapshot([], side_levels.items(), ts_ns=1)
        within = sum((q for p, q in side_levels.items() if p <= limit), ZERO)
    else:
        book.apply_snapshot(side_levels.items(), [], ts_ns=1)
        within = sum((q for p, q in side_levels.items() if p >= limit), ZERO)
    assert book.size_up_to(side, limit) == within
    est = book.estimate_fill(side, size, limit=limit)
    assert est.quantity == min(size, within)
    if est.worst_price is not None:
        assert est.worst_price <= limit if side is Side.BUY else est.worst_price >= limit


def test_estimate_fill_by_hand() -> None:
    book = OrderBook()
    book.apply_snapshot(
        [(px(990), qty(100))], [(px(1000), qty(100)), (px(1001), qty(200)), (px(1005), qty(50))], ts_ns=1
    )
    est = book.estimate_fill(Side.BUY, Decimal("2.5"))
    # 1.00 @ 100.0 + 1.50 @ 100.1 = 100.0 + 150.15 = 250.15
    assert est.quantity == Decimal("2.5")
    assert est.notional == Decimal("250.15")
    assert est.vwap == Decimal("100.06")
    assert est.worst_price == Decimal("100.1")
    assert est.complete
    # More than the book holds: 1 + 2 + 0.5 = 3.5 available, the last level is the worst touched.
    thin = book.estimate_fill(Side.BUY, Decimal("10"))
    assert thin.quantity == Decimal("3.5") and not thin.complete
    assert thin.worst_price == Decimal("100.5")
    empty = book.estimate_fill(Side.SELL, Decimal("1"), limit=Decimal("100"))
    assert empty.quantity == 0 and empty.vwap is None and empty.worst_price is None


# --- (c) crossed and stale books ---------------------------------------------------------------

# Bids live on ticks 1..50 and asks on 51..100, so no sequence of these can cross the book.
low_levels = st.lists(st.tuples(st.integers(1, 50).map(px), quantities), max_size=6)
high_levels = st.lists(st.tuples(st.integers(51, 100).map(px), quantities), max_size=6)


@PROPERTY
@given(
    depth=depths,
    steps=st.lists(st.tuples(low_levels, high_levels), min_size=1, max_size=8),
    cross_by=st.integers(min_value=0, max_value=5),
)
def test_valid_updates_never_cross_and_a_crossing_update_is_reported(
    depth: int | None,
    steps: list[tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]],
    cross_by: int,
) -> None:
    book = OrderBook(depth=depth)
    book.apply_snapshot(*steps[0], ts_ns=1)
    assert not book.is_crossed()
    for i, (bids, asks) in enumerate(steps[1:], start=2):
        book.apply_update(bids, asks, ts_ns=i)
        assert not book.is_crossed()
    # Now a bid at (cross_by = 0: locked) or above the best ask: a book no venue would publish.
    book.apply_update([], [(px(60), qty(1))], ts_ns=100)
    ask = book.best_ask()
    assert ask is not None
    ask_ticks = int(ask[0] / TICK)
    book.apply_update([(px(ask_ticks + cross_by), qty(1))], [], ts_ns=101)
    assert book.is_crossed()


def test_one_sided_or_empty_book_is_not_crossed() -> None:
    book = OrderBook()
    assert not book.is_crossed()
    book.apply_snapshot([(px(10), qty(1))], [], ts_ns=1)
    assert not book.is_crossed()


@pytest.mark.parametrize(
    ("last", "now", "max_age", "stale"),
    [
        (None, 0, 1_000, True),  # nothing ever applied
        (1_000, 1_000, 0, False),  # just updated
        (1_000, 2_000, 1_000, False),  # exactly max_age old: not yet stale
        (1_000, 2_001, 1_000, True),  # one nanosecond more
        (1_000, 1_500, 1_000, False),
    ],
)
def test_is_stale(last: int | None, now: int, max_age: int, stale: bool) -> None:
    book = OrderBook()
    if last is not None:
        book.apply_snapshot([(px(10), qty(1))], [(px(11), qty(1))], ts_ns=last)
    assert book.is_stale(now, max_age) is stale


def test_any_update_refreshes_staleness_even_an_empty_one() -> None:
    book = OrderBook()
    book.apply_snapshot([(px(10), qty(1))], [(px(11), qty(1))], ts_ns=0)
    assert book.is_stale(5_000, 1_000)
    book.apply_update([], [], ts_ns=4_500)
    assert not book.is_stale(5_000, 1_000)
    assert book.sequence == 2
