"""The "late arrival" fault on each loopback venue (Kraken, Coinbase, Polymarket), seen through the
real connectors: the order request's reply never comes, every status and lookup endpoint answers what
the venue answers for an order it never received (so the connector raises ``UnknownOrder``), and once
the server's clock has moved on by the delay the order arrives after all and trades (or rests, or is
refused by Kraken's ``deadline``).

Each server runs on a :class:`ManualClock` started at the wall-clock time (the connectors run on the
live clock, and Kraken's ``deadline`` is an absolute time the server compares with its own clock): the
test, not the scheduler, decides when a late order arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from arbtui.config import parse_config
from arbtui.domain.clock import NS_PER_S, LiveClock, ManualClock
from arbtui.domain.instruments import Listing, Market, MarketKind
from arbtui.domain.orders import OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.loopback.coinbase import LoopbackCoinbase
from arbtui.sim.loopback.kraken import LoopbackKraken
from arbtui.sim.loopback.late import LateArrival
from arbtui.sim.loopback.polymarket import LoopbackPolymarket
from arbtui.venues.base import UnknownOrder
from arbtui.venues.kraken import KrakenTrader
from arbtui.venues.live import LiveVenue
from arbtui.venues.polymarket import l2_signature
from arbtui.venues.secrets import Credentials, Secret
from tests.unit.venue_wrappers import Listener, until

D = Decimal
YES = "71321045679252212594626385532706912750332728571942532289631379312455583992563"


PlaceOrder = Callable[[OrderRequest], Awaitable[OrderReport]]


async def send_and_lose(place: PlaceOrder, request: OrderRequest, records: list[LateArrival]) -> LateArrival:
    """Send ``request`` and give up on its reply (the caller's timeout) once the server holds it back."""
    placing = asyncio.ensure_future(place(request))
    await until(lambda: len(records) == 1, "the request held back by the late-arrival fault")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(placing, 0.05)  # the reply is not coming
    return records[0]


def wall_clock() -> ManualClock:
    return ManualClock(time.time_ns())


# --- Kraken ------------------------------------------------------------------------------------------

BTC = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.00000001"), D("0.00000001"), 1, 8)
KRAKEN_MARKETS = {"BTC-USD": Market("BTC-USD", "BTC", "USD")}


@pytest.fixture
async def kraken() -> AsyncIterator[tuple[LoopbackKraken, ManualClock, KrakenTrader]]:
    clock = wall_clock()
    server = LoopbackKraken(
        {"BTC/USD": LoopbackMarket("50000", "0.1", "0.00000001", level_size="0.5", depth=25)},
        seed=3,
        interval_ms=60_000,  # a still book
        balances={"USD": D("1000000"), "BTC": D("10")},
        clock=clock,
    )
    await server.start()
    creds = Credentials("kraken", {k: Secret(server.credentials[k]) for k in ("api_key", "api_secret")}, "test")
    # deadline_s = 5: the connector's AddOrder carries deadline = send time + 5 s.
    trader = KrakenTrader(
        "kraken", [BTC], KRAKEN_MARKETS, creds, LiveClock(), rest_url=server.rest_url, rate_tier="pro", deadline_s=5.0
    )
    await trader.start()
    yield server, clock, trader
    await trader.close()
    await server.stop()


def kraken_order(cid: str, side: Side, qty: Decimal, price: Decimal, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(cid, "kraken", "BTC-USD", side, qty, price, tif)


async def test_kraken_late_order_is_unknown_until_it_arrives_then_it_fills(
    kraken: tuple[LoopbackKraken, ManualClock, KrakenTrader],
) -> None:
    server, clock, trader = kraken
    ask, _ = server.book("BTC/USD")[1][0]
    server.arrive_late(2.0)
    request = kraken_order("late1", Side.BUY, D("0.01"), ask + 100, TimeInForce.IOC)
    record = await send_and_lose(trader.place_order, request, server.late_arrivals)
    assert record.client_order_id == "late1" and not record.arrived
    with pytest.raises(UnknownOrder):  # OpenOrders and ClosedOrders by cl_ord_id list nothing
        await trader.order_status("late1")
    assert server.requests["OpenOrders"] >= 1 and server.requests["ClosedOrders"] >= 1
    assert not server.orders

    await clock.advance(2 * NS_PER_S)  # within the deadline: Kraken takes it
    assert record.arrived and record.refusal is None and record.order_id in server.orders
    report = await trader.order_status("late1")
    assert report.status is OrderStatus.FILLED and report.filled_quantity == D("0.01")
    assert report.venue_order_id == record.order_id
    assert server.free_balances()["BTC"] == D("10.01")


async def test_kraken_late_arrival_past_its_deadline_is_refused_and_never_exists(
    kraken: tuple[LoopbackKraken, ManualClock, KrakenTrader],
) -> None:
    server, clock, trader = kraken
    ask, _ = server.book("BTC/USD")[1][0]
    server.arrive_late(10.0)  # longer than the 5 s deadline the connector sends
    request = kraken_order("late2", Side.BUY, D("0.01"), ask + 100, TimeInForce.IOC)
    record = await send_and_lose(trader.place_order, request, server.late_arrivals)
    await clock.advance(10 * NS_PER_S)
    assert record.arrived and record.refusal == "EService:Deadline elapsed" and record.order_id is None
    assert not server.orders  # the matching engine refused it: it never traded
    with pytest.raises(UnknownOrder):
        await trader.order_status("late2")
    assert server.free_balances()["BTC"] == D("10")


async def test_kraken_late_gtc_that_does_not_cross_rests_and_can_be_cancelled(
    kraken: tuple[LoopbackKraken, ManualClock, KrakenTrader],
) -> None:
    server, clock, trader = kraken
    bid, _ = server.book("BTC/USD")[0][0]
    server.arrive_late(1.0)
    request = kraken_order("late3", Side.BUY, D("0.01"), bid - 50, TimeInForce.GTC)
    await send_and_lose(trader.place_order, request, server.late_arrivals)
    await clock.advance(1 * NS_PER_S)
    resting = await trader.order_status("late3")
    assert resting.status is OrderStatus.OPEN and resting.filled_quantity == 0
    assert dict(server.book("BTC/USD")[0]).get(bid - 50, D(0)) >= D("0.01")
    assert (await trader.cancel_order("late3")).status is OrderStatus.CANCELLED


async def test_a_late_order_still_in_flight_when_the_server_stops_never_arrives() -> None:
    clock = wall_clock()
    server = LoopbackKraken(
        {"BTC/USD": LoopbackMarket("50000", "0.1", "0.00000001", level_size="0.5", depth=25)},
        interval_ms=60_000,
        clock=clock,
    )
    await server.start()
    creds = Credentials("kraken", {k: Secret(server.credentials[k]) for k in ("api_key", "api_secret")}, "test")
    trader = KrakenTrader("kraken", [BTC], KRAKEN_MARKETS, creds, LiveClock(), rest_url=server.rest_url)
    await trader.start()
    try:
        server.arrive_late(5.0)
        ask, _ = server.book("BTC/USD")[1][0]
        record = await send_and_lose(
            trader.place_order, kraken_order("late4", Side.BUY, D("0.01"), ask, TimeInForce.IOC), server.late_arrivals
        )
    finally:
        await trader.close()
        await server.stop()
    await clock.advance(10 * NS_PER_S)
    assert not record.arrived and not server.orders


# --- Coinbase ----------------------------------------------------------------------------------------


@pytest.fixture
async def coinbase() -> AsyncIterator[tuple[LoopbackCoinbase, ManualClock, LiveVenue]]:
    from arbtui.venues.coinbase import CoinbaseTrader, build_venue

    clock = wall_clock()
    server = LoopbackCoinbase(
        {"BTC-USD": LoopbackMarket("60000", "0.01", "0.00000001", level_size="0.5", depth=10)},
        seed=5,
        interval_ms=60_000,
        clock=clock,
    )
    await server.start()
    listing = {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.00000001"}
    config = parse_config(
        {
            "mode": "paper",
            "venues": {"coinbase": server.venue_table()},
            "markets": {
                "BTC-USD": {"base": "BTC", "quote": "USD", "max_quantity": "10", "venues": {"coinbase": listing}}
            },
        },
        "test",
    )
    instruments = config.instruments()
    creds = Credentials("coinbase", {k: Secret(v) for k, v in server.credentials.items()}, "test")
    venue = build_venue(
        config.venues[0],
        instruments.listings_for_venue("coinbase"),
        dict(instruments.markets),
        LiveClock(),
        creds,
        live=True,
        tap=None,
    )
    assert isinstance(venue.trader, CoinbaseTrader)
    venue.trader.poll_base_s = 0.005
    await venue.connect(Listener())
    yield server, clock, venue
    await venue.close()
    await server.stop()


def coinbase_order(cid: str, side: Side, qty: Decimal, price: Decimal, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(cid, "coinbase", "BTC-USD", side, qty, price, tif)


async def test_coinbase_late_order_is_unknown_until_it_arrives_then_it_fills(
    coinbase: tuple[LoopbackCoinbase, ManualClock, LiveVenue],
) -> None:
    server, clock, venue = coinbase
    ask, ask_qty = server.book("BTC-USD")[1][0]
    usd_before = server.balance("USD")[0]
    server.arrive_late(3.0)
    record = await send_and_lose(
        venue.place_order, coinbase_order("late-c1", Side.BUY, ask_qty, ask, TimeInForce.IOC), server.late_arrivals
    )
    assert record.client_order_id == "late-c1"
    with pytest.raises(UnknownOrder):  # List Orders does not list it
        await venue.order_status("late-c1")
    assert server.balance("USD")[0] == usd_before

    await clock.advance(3 * NS_PER_S)
    assert record.arrived and record.refusal is None and record.order_id
    report = await venue.order_status("late-c1")
    assert report.status is OrderStatus.FILLED and report.filled_quantity == ask_qty
    assert report.venue_order_id == record.order_id and sum(f.quantity for f in report.fills) == ask_qty
    assert server.balance("USD")[0] < usd_before  # it really traded, late


async def test_coinbase_late_gtc_rests_and_can_be_cancelled(
    coinbase: tuple[LoopbackCoinbase, ManualClock, LiveVenue],
) -> None:
    server, clock, venue = coinbase
    bid, _ = server.book("BTC-USD")[0][0]
    price = bid - D("0.05")
    server.arrive_late(1.0)
    await send_and_lose(
        venue.place_order, coinbase_order("late-c2", Side.BUY, D("0.3"), price, TimeInForce.GTC), server.late_arrivals
    )
    await clock.advance(1 * NS_PER_S)
    resting = await venue.order_status("late-c2")
    assert resting.status is OrderStatus.OPEN and resting.filled_quantity == 0
    assert server.balance("USD")[1] == D("0.3") * price  # held for the resting order
    assert (await venue.cancel_order("late-c2")).status is OrderStatus.CANCELLED


# --- Polymarket --------------------------------------------------------------------------------------

PM_LISTINGS = [Listing("polymarket", "FED-YES", YES, D("0.01"), D("0.01"), D("1"), 2, 2)]
PM_MARKETS = {"FED-YES": Market("FED-YES", "FED-YES", "USDC", MarketKind.OUTCOME, "FED", "YES")}


@pytest.fixture
async def polymarket() -> AsyncIterator[tuple[LoopbackPolymarket, ManualClock, LiveVenue]]:
    from dataclasses import replace

    from arbtui.config import RealVenueConfig, SimVenueConfig, VenueConfig
    from arbtui.domain.fees import FeeModel, FeeSchedule
    from arbtui.venues.polymarket import build_venue

    clock = wall_clock()
    spec = LoopbackMarket("0.50", "0.01", "0.01", level_size="100", depth=8, spread_ticks=4, probability=True)
    server = LoopbackPolymarket({YES: spec}, seed=7, interval_ms=60_000, clock=clock)
    await server.start()
    table = server.venue_table("0.0100")
    real = replace(RealVenueConfig(str(table["ws_url"]), str(table["rest_url"])), rate_per_s=D(1000), live_fees=False)
    vc = VenueConfig(
        "polymarket", "polymarket", FeeSchedule(D(0), D("0.0100"), FeeModel.PROBABILITY), SimVenueConfig(), real=real
    )
    creds = Credentials("polymarket", {k: Secret(v) for k, v in server.credentials.items()}, "test")
    venue = build_venue(vc, PM_LISTINGS, PM_MARKETS, LiveClock(), creds, live=True, tap=None)
    await venue.connect(Listener())
    await until(lambda: venue.book("FED-YES") is not None, "the first snapshot")
    yield server, clock, venue
    await venue.close()
    await server.stop()


def pm_buy(cid: str, qty: Decimal, price: Decimal, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(cid, "polymarket", "FED-YES", Side.BUY, qty, price, tif)


async def get_order_raw(server: LoopbackPolymarket, order_id: str) -> tuple[int, Any]:
    """``GET /data/order/<id>`` with the L2 headers, as the connector sends it: (status, parsed body)."""
    path = f"/data/order/{order_id}"
    ts = str(int(time.time()))
    headers = {
        "POLY_ADDRESS": server.address,
        "POLY_SIGNATURE": l2_signature(server.api_secret, ts, "GET", path, None),
        "POLY_TIMESTAMP": ts,
        "POLY_API_KEY": server.api_key,
        "POLY_PASSPHRASE": server.api_passphrase,
    }
    async with aiohttp.ClientSession() as session, session.get(server.rest_url + path, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_polymarket_late_order_is_unknown_until_it_arrives_then_it_fills(
    polymarket: tuple[LoopbackPolymarket, ManualClock, LiveVenue],
) -> None:
    server, clock, venue = polymarket
    (p1, q1), (p2, _) = server.book(YES)[1][:2]
    collateral = server.collateral
    server.arrive_late(2.0)
    record = await send_and_lose(
        venue.place_order, pm_buy("late-p1", q1 + D(2), p2, TimeInForce.IOC), server.late_arrivals
    )
    order_hash = record.client_order_id
    assert order_hash is not None and order_hash.startswith("0x")  # the hash the connector computed and keeps
    assert await get_order_raw(server, order_hash) == (200, None)  # the venue's answer for an order it lacks
    with pytest.raises(UnknownOrder):
        await venue.order_status("late-p1")
    assert server.collateral == collateral

    await clock.advance(2 * NS_PER_S)
    assert record.arrived and record.refusal is None and record.order_id == order_hash
    report = await venue.order_status("late-p1")
    assert report.status is OrderStatus.FILLED and report.filled_quantity == q1 + 2
    assert report.venue_order_id == order_hash
    assert server.tokens[YES] == D(10_000) + q1 + 2  # the late fill is held on the venue


async def test_polymarket_late_gtc_rests_and_can_be_cancelled(
    polymarket: tuple[LoopbackPolymarket, ManualClock, LiveVenue],
) -> None:
    server, clock, venue = polymarket
    bid, _ = server.book(YES)[0][0]
    low = bid - D("0.05")
    server.arrive_late(1.0)
    record = await send_and_lose(venue.place_order, pm_buy("late-p2", D(7), low, TimeInForce.GTC), server.late_arrivals)
    await clock.advance(1 * NS_PER_S)
    assert record.order_id in server.order_ids()
    resting = await venue.order_status("late-p2")
    assert resting.status is OrderStatus.OPEN and resting.filled_quantity == 0
    assert (await venue.cancel_order("late-p2")).status is OrderStatus.CANCELLED


async def test_polymarket_late_fill_is_found_in_the_trades_when_the_lookup_omits_matched_orders(
    polymarket: tuple[LoopbackPolymarket, ManualClock, LiveVenue],
) -> None:
    server, clock, venue = polymarket
    server.hide_matched_orders = True  # GET /data/order answers a matched order as unknown (py-clob-client#217)
    (p1, q1) = server.book(YES)[1][0]
    server.arrive_late(2.0)
    record = await send_and_lose(venue.place_order, pm_buy("late-p3", q1, p1, TimeInForce.IOC), server.late_arrivals)
    with pytest.raises(UnknownOrder):  # neither listed nor traded yet
        await venue.order_status("late-p3")
    await clock.advance(2 * NS_PER_S)
    assert record.arrived and record.order_id is not None
    assert await get_order_raw(server, record.order_id) == (200, None)  # matched, and not listed
    report = await venue.order_status("late-p3")  # found through GET /data/trades
    assert report.status is OrderStatus.FILLED and report.filled_quantity == q1
    assert [(f.quantity, f.price) for f in report.fills] == [(q1, p1)]
