"""MatchingBook: price-time priority, IOC/FOK/GTC semantics, and liquidity that trades is gone."""

from __future__ import annotations

from decimal import Decimal

import pytest

from arbtui.domain.orders import Side, TimeInForce
from arbtui.sim.matching import MatchingBook

D = Decimal
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK


def ladder() -> MatchingBook:
    """Asks 100 x 1 (a), 100 x 2 (b, behind a), 101 x 3 (c); bids 99 x 4 (d)."""
    book = MatchingBook()
    for tag, side, price, qty in (
        ("a", Side.SELL, "100", "1"),
        ("b", Side.SELL, "100", "2"),
        ("c", Side.SELL, "101", "3"),
        ("d", Side.BUY, "99", "4"),
    ):
        res = book.submit("mm", side, D(price), D(qty), GTC, tag=tag)
        assert res.rested is not None and not res.trades
    book.take_dirty()
    return book


def test_resting_orders_build_the_levels() -> None:
    book = ladder()
    assert book.snapshot() == ([(D(99), D(4))], [(D(100), D(3)), (D(101), D(3))])
    assert book.level_quantity(Side.SELL, D(100)) == D(3)
    assert book.available(Side.BUY, D(100)) == D(3)
    assert book.available(Side.BUY, D(101)) == D(6)
    assert book.available(Side.BUY, D("99.9")) == D(0)
    assert book.available(Side.SELL, D(99)) == D(4)


def test_price_time_priority_fills_the_first_order_in_first() -> None:
    book = ladder()
    res = book.submit("client", Side.BUY, D(100), D("1.5"), IOC)
    assert [(t.maker.tag, t.price, t.quantity) for t in res.trades] == [("a", D(100), D(1)), ("b", D(100), D("0.5"))]
    assert res.filled == D("1.5") and res.expired == 0 and res.rested is None
    # a is gone, b is still first in the queue with what is left.
    assert [o.tag for o in book.orders_of("mm") if o.price == D(100)] == ["b"]
    assert book.level_quantity(Side.SELL, D(100)) == D("1.5")
    res = book.submit("client", Side.BUY, D(100), D("0.5"), IOC)
    assert [(t.maker.tag, t.quantity) for t in res.trades] == [("b", D("0.5"))]


def test_better_prices_trade_first_and_at_the_makers_price() -> None:
    book = ladder()
    res = book.submit("client", Side.BUY, D(105), D(4), IOC)
    # A buy limited at 105 still pays each resting order's own price, best first.
    assert [(t.price, t.quantity) for t in res.trades] == [(D(100), D(1)), (D(100), D(2)), (D(101), D(1))]
    assert all(t.taker_id == res.order_id for t in res.trades)


def test_ioc_partial_fill_expires_the_remainder_and_takes_the_liquidity() -> None:
    book = ladder()
    res = book.submit("client", Side.BUY, D(100), D(5), IOC)
    assert res.filled == D(3)
    assert res.expired == D(2)
    assert res.rested is None
    # The 100 level is gone; the 101 level (beyond the limit) is untouched and the buy did not rest.
    assert book.snapshot() == ([(D(99), D(4))], [(D(101), D(3))])
    assert book.order(res.order_id) is None
    assert book.take_dirty() == ([], [(D(100), D(0))])


def test_a_sell_takes_bids_and_shrinks_the_level() -> None:
    book = ladder()
    res = book.submit("client", Side.SELL, D(99), D("1.25"), IOC)
    assert res.filled == D("1.25")
    assert book.level_quantity(Side.BUY, D(99)) == D("2.75")
    assert book.take_dirty() == ([(D(99), D("2.75"))], [])


def test_fok_that_cannot_fill_entirely_trades_nothing() -> None:
    book = ladder()
    before = book.snapshot()
    res = book.submit("client", Side.BUY, D(100), D("3.01"), FOK)  # only 3 within 100
    assert res.trades == [] and res.filled == 0 and res.expired == D("3.01") and res.rested is None
    assert book.snapshot() == before
    assert book.take_dirty() == ([], [])


def test_fok_that_can_fill_fills_entirely() -> None:
    book = ladder()
    res = book.submit("client", Side.BUY, D(101), D(5), FOK)
    assert res.filled == D(5) and res.expired == 0
    assert book.snapshot()[1] == [(D(101), D(1))]


def test_gtc_remainder_rests_at_its_limit_behind_earlier_orders() -> None:
    book = ladder()
    res = book.submit("client", Side.BUY, D(100), D(4), GTC, tag="cid-1")
    assert res.filled == D(3) and res.expired == 0
    assert res.rested is not None
    rested = res.rested
    assert (rested.side, rested.price, rested.remaining, rested.tag) == (Side.BUY, D(100), D(1), "cid-1")
    assert book.order(res.order_id) is res.rested
    assert book.snapshot() == ([(D(100), D(1)), (D(99), D(4))], [(D(101), D(3))])
    # A later buy at the same price queues behind it; a sell at 100 fills the first one in.
    later = book.submit("other", Side.BUY, D(100), D(2), GTC)
    hit = book.submit("mm", Side.SELL, D(100), D("1.5"), IOC)
    assert [(t.maker.owner, t.quantity) for t in hit.trades] == [("client", D(1)), ("other", D("0.5"))]
    assert book.order(res.order_id) is None  # fully filled: no longer resting
    assert book.order(later.order_id) is not None and book.order(later.order_id).remaining == D("1.5")


def test_a_gtc_that_does_not_cross_rests_without_trading() -> None:
    book = ladder()
    res = book.submit("client", Side.SELL, D("100.5"), D(1), GTC)
    assert res.trades == [] and res.filled == 0 and res.rested is not None
    assert book.snapshot()[1] == [(D(100), D(3)), (D("100.5"), D(1)), (D(101), D(3))]


def test_cancel_removes_the_order_and_an_emptied_level() -> None:
    book = ladder()
    c = next(o for o in book.orders_of("mm") if o.tag == "c")
    cancelled = book.cancel(c.order_id)
    assert cancelled is c
    assert book.snapshot()[1] == [(D(100), D(3))]
    assert book.take_dirty() == ([], [(D(101), D(0))])
    assert book.cancel(c.order_id) is None  # cancelling twice is a no-op
    assert book.cancel(12345) is None


def test_cancel_of_one_order_leaves_the_rest_of_its_level() -> None:
    book = ladder()
    a = next(o for o in book.orders_of("mm") if o.tag == "a")
    book.cancel(a.order_id)
    assert book.level_quantity(Side.SELL, D(100)) == D(2)
    res = book.submit("client", Side.BUY, D(100), D(1), IOC)
    assert [t.maker.tag for t in res.trades] == ["b"]


def test_reduce_keeps_queue_position() -> None:
    book = ladder()
    a = next(o for o in book.orders_of("mm") if o.tag == "a")
    book.reduce(a.order_id, D("0.4"))
    assert book.level_quantity(Side.SELL, D(100)) == D("2.4")
    res = book.submit("client", Side.BUY, D(100), D("0.5"), IOC)
    # a, though smaller now, is still first in line.
    assert [(t.maker.tag, t.quantity) for t in res.trades] == [("a", D("0.4")), ("b", D("0.1"))]


def test_reduce_to_zero_cancels_and_growing_is_refused() -> None:
    book = ladder()
    a = next(o for o in book.orders_of("mm") if o.tag == "a")
    with pytest.raises(ValueError):
        book.reduce(a.order_id, D(2))
    assert a.remaining == D(1)
    book.reduce(a.order_id, D(0))
    assert book.order(a.order_id) is None
    assert book.level_quantity(Side.SELL, D(100)) == D(2)


def test_dirty_levels_report_absolute_quantities_sorted() -> None:
    book = MatchingBook()
    book.submit("mm", Side.BUY, D(98), D(1), GTC)
    book.submit("mm", Side.BUY, D(99), D(2), GTC)
    book.submit("mm", Side.SELL, D(102), D(3), GTC)
    book.submit("mm", Side.SELL, D(101), D(4), GTC)
    assert book.take_dirty() == ([(D(99), D(2)), (D(98), D(1))], [(D(101), D(4)), (D(102), D(3))])
    assert book.take_dirty() == ([], [])
