"""The Venue contract (arbtui/venues/base.py), checked unchanged against every implementation:
the in-process simulated venue, and Kraken, Coinbase and Polymarket in LIVE mode against their
loopback servers (127.0.0.1, their own wire formats and authentication)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from arbtui.config import parse_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import LiveClock
from arbtui.domain.events import VenueStatus
from arbtui.domain.orders import OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.base import UnknownOrder, Venue
from arbtui.venues.secrets import Credentials, Secret

D = Decimal
YES = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
NO = "52114319501245915516055106046884209969926127482827954674443846427813813222426"


@dataclass
class Listener:
    books: int = 0
    statuses: list[VenueStatus] = field(default_factory=list)
    closed: bool = False
    after_close: int = 0

    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        self.books += 1
        if self.closed:
            self.after_close += 1

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        self.statuses.append(status)
        if self.closed and status is not VenueStatus.CLOSED:
            self.after_close += 1


@dataclass
class Case:
    venue: Venue
    market: str
    base: str
    quote: str
    tick: Decimal
    lot: Decimal
    min_size: Decimal
    stop: Callable[[], Awaitable[None]]


def _market_tables(kind: str) -> dict[str, Any]:
    if kind == "polymarket":
        token = {"tick_size": "0.01", "lot_size": "0.01", "min_size": "5"}
        return {
            "FED-YES": {
                "kind": "outcome",
                "event": "FED",
                "outcome": "YES",
                "base": "FED-YES",
                "quote": "USDC",
                "max_quantity": "1000",
                "venues": {"v": {"symbol": YES, **token}},
            },
            "FED-NO": {
                "kind": "outcome",
                "event": "FED",
                "outcome": "NO",
                "base": "FED-NO",
                "quote": "USDC",
                "max_quantity": "1000",
                "venues": {"v": {"symbol": NO, **token}},
            },
        }
    symbol, tick = {"kraken": ("BTC/USD", "0.1"), "coinbase": ("BTC-USD", "0.01")}.get(kind, ("BTC-USD", "0.1"))
    return {
        "BTC-USD": {
            "base": "BTC",
            "quote": "USD",
            "max_quantity": "5",
            "sim": {"start_price": "65000", "level_size": "0.5"},
            "venues": {"v": {"symbol": symbol, "tick_size": tick, "lot_size": "0.0001"}},
        }
    }


async def _real(kind: str, **server_options: Any) -> Case:
    server_mod = importlib.import_module(f"arbtui.sim.loopback.{kind}")
    cls = getattr(server_mod, f"Loopback{kind.capitalize()}")
    if kind == "polymarket":
        markets = {
            YES: LoopbackMarket("0.62", "0.01", "0.01", level_size="400", probability=True),
            NO: LoopbackMarket("0.38", "0.01", "0.01", level_size="400", probability=True),
        }
        balances = {"USDC": D("100000")}
    else:
        symbol, tick = ("BTC/USD", "0.1") if kind == "kraken" else ("BTC-USD", "0.01")
        markets = {symbol: LoopbackMarket("65000", tick, "0.0001", level_size="0.5")}
        balances = {"USD": D("10000000"), "BTC": D("100")}
    server = cls(markets, seed=3, interval_ms=50, balances=balances, **server_options)
    await server.start()
    table = server.venue_table()
    cfg = parse_config({"mode": "paper", "venues": {"v": table}, "markets": _market_tables(kind)}, "conformance")
    vc = cfg.venue("v")
    inst = cfg.instruments()
    creds = Credentials("v", {k: Secret(v) for k, v in server.credentials.items()}, "test")
    build = importlib.import_module(f"arbtui.venues.{kind}").build_venue
    venue = build(vc, inst.listings_for_venue("v"), dict(inst.markets), LiveClock(), creds, live=True, tap=None)
    market = "FED-YES" if kind == "polymarket" else "BTC-USD"
    lst = inst.listing("v", market)
    m = inst.markets[market]
    return Case(venue, market, m.base, m.quote, lst.tick_size, lst.lot_size, lst.min_size, server.stop)


async def _simulated() -> Case:
    sim = {"ack_latency_ms": 5, "latency_jitter_ms": 0, "reject_rate": "0", "timeout_rate": "0"}
    sim |= {"partial_fill_rate": "0", "update_interval_ms": 50, "balances": {"USD": "10000000", "BTC": "100"}}
    data = {
        "venues": {"v": {"kind": "simulated", "maker_fee": "0", "taker_fee": "0.001", "sim": sim}},
        "markets": _market_tables("simulated"),
    }
    cfg = parse_config(data, "conformance")
    market = SimulatedMarket(cfg, LiveClock())
    task = asyncio.create_task(market.run(), name="sim-market")
    inst = cfg.instruments()
    lst = inst.listing("v", "BTC-USD")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return Case(market.venues[0], "BTC-USD", "BTC", "USD", lst.tick_size, lst.lot_size, lst.min_size, stop)


KINDS = ["simulated", "kraken", "coinbase", "polymarket", "polymarket-v2"]


async def _make(kind: str) -> Case:
    if kind == "simulated":
        return await _simulated()
    if kind == "polymarket-v2":  # a CLOB that reports V2 orders (GET /version)
        return await _real("polymarket", order_version=2)
    return await _real(kind)


@pytest.fixture(params=KINDS)
async def case(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Case, Listener]]:
    c = await _make(request.param)
    listener = Listener()
    await c.venue.connect(listener)
    deadline = asyncio.get_running_loop().time() + 15
    while (b := c.venue.book(c.market)) is None or b.best_bid() is None or b.best_ask() is None:
        assert asyncio.get_running_loop().time() < deadline, "no book within 15 s"
        await asyncio.sleep(0.02)
    try:
        yield c, listener
    finally:
        await c.venue.close()
        await c.stop()


_seq = iter(range(1, 10**6))


def cid() -> str:
    return f"aconf{next(_seq):07d}x"


def order(c: Case, side: Side, qty: Decimal, price: Decimal, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(cid(), c.venue.name, c.market, side, qty, price, tif)


def touch(c: Case) -> tuple[Decimal, Decimal, Decimal]:
    book = c.venue.book(c.market)
    assert book is not None
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is not None and ask is not None
    return bid[0], ask[0], ask[1]


def check_report(c: Case, req: OrderRequest, rep: Any) -> None:
    """What every report must satisfy, whatever happened."""
    assert rep.client_order_id == req.client_order_id and rep.venue == c.venue.name
    assert D(0) <= rep.filled_quantity <= req.quantity and rep.fee >= 0
    assert sum((f.quantity for f in rep.fills), D(0)) == rep.filled_quantity
    if rep.filled_quantity:
        assert rep.average_price is not None
        for f in rep.fills:  # never through the limit
            assert f.price <= req.limit_price if req.side is Side.BUY else f.price >= req.limit_price
    if rep.status is OrderStatus.REJECTED:
        assert rep.filled_quantity == 0 and rep.reason


async def test_connect_delivers_books_and_status(case: tuple[Case, Listener]) -> None:
    c, listener = case
    bid, ask, _ = touch(c)
    assert bid < ask
    assert c.venue.status is VenueStatus.CONNECTED and VenueStatus.CONNECTED in listener.statuses
    assert listener.books > 0
    assert c.venue.fees(c.market).taker_rate >= 0
    assert [lst.market for lst in c.venue.listings].count(c.market) == 1


async def test_ioc_at_the_ask_fills_within_its_limit_and_is_final(case: tuple[Case, Listener]) -> None:
    c, _ = case
    _, ask, ask_qty = touch(c)
    qty = max(c.min_size, min(ask_qty, c.min_size * 2))
    req = order(c, Side.BUY, qty, ask + 5 * c.tick, TimeInForce.IOC)
    rep = await c.venue.place_order(req)
    check_report(c, req, rep)
    assert rep.status in (OrderStatus.FILLED, OrderStatus.EXPIRED) and rep.filled_quantity > 0
    again = await c.venue.order_status(req.client_order_id)
    assert again.status is rep.status and again.filled_quantity == rep.filled_quantity


async def test_ioc_that_cannot_cross_expires_with_nothing(case: tuple[Case, Listener]) -> None:
    c, _ = case
    bid, _, _ = touch(c)
    req = order(c, Side.BUY, c.min_size, bid - 10 * c.tick, TimeInForce.IOC)
    rep = await c.venue.place_order(req)
    check_report(c, req, rep)
    assert rep.status is OrderStatus.EXPIRED and rep.filled_quantity == 0


async def test_fok_larger_than_the_book_fills_nothing(case: tuple[Case, Listener]) -> None:
    c, _ = case
    _, ask, _ = touch(c)
    req = order(c, Side.BUY, D(900), ask, TimeInForce.FOK)
    rep = await c.venue.place_order(req)
    check_report(c, req, rep)
    assert rep.status in (OrderStatus.EXPIRED, OrderStatus.REJECTED) and rep.filled_quantity == 0


async def test_gtc_rests_and_cancels(case: tuple[Case, Listener]) -> None:
    c, _ = case
    bid, _, _ = touch(c)
    req = order(c, Side.BUY, c.min_size, bid - 10 * c.tick, TimeInForce.GTC)
    rep = await c.venue.place_order(req)
    check_report(c, req, rep)
    assert rep.status is OrderStatus.OPEN
    assert (await c.venue.order_status(req.client_order_id)).status is OrderStatus.OPEN
    cancelled = await c.venue.cancel_order(req.client_order_id)
    check_report(c, req, cancelled)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == 0
    assert (await c.venue.order_status(req.client_order_id)).status is OrderStatus.CANCELLED


async def test_a_refusal_is_a_rejected_report_not_an_exception(case: tuple[Case, Listener]) -> None:
    c, _ = case
    _, ask, _ = touch(c)
    req = order(c, Side.BUY, D(10) ** 9, ask, TimeInForce.IOC)  # far more than the account can pay
    rep = await c.venue.place_order(req)
    check_report(c, req, rep)
    assert rep.status is OrderStatus.REJECTED


async def test_unknown_orders_raise_unknown_order(case: tuple[Case, Listener]) -> None:
    c, _ = case
    with pytest.raises(UnknownOrder):
        await c.venue.order_status("aconfneversent")


async def test_balances_move_with_a_fill(case: tuple[Case, Listener]) -> None:
    c, _ = case
    before = await c.venue.balances()
    assert before.get(c.quote, D(0)) > 0
    _, ask, ask_qty = touch(c)
    req = order(c, Side.BUY, max(c.min_size, min(ask_qty, c.min_size * 2)), ask + 5 * c.tick, TimeInForce.IOC)
    rep = await c.venue.place_order(req)
    assert rep.filled_quantity > 0
    after = await c.venue.balances()
    assert after.get(c.quote, D(0)) < before.get(c.quote, D(0))
    if c.base in before or c.base in after:
        assert after.get(c.base, D(0)) - before.get(c.base, D(0)) == rep.filled_quantity


async def test_close_is_idempotent_and_silences_the_listener(case: tuple[Case, Listener]) -> None:
    c, listener = case
    await c.venue.close()
    listener.closed = True
    await c.venue.close()
    await asyncio.sleep(0.3)
    assert listener.after_close == 0
