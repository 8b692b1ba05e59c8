"""The simulated venue and market, driven by a ManualClock (test layer (a): plain asyncio, no UI).

Order tests connect the venues of a :class:`SimulatedMarket` but never step the market, so the
books move only because of the orders under test. ``place_order`` and friends sleep on the
injected clock for the ack latency, so every call runs as a task while the test advances time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from arbtui.assembly import build_engine
from arbtui.config import Config, default_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS, ManualClock
from arbtui.domain.events import BookUpdated, Event, VenueStatus
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.orders import Liquidity, OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.simulated import SimulatedVenue

D = Decimal
T = TypeVar("T")
MARKET = "BTC-USD"


def sim_config(seed: int = 7, **sim: Any) -> Config:
    """The built-in demo with every fault rate at 0, then ``sim`` overrides on every venue."""
    cfg = default_config()
    faults: dict[str, Any] = {"reject_rate": D(0), "timeout_rate": D(0), "partial_fill_rate": D(0)}
    faults.update(sim)
    venues = tuple(replace(v, sim=replace(v.sim, **faults)) for v in cfg.venues)
    return replace(cfg, seed=seed, venues=venues)


class Recorder:
    """A VenueListener that keeps what it was told."""

    def __init__(self) -> None:
        self.books: list[tuple[str, str, tuple[Decimal, Decimal] | None, tuple[Decimal, Decimal] | None, int]] = []
        self.statuses: list[tuple[str, VenueStatus, str]] = []

    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        self.books.append((venue, market, book.best_bid(), book.best_ask(), book.sequence))

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        self.statuses.append((venue, status, detail))


async def settle(
    clock: ManualClock, call: Awaitable[T], step_ns: int = 5 * NS_PER_MS, limit_ns: int = 5_000 * NS_PER_MS
) -> T:
    """Run ``call`` as a task while moving the clock; fail if it has not returned within ``limit_ns``."""
    task = asyncio.ensure_future(call)
    waited = 0
    while not task.done():
        assert waited < limit_ns, "the call never returned"
        await clock.advance(step_ns)
        waited += step_ns
    return task.result()


async def connected(cfg: Config, venue_name: str = "kraken") -> tuple[ManualClock, SimulatedVenue, Recorder]:
    clock = ManualClock(start_ns=1_000 * NS_PER_MS)
    market = SimulatedMarket(cfg, clock)
    venue = next(v for v in market.venues if v.name == venue_name)
    rec = Recorder()
    await venue.connect(rec)
    return clock, venue, rec


def book_of(venue: SimulatedVenue, market: str = MARKET) -> OrderBook:
    book = venue.book(market)
    assert book is not None
    return book


def ladder(book: OrderBook) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    return list(book.bids), list(book.asks)


def buy(cid: str, qty: Decimal, limit: Decimal, tif: TimeInForce = TimeInForce.IOC) -> OrderRequest:
    return OrderRequest(cid, "kraken", MARKET, Side.BUY, qty, limit, tif)


def assert_consistent(report: OrderReport) -> None:
    """A report's totals are the sums of its fills."""
    filled = sum((f.quantity for f in report.fills), D(0))
    notional = sum((f.quantity * f.price for f in report.fills), D(0))
    assert report.filled_quantity == filled
    assert report.fee == sum((f.fee for f in report.fills), D(0))
    if filled:
        assert report.average_price == notional / filled
    else:
        assert report.average_price is None
    assert report.remaining == report.quantity - filled


# --- (a) determinism ---------------------------------------------------------------------------


async def record_run(cfg: Config, steps: int, step_ns: int) -> list[tuple[object, ...]]:
    clock = ManualClock()
    engine, market = build_engine(cfg, clock)
    assert market is not None
    seen: list[tuple[object, ...]] = []

    def listen(ev: Event) -> None:
        if isinstance(ev, BookUpdated):
            seen.append((ev.ts_ns, ev.venue, ev.market, ev.best_bid, ev.best_ask, ev.sequence))

    engine.subscribe(listen)
    await engine.start()
    try:
        for _ in range(steps):
            await clock.advance(step_ns)
    finally:
        await engine.stop()
    assert engine.failure is None
    return seen


async def test_same_seed_and_clock_steps_give_identical_books_and_another_seed_does_not() -> None:
    first = await record_run(sim_config(seed=11), steps=40, step_ns=50 * NS_PER_MS)
    again = await record_run(sim_config(seed=11), steps=40, step_ns=50 * NS_PER_MS)
    other = await record_run(sim_config(seed=12), steps=40, step_ns=50 * NS_PER_MS)
    # Two seconds of quotes on six books: the run is not trivially empty.
    assert len(first) > 6 * 10
    assert {(v, m) for _, v, m, *_ in first} == {
        ("kraken", "BTC-USD"),
        ("kraken", "ETH-USD"),
        ("coinbase", "BTC-USD"),
        ("coinbase", "ETH-USD"),
        ("polymarket", "FEDCUT-YES"),
        ("polymarket", "FEDCUT-NO"),
    }
    assert len({row[3] for row in first if row[1:3] == ("kraken", MARKET)}) > 1  # the touch moved
    assert again == first
    assert other != first


async def test_a_run_depends_on_the_times_not_on_how_finely_the_clock_is_stepped() -> None:
    coarse = await record_run(sim_config(seed=3), steps=10, step_ns=100 * NS_PER_MS)
    fine = await record_run(sim_config(seed=3), steps=100, step_ns=10 * NS_PER_MS)
    assert coarse == fine


# --- (b) an IOC across levels --------------------------------------------------------------------


async def test_ioc_buy_larger_than_the_touch_walks_levels_and_takes_the_liquidity() -> None:
    cfg = sim_config()
    clock, kraken, rec = await connected(cfg)
    book = book_of(kraken)
    asks = book.asks.top(3)
    touched = [p for p, _ in asks]
    within = sum((q for _, q in asks), D(0))
    limit = asks[-1][0]
    qty = within + D("0.5")  # more than the book holds up to the limit
    untouched_bids, untouched_deeper = list(book.bids), list(book.asks)[3:]
    before = kraken.free_balances()
    publishes = len(rec.books)

    report = await settle(clock, kraken.place_order(buy("ioc-1", qty, limit)))

    assert report.status is OrderStatus.EXPIRED
    assert report.reason == "IOC remainder expired"
    assert report.filled_quantity == within
    assert report.remaining == D("0.5")
    assert [(f.price, f.quantity) for f in report.fills] == asks  # every level, best first, whole
    assert all(f.liquidity is Liquidity.TAKER for f in report.fills)
    assert_consistent(report)
    notional = sum((p * q for p, q in asks), D(0))
    taker = kraken.fees(MARKET).taker_rate
    assert taker == D("0.0010")
    fee = notional * taker  # notional fees are linear, so per-fill fees add up to the fee on the total
    assert report.fee == fee
    assert report.average_price == notional / within
    assert report.venue_order_id is not None

    # The liquidity it took is gone from the published book at once; nothing else moved.
    after = book_of(kraken)
    assert len(rec.books) == publishes + 1
    assert after.best_ask() is not None and after.best_ask()[0] > limit
    assert all(after.asks.quantity_at(p) == 0 for p in touched)
    assert list(after.asks) == untouched_deeper
    assert list(after.bids) == untouched_bids

    # Balances moved by exactly qty * price + fee.
    now = kraken.free_balances()
    assert now["USD"] == before["USD"] - notional - fee
    assert now["BTC"] == before["BTC"] + within
    assert now["ETH"] == before["ETH"]

    # order_status agrees with the reply, and the order is final.
    status = await settle(clock, kraken.order_status("ioc-1"))
    assert (status.status, status.filled_quantity, status.fee, status.fills) == (
        report.status,
        report.filled_quantity,
        report.fee,
        report.fills,
    )


async def test_taken_liquidity_stays_gone_through_a_refresh_within_the_refill_pause() -> None:
    cfg = sim_config()
    clock = ManualClock(start_ns=1_000 * NS_PER_MS)
    fair = {"BTC-USD": 65_000.0, "ETH-USD": 3_400.0}
    kraken = fixed_fair_venue(cfg, clock, fair)
    await kraken.connect(Recorder())
    best = book_of(kraken).best_ask()
    assert best is not None
    report = await settle(clock, kraken.place_order(buy("ioc-1", best[1], best[0])))
    assert report.status is OrderStatus.FILLED
    assert book_of(kraken).asks.quantity_at(best[0]) == 0
    # Same fair value, same quotes wanted: the market maker does not refill the level for a second.
    kraken.maybe_refresh(clock.now_ns() + 200 * NS_PER_MS)
    assert book_of(kraken).asks.quantity_at(best[0]) == 0
    kraken.maybe_refresh(clock.now_ns() + 1_500 * NS_PER_MS)
    assert book_of(kraken).asks.quantity_at(best[0]) > 0


async def test_fok_that_cannot_fill_trades_nothing_on_the_venue() -> None:
    clock, kraken, _ = await connected(sim_config())
    book = book_of(kraken)
    best = book.best_ask()
    assert best is not None
    before_book, before_bal = ladder(book), kraken.free_balances()
    report = await settle(clock, kraken.place_order(buy("fok-1", best[1] + D("0.00000001"), best[0], TimeInForce.FOK)))
    assert report.status is OrderStatus.EXPIRED
    assert report.filled_quantity == 0 and report.fills == ()
    assert ladder(book_of(kraken)) == before_book
    assert kraken.free_balances() == before_bal


# --- (c) rejects --------------------------------------------------------------------------------


async def test_reject_rate_one_rejects_with_nothing_filled_and_nothing_moved() -> None:
    clock, kraken, rec = await connected(sim_config(reject_rate=D(1)))
    book = book_of(kraken)
    best = book.best_ask()
    assert best is not None
    before_book, before_seq, before_bal = ladder(book), book.sequence, kraken.free_balances()
    publishes = len(rec.books)
    report = await settle(clock, kraken.place_order(buy("r-1", best[1], best[0])))
    assert report.status is OrderStatus.REJECTED
    assert report.reason is not None and report.reason
    assert report.filled_quantity == 0 and report.fills == () and report.fee == 0
    assert report.average_price is None
    assert kraken.free_balances() == before_bal
    assert ladder(book_of(kraken)) == before_book and book_of(kraken).sequence == before_seq
    assert len(rec.books) == publishes


# --- (d) a reply that never comes -------------------------------------------------------------------


async def test_timeout_rate_one_never_replies_but_the_order_executed() -> None:
    clock, kraken, _ = await connected(sim_config(timeout_rate=D(1)))
    best = book_of(kraken).best_ask()
    assert best is not None
    before = kraken.free_balances()
    task = asyncio.create_task(kraken.place_order(buy("t-1", best[1], best[0])))
    # Far beyond the ack latency (45 ms + up to 25 ms jitter) of simulated time: still no reply.
    await clock.advance(2_000 * NS_PER_MS)
    assert not task.done()
    status = await settle(clock, kraken.order_status("t-1"))
    assert status.status is OrderStatus.FILLED
    assert status.filled_quantity == best[1]
    assert [(f.price, f.quantity) for f in status.fills] == [best]
    assert kraken.free_balances()["BTC"] == before["BTC"] + best[1]
    assert book_of(kraken).asks.quantity_at(best[0]) == 0
    # Closing the connection ends the wait with a retryable transport error, not a rejection.
    await kraken.close()
    with pytest.raises(VenueError) as err:
        await task
    assert err.value.retryable


# --- (e) partial fills ---------------------------------------------------------------------------------


async def test_partial_fill_rate_one_fills_less_than_the_touch() -> None:
    clock, kraken, _ = await connected(sim_config(partial_fill_rate=D(1)))
    best = book_of(kraken).best_ask()
    assert best is not None
    report = await settle(clock, kraken.place_order(buy("p-1", best[1], best[0])))
    # Someone else took 30-90% of the level first; we get the rest, and the IOC remainder expires.
    assert 0 < report.filled_quantity < best[1]
    assert report.status is OrderStatus.EXPIRED
    assert all(f.price == best[0] for f in report.fills)
    assert_consistent(report)
    assert book_of(kraken).asks.quantity_at(best[0]) == 0  # between them, the level is gone


# --- (f) balances --------------------------------------------------------------------------------------


async def test_insufficient_balance_is_a_rejected_report_naming_the_asset() -> None:
    cfg = sim_config(balances={"USD": D("100"), "BTC": D("0")})
    clock, kraken, _ = await connected(cfg)
    book = book_of(kraken)
    ask, bid = book.best_ask(), book.best_bid()
    assert ask is not None and bid is not None
    before_book = ladder(book)

    report = await settle(clock, kraken.place_order(buy("b-1", D("0.01"), ask[0])))
    assert report.status is OrderStatus.REJECTED
    assert report.reason is not None and "USD" in report.reason and "insufficient" in report.reason
    assert report.filled_quantity == 0

    sell = OrderRequest("s-1", "kraken", MARKET, Side.SELL, D("0.01"), bid[0], TimeInForce.IOC)
    report = await settle(clock, kraken.place_order(sell))
    assert report.status is OrderStatus.REJECTED
    assert report.reason is not None and "BTC" in report.reason
    assert ladder(book_of(kraken)) == before_book
    assert kraken.free_balances() == {"USD": D("100"), "BTC": D("0")}


async def test_a_price_off_the_tick_grid_is_rejected() -> None:
    clock, kraken, _ = await connected(sim_config())
    ask = book_of(kraken).best_ask()
    assert ask is not None
    report = await settle(clock, kraken.place_order(buy("x-1", D("0.01"), ask[0] + D("0.05"))))
    assert report.status is OrderStatus.REJECTED
    assert report.reason is not None and "tick" in report.reason


async def test_duplicate_ids_and_unknown_orders() -> None:
    clock, kraken, _ = await connected(sim_config())
    ask = book_of(kraken).best_ask()
    assert ask is not None
    await settle(clock, kraken.place_order(buy("d-1", D("0.01"), ask[0])))
    with pytest.raises(VenueError):
        await settle(clock, kraken.place_order(buy("d-1", D("0.01"), ask[0])))
    with pytest.raises(UnknownOrder):
        await settle(clock, kraken.order_status("nope"))
    with pytest.raises(UnknownOrder):
        await settle(clock, kraken.cancel_order("nope"))


# --- (g) GTC orders --------------------------------------------------------------------------------------


async def test_gtc_buy_below_the_market_rests_reserves_funds_and_is_cancellable() -> None:
    clock, kraken, _ = await connected(sim_config())
    book = book_of(kraken)
    bid = book.best_bid()
    assert bid is not None
    price = bid[0] - D("0.1")  # between the best two bids: inside the published depth
    assert book.bids.quantity_at(price) == 0
    before = kraken.free_balances()
    report = await settle(clock, kraken.place_order(buy("g-1", D("0.02"), price, TimeInForce.GTC)))
    assert report.status is OrderStatus.OPEN
    assert report.filled_quantity == 0
    assert book_of(kraken).bids.quantity_at(price) == D("0.02")  # published like any other level
    assert kraken.free_balances()["USD"] == before["USD"] - D("0.02") * price

    cancelled = await settle(clock, kraken.cancel_order("g-1"))
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.filled_quantity == 0
    assert book_of(kraken).bids.quantity_at(price) == 0
    assert kraken.free_balances() == before
    # A second cancel changes nothing.
    again = await settle(clock, kraken.cancel_order("g-1"))
    assert again.status is OrderStatus.CANCELLED


def fixed_fair_venue(
    cfg: Config, clock: ManualClock, fair: dict[str, float], fees: FeeSchedule | None = None
) -> SimulatedVenue:
    """Kraken as configured, quoting around fair values the test sets, with no venue noise."""
    vc = cfg.venue("kraken")
    vc = replace(vc, sim=replace(vc.sim, noise_bps=D(0)), fees=fees or vc.fees)
    instruments = cfg.instruments()
    return SimulatedVenue(
        vc,
        instruments.listings_for_venue("kraken"),
        instruments.markets,
        {m.id: m.sim for m in cfg.markets},
        clock,
        cfg.seed,
        lambda market, _t: fair[market],
    )


async def test_gtc_buy_is_filled_as_maker_when_quotes_move_through_it() -> None:
    cfg = sim_config()
    clock = ManualClock(start_ns=1_000 * NS_PER_MS)
    fair = {"BTC-USD": 65_000.0, "ETH-USD": 3_400.0}
    fees = FeeSchedule(maker_rate=D("0.0002"), taker_rate=D("0.0010"))
    kraken = fixed_fair_venue(cfg, clock, fair, fees)
    rec = Recorder()
    await kraken.connect(rec)
    bid, ask = book_of(kraken).best_bid(), book_of(kraken).best_ask()
    # mid 65000.0 on a 0.1 tick, one tick each side.
    assert bid is not None and ask is not None and (bid[0], ask[0]) == (D("64999.9"), D("65000.1"))
    limit = D("64990.0")
    before = kraken.free_balances()
    report = await settle(clock, kraken.place_order(buy("m-1", D("0.01"), limit, TimeInForce.GTC)))
    assert report.status is OrderStatus.OPEN

    # The market falls 100 (about 15 bp): the market makers' new asks are all below our bid.
    fair["BTC-USD"] = 64_900.0
    kraken.maybe_refresh(clock.now_ns())
    status = await settle(clock, kraken.order_status("m-1"))
    assert status.status is OrderStatus.FILLED
    assert len(status.fills) == 1
    fill = status.fills[0]
    assert (fill.price, fill.quantity, fill.liquidity) == (limit, D("0.01"), Liquidity.MAKER)
    # Maker fee: 64990.0 * 0.01 * 0.0002 = 0.12998
    assert fill.fee == D("0.12998")
    after = kraken.free_balances()
    assert after["USD"] == before["USD"] - D("649.900") - D("0.12998")
    assert after["BTC"] == before["BTC"] + D("0.01")
    new_book = book_of(kraken)
    assert new_book.bids.quantity_at(limit) == 0
    assert not new_book.is_crossed()
    new_ask = new_book.best_ask()
    assert new_ask is not None and new_ask[0] == D("64900.1")
    # The market maker's ask that traded with us shows 0.01 less than it quoted.
    cancel = await settle(clock, kraken.cancel_order("m-1"))
    assert cancel.status is OrderStatus.FILLED  # a cancel cannot undo a fill


async def test_closed_venue_refuses_orders() -> None:
    clock, kraken, rec = await connected(sim_config())
    await kraken.close()
    assert kraken.status is VenueStatus.CLOSED
    assert rec.statuses[-1][1] is VenueStatus.CLOSED
    with pytest.raises(VenueError) as err:
        await settle(clock, kraken.place_order(buy("c-1", D("0.01"), D("65000.0"))))
    assert err.value.retryable
