"""The Kraken connector against :class:`LoopbackKraken` on 127.0.0.1: the feed keeps the server's books
through checksum failures, gaps, garbage and dropped connections; live trading with real
authentication (IOC partial fills, FOK refused, GTC and cancel, lost replies, 429, 500, hangs, bad
signatures, rate budgets); paper trading against the loopback's live book.

Every wait polls a condition with a generous deadline; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import aiohttp
import orjson
import pytest

from arbtui.config import RealVenueConfig, SimVenueConfig, VenueConfig
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import LiveClock
from arbtui.domain.events import VenueStatus
from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.orders import Liquidity, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.loopback.kraken import LoopbackKraken
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.kraken import KrakenFeed, KrakenTrader, api_sign, build_venue
from arbtui.venues.live import LiveVenue
from arbtui.venues.secrets import Credentials, Secret

D = Decimal
BTC = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.00000001"), D("0.00000001"), 1, 8)
MARKETS = {"BTC-USD": Market("BTC-USD", "BTC", "USD")}
DEADLINE_S = 20.0  # generous: a slow machine must not fail a test


async def eventually(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.01)


class Listener:
    def __init__(self) -> None:
        self.books = 0
        self.statuses: list[VenueStatus] = []

    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        self.books += 1

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        self.statuses.append(status)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackKraken]:
    srv = LoopbackKraken(
        {"BTC/USD": LoopbackMarket("50000", "0.1", "0.00000001", level_size="0.5", depth=25)},
        seed=3,
        interval_ms=20,
        balances={"USD": D("1000000"), "BTC": D("10")},
    )
    await srv.start()
    yield srv
    await srv.stop()


def creds(server: LoopbackKraken, secret: str | None = None) -> Credentials:
    fields = {
        "api_key": Secret(server.credentials["api_key"]),
        "api_secret": Secret(secret or server.credentials["api_secret"]),
    }
    return Credentials("kraken", fields, "test")


def config(server: LoopbackKraken, **real: object) -> VenueConfig:
    settings = RealVenueConfig(server.ws_url, server.rest_url, **real)  # type: ignore[arg-type]
    return VenueConfig(
        "kraken", "kraken", FeeSchedule(D("0"), D("0.002"), FeeModel.NOTIONAL), SimVenueConfig(), None, settings
    )


@pytest.fixture
async def venues() -> AsyncIterator[list[LiveVenue]]:
    opened: list[LiveVenue] = []
    yield opened
    for v in opened:
        await v.close()


async def connect(server: LoopbackKraken, venues: list[LiveVenue], *, live: bool = True, **real: object) -> LiveVenue:
    venue = build_venue(config(server, **real), [BTC], MARKETS, LiveClock(), creds(server), live=live, tap=None)
    venues.append(venue)
    await venue.connect(Listener())
    await eventually(lambda: venue.book("BTC-USD") is not None, "the first snapshot")
    return venue


@pytest.fixture
async def trader(server: LoopbackKraken) -> AsyncIterator[KrakenTrader]:
    t = KrakenTrader("kraken", [BTC], MARKETS, creds(server), LiveClock(), rest_url=server.rest_url, rate_tier="pro")
    await t.start()
    yield t
    await t.close()


def same_book(venue: LiveVenue, server: LoopbackKraken, depth: int = 10) -> bool:
    book = venue.book("BTC-USD")
    if book is None:
        return False
    bids, asks = server.book("BTC/USD")
    return book.bids.top(depth) == bids[:depth] and book.asks.top(depth) == asks[:depth]


def feed(venue: LiveVenue) -> KrakenFeed:
    assert isinstance(venue.feed, KrakenFeed)
    return venue.feed


def order(cid: str, side: Side, qty: Decimal, price: Decimal, tif: TimeInForce = TimeInForce.IOC) -> OrderRequest:
    return OrderRequest(cid, "kraken", "BTC-USD", side, qty, price, tif)


# --- the feed -----------------------------------------------------------------------------------


async def test_books_equal_the_servers_and_follow_its_moves(server: LoopbackKraken, venues: list[LiveVenue]) -> None:
    venue = await connect(server, venues, live=False, paper_balances={"USD": D("1000")})
    f = feed(venue)
    await eventually(lambda: f.counters.book_updates > 20, "updates flowing")
    server.pause_market()
    await eventually(lambda: same_book(venue, server), "the feed's book equals the server's")
    assert f.counters.integrity_failures == 0 and f.counters.malformed == 0
    assert f.precision_source["BTC/USD"] == "instrument" and not f.precision_mismatches
    assert f.system_status == "online"
    server.resume_market()
    moved = f.counters.book_updates
    await eventually(lambda: f.counters.book_updates > moved + 10, "more updates")
    assert f.counters.integrity_failures == 0


async def test_a_corrupted_checksum_resubscribes_and_the_book_recovers(
    server: LoopbackKraken, venues: list[LiveVenue], trader: KrakenTrader
) -> None:
    venue = await connect(server, venues)
    f = feed(venue)
    server.pause_market()  # the next frame is the one an order causes: deterministic
    await eventually(lambda: same_book(venue, server), "in sync")
    subscriptions = server.subscriptions
    server.corrupt_frames(1)
    best_ask = server.book("BTC/USD")[1][0]
    report = await trader.place_order(order("corrupt1", Side.BUY, best_ask[1], best_ask[0]))
    assert report.status is OrderStatus.FILLED
    await eventually(lambda: f.counters.integrity_failures == 1, "the bad checksum is caught")
    await eventually(lambda: server.subscriptions == subscriptions + 1, "a resubscribe on the same connection")
    await eventually(lambda: same_book(venue, server), "the book is back, equal to the server's")
    assert f.counters.resyncs == 1 and f.counters.connects == 1 and f.counters.reconnects == 0


async def test_a_skipped_frame_is_caught_by_the_next_checksum(
    server: LoopbackKraken, venues: list[LiveVenue], trader: KrakenTrader
) -> None:
    venue = await connect(server, venues)
    f = feed(venue)
    server.pause_market()
    await eventually(lambda: same_book(venue, server), "in sync")
    server.skip_frames(1)
    asks = server.book("BTC/USD")[1]
    await trader.place_order(order("gap1", Side.BUY, asks[0][1], asks[0][0]))  # its frame is never sent
    await asyncio.sleep(0)
    assert f.counters.integrity_failures == 0  # nothing to notice yet: a gap is silent
    bids = server.book("BTC/USD")[0]
    await trader.place_order(order("gap2", Side.SELL, bids[0][1], bids[0][0]))  # this frame arrives
    await eventually(lambda: f.counters.integrity_failures == 1, "the gap is caught by the checksum")
    await eventually(lambda: same_book(venue, server), "recovered")
    assert f.counters.resyncs == 1


async def test_a_dropped_connection_reconnects_resubscribes_and_takes_a_fresh_snapshot(
    server: LoopbackKraken, venues: list[LiveVenue]
) -> None:
    venue = await connect(server, venues)
    f = feed(venue)
    subscriptions = server.subscriptions
    server.drop_connections()
    await eventually(lambda: f.counters.connects == 2, "reconnected")
    assert f.counters.reconnects == 1
    await eventually(lambda: server.subscriptions == subscriptions + 1, "subscribed again")
    server.pause_market()
    await eventually(lambda: same_book(venue, server), "a fresh snapshot, equal to the server's")
    assert venue.status is VenueStatus.CONNECTED
    assert f.counters.integrity_failures == 0


async def test_garbage_is_counted_as_malformed_and_the_book_carries_on(
    server: LoopbackKraken, venues: list[LiveVenue]
) -> None:
    venue = await connect(server, venues)
    f = feed(venue)
    server.send_garbage(4)
    await eventually(lambda: f.counters.malformed == 4, "four malformed frames counted")
    server.pause_market()
    await eventually(lambda: same_book(venue, server), "the book is unharmed")
    assert f.counters.integrity_failures == 0 and f.counters.reconnects == 0


# --- live trading -----------------------------------------------------------------------------


async def test_ioc_partial_fill_takes_the_book_and_expires_the_rest(
    server: LoopbackKraken, venues: list[LiveVenue]
) -> None:
    venue = await connect(server, venues, rate_tier="pro")
    server.pause_market()
    await eventually(lambda: same_book(venue, server), "in sync")
    ask_price, ask_qty = server.book("BTC/USD")[1][0]
    report = await venue.place_order(order("ioc1", Side.BUY, ask_qty + D("1"), ask_price))
    assert report.status is OrderStatus.EXPIRED
    assert report.filled_quantity == ask_qty and report.average_price == ask_price
    assert [(f.quantity, f.price, f.liquidity) for f in report.fills] == [(ask_qty, ask_price, Liquidity.TAKER)]
    assert report.fee == ask_price * ask_qty * server.taker_fee == sum(f.fee for f in report.fills)
    assert report.venue_order_id is not None and report.reason
    # The liquidity is gone on the server and, by the next frame, from the feed's book.
    assert server.book("BTC/USD")[1][0][0] > ask_price
    await eventually(lambda: same_book(venue, server), "the feed shows the taken level gone")
    assert feed(venue).counters.integrity_failures == 0
    balances = await venue.balances()
    assert balances["BTC"] == D("10") + ask_qty
    assert balances["USD"] == D("1000000") - ask_price * ask_qty - report.fee
    assert venue.fees("BTC-USD").taker_rate == server.taker_fee  # live fees from TradeVolume
    assert venue.fee_source == "venue"


async def test_fok_is_refused_locally_because_kraken_spot_has_none(
    server: LoopbackKraken, trader: KrakenTrader
) -> None:
    ask_price, ask_qty = server.book("BTC/USD")[1][0]
    report = await trader.place_order(order("fok1", Side.BUY, ask_qty, ask_price, TimeInForce.FOK))
    assert report.status is OrderStatus.REJECTED and "fill-or-kill" in (report.reason or "")
    assert server.requests["AddOrder"] == 0
    # And a FOK sent anyway is refused by the venue like any invalid argument.
    body = urllib.parse.urlencode(
        {
            "nonce": "1",
            "ordertype": "limit",
            "type": "buy",
            "volume": "0.1",
            "pair": "XBTUSD",
            "price": str(ask_price),
            "timeinforce": "FOK",
        }
    )
    headers = {
        "API-Key": server.credentials["api_key"],
        "API-Sign": api_sign("/0/private/AddOrder", body, 1, server.credentials["api_secret"]),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.rest_url + "/0/private/AddOrder", data=body, headers=headers) as resp,
    ):
        assert orjson.loads(await resp.read())["error"] == ["EGeneral:Invalid arguments:timeinforce"]
    assert not server.orders


async def test_gtc_rests_in_the_book_and_cancels(server: LoopbackKraken, venues: list[LiveVenue]) -> None:
    venue = await connect(server, venues, rate_tier="pro")
    server.pause_market()
    best_bid = server.book("BTC/USD")[0][0][0]
    price = best_bid + D("0.1") if server.book("BTC/USD")[1][0][0] > best_bid + D("0.1") else best_bid
    report = await venue.place_order(order("gtc1", Side.BUY, D("0.25"), price, TimeInForce.GTC))
    assert report.status is OrderStatus.OPEN and report.filled_quantity == 0
    assert (price, server.book("BTC/USD")[0][0][1]) == server.book("BTC/USD")[0][0]
    await eventually(lambda: same_book(venue, server), "the resting order shows in the feed")
    assert isinstance(venue.trader, KrakenTrader)
    budget = venue.trader.trading_budgets["BTC/USD"]
    loop = asyncio.get_running_loop()
    started, before = loop.time(), budget.level()
    cancelled = await venue.cancel_order("gtc1")
    after, elapsed = budget.level(), loop.time() - started
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == 0
    assert cancelled.venue_order_id == report.venue_order_id
    # A cancel within 5 s of placing costs +8 on Kraken's counter (less what decayed meanwhile).
    assert before + 8 - budget.decay_per_s * elapsed - 1e-6 <= after <= before + 8
    await eventually(lambda: same_book(venue, server), "the cancelled order left the book")
    assert (await venue.order_status("gtc1")).status is OrderStatus.CANCELLED


async def test_a_resting_order_is_filled_as_a_maker_when_the_market_crosses_it(
    server: LoopbackKraken, trader: KrakenTrader
) -> None:
    """One GTC at the best bid, one at the best ask: whichever way the market walks, one of them is
    crossed by the market makers' repriced quotes and filled at its own price."""
    server.pause_market()
    (bid, _), (ask, _) = server.book("BTC/USD")[0][0], server.book("BTC/USD")[1][0]
    buy = await trader.place_order(order("rest-b", Side.BUY, D("0.01"), bid, TimeInForce.GTC))
    sell = await trader.place_order(order("rest-s", Side.SELL, D("0.01"), ask, TimeInForce.GTC))
    assert buy.status is OrderStatus.OPEN and sell.status is OrderStatus.OPEN
    server.resume_market()
    reports: dict[str, OrderStatus] = {}

    async def poll() -> None:
        for cid in ("rest-b", "rest-s"):
            reports[cid] = (await trader.order_status(cid)).status

    loop = asyncio.get_running_loop()
    end = loop.time() + 60
    await poll()
    while OrderStatus.FILLED not in reports.values():
        assert loop.time() < end, "the market never crossed either resting order"
        await asyncio.sleep(0.1)
        await poll()
    cid, price = ("rest-b", bid) if reports["rest-b"] is OrderStatus.FILLED else ("rest-s", ask)
    final = await trader.order_status(cid)
    assert final.filled_quantity == D("0.01")
    assert all(f.price == price and f.liquidity is Liquidity.MAKER for f in final.fills)
    assert final.fee == D("0.01") * price * server.maker_fee
    other = "rest-s" if cid == "rest-b" else "rest-b"
    assert (await trader.cancel_order(other)).status in (OrderStatus.CANCELLED, OrderStatus.FILLED)


async def test_a_lost_reply_is_found_by_client_order_id(server: LoopbackKraken, trader: KrakenTrader) -> None:
    ask_price, ask_qty = server.book("BTC/USD")[1][0]
    qty = min(ask_qty, D("0.1"))
    server.lose_replies(1)
    # A limit well above the ask: it fills whatever the walk does. The caller gives up once the
    # server has executed the order and is holding its reply back (its timeout, without a race).
    placing = asyncio.create_task(trader.place_order(order("lost1", Side.BUY, qty, ask_price + 100)))
    await eventually(lambda: server.replies_withheld == 1, "the order executed, its reply withheld")
    placing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await placing
    report = await trader.order_status("lost1")  # the order id never came back: looked up by cl_ord_id
    assert report.status is OrderStatus.FILLED and report.filled_quantity == qty
    assert report.venue_order_id in server.orders and len(report.fills) >= 1
    fresh = KrakenTrader("kraken", [BTC], MARKETS, creds(server), LiveClock(), rest_url=server.rest_url)
    await fresh.start()
    try:
        assert (await fresh.order_status("lost1")).filled_quantity == qty  # a restarted process finds it too
        with pytest.raises(UnknownOrder):
            await fresh.order_status("never-sent")
    finally:
        await fresh.close()


async def test_a_hung_request_is_left_to_the_caller_and_the_status_tells_the_truth(
    server: LoopbackKraken, trader: KrakenTrader
) -> None:
    ask_price, _ = server.book("BTC/USD")[1][0]
    server.hang_requests(1, method="AddOrder")
    placing = asyncio.create_task(trader.place_order(order("hang1", Side.BUY, D("0.001"), ask_price)))
    await eventually(lambda: server.requests_hung == 1, "the request is hanging at the server")
    with pytest.raises(TimeoutError):  # the caller's timeout: the reply is not coming
        await asyncio.wait_for(placing, 0.2)
    # A timeout is not a rejection: ask. This request never reached the matching engine.
    with pytest.raises(UnknownOrder):
        await trader.order_status("hang1")
    assert not server.orders


async def test_http_500_on_an_order_is_a_retryable_error_not_a_rejection(
    server: LoopbackKraken, trader: KrakenTrader
) -> None:
    ask_price, _ = server.book("BTC/USD")[1][0]
    server.fail_requests(500, 1, method="AddOrder")
    with pytest.raises(VenueError) as info:
        await trader.place_order(order("e500", Side.BUY, D("0.001"), ask_price))
    assert info.value.retryable and "HTTP 500" in str(info.value)
    assert server.requests["AddOrder"] == 1  # never retried blindly: its outcome was unknown
    with pytest.raises(UnknownOrder):
        await trader.order_status("e500")


async def test_429_waits_for_budget_and_retries_then_gives_up_retryably(
    server: LoopbackKraken, trader: KrakenTrader
) -> None:
    ask_price, _ = server.book("BTC/USD")[1][0]
    server.fail_requests(429, 1, method="AddOrder")
    report = await trader.place_order(order("r429", Side.BUY, D("0.001"), ask_price + 100))
    assert report.status is OrderStatus.FILLED
    assert server.requests["AddOrder"] == 2
    trading = trader.trading_budgets["BTC/USD"]
    assert trading.waits == 1 and trading.waited_s > 0  # it waited for Kraken's counter to decay

    server.fail_requests(429, 1, method="BalanceEx")
    assert (await trader.balances())["BTC"] > D("10")
    assert trader.rest_budget.waits >= 1

    impatient = KrakenTrader(
        "kraken", [BTC], MARKETS, creds(server), LiveClock(), rest_url=server.rest_url, rate_tier="pro", rate_retries=1
    )
    await impatient.start()
    try:
        server.fail_requests(429, 2, method="BalanceEx")
        with pytest.raises(VenueError) as info:
            await impatient.balances()
        assert info.value.retryable and "rate limited" in str(info.value)
    finally:
        await impatient.close()


async def test_a_bad_signature_is_rejected_and_never_echoes_the_secret(server: LoopbackKraken) -> None:
    wrong = "A" * 86 + "=="  # valid base64, not the server's secret
    trader = KrakenTrader("kraken", [BTC], MARKETS, creds(server, wrong), LiveClock(), rest_url=server.rest_url)
    await trader.start()
    try:
        ask_price, _ = server.book("BTC/USD")[1][0]
        report = await trader.place_order(order("sig1", Side.BUY, D("0.001"), ask_price))
        assert report.status is OrderStatus.REJECTED and report.reason == "EAPI:Invalid signature"
        with pytest.raises(VenueError) as info:
            await trader.balances()
        assert not info.value.retryable and "EAPI:Invalid signature" in str(info.value)
        for text in (str(report), str(info.value), repr(trader)):
            assert wrong not in text and server.credentials["api_key"] not in text
        assert not server.orders
    finally:
        await trader.close()


async def test_concurrent_calls_never_reuse_a_nonce(server: LoopbackKraken, trader: KrakenTrader) -> None:
    results = await asyncio.gather(*(trader.balances() for _ in range(12)))
    assert all(r["USD"] == D("1000000") for r in results)


async def test_the_trading_budget_makes_an_order_wait(server: LoopbackKraken, trader: KrakenTrader) -> None:
    budget = trader.trading_budgets["BTC/USD"]
    budget.charge(budget.limit)  # Kraken's counter is full: the next order must wait for it to decay
    ask_price, _ = server.book("BTC/USD")[1][0]
    report = await trader.place_order(order("wait1", Side.BUY, D("0.001"), ask_price + 100))
    assert report.status is OrderStatus.FILLED
    assert budget.waits == 1 and budget.waited_s > 0


async def test_insufficient_funds_is_a_venue_rejection(server: LoopbackKraken, trader: KrakenTrader) -> None:
    ask_price, _ = server.book("BTC/USD")[1][0]
    report = await trader.place_order(order("big1", Side.BUY, D("1000"), ask_price))
    assert report.status is OrderStatus.REJECTED and report.reason == "EOrder:Insufficient funds"
    with pytest.raises(UnknownOrder):
        await trader.order_status("big1")  # refused orders do not exist on the venue


# --- paper trading --------------------------------------------------------------------------------


async def test_paper_mode_fills_against_the_loopbacks_live_book(
    server: LoopbackKraken, venues: list[LiveVenue]
) -> None:
    venue = await connect(server, venues, live=False, paper_balances={"USD": D("100000"), "BTC": D("0")})
    server.pause_market()
    await eventually(lambda: same_book(venue, server), "in sync")
    (p1, q1), (p2, q2) = server.book("BTC/USD")[1][:2]
    report = await venue.place_order(order("paper1", Side.BUY, q1 + q2, p2))
    assert report.status is OrderStatus.FILLED
    assert [(f.price, f.quantity) for f in report.fills] == [(p1, q1), (p2, q2)]
    assert server.requests["AddOrder"] == 0 and server.book("BTC/USD")[1][0] == (p1, q1)  # nothing reached Kraken
    assert venue.fee_source == "venue" and venue.fees("BTC-USD").taker_rate == server.taker_fee  # keys: live fees
    assert report.fee == sum(f.price * f.quantity for f in report.fills) * server.taker_fee
    assert (await venue.balances())["BTC"] == q1 + q2


# --- AssetPairs and the account's fees ------------------------------------------------------------


async def signed(server: LoopbackKraken, method: str, params: dict[str, str]) -> dict[str, object]:
    """A private request signed as Kraken's guide says, answered as raw JSON (the wire shape)."""
    nonce = str(LiveClock().now_ns() // 1000)
    body = urllib.parse.urlencode({"nonce": nonce, **params})
    path = f"/0/private/{method}"
    headers = {
        "API-Key": server.credentials["api_key"],
        "API-Sign": api_sign(path, body, nonce, server.credentials["api_secret"]),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.rest_url + path, data=body, headers=headers) as r,
    ):
        reply: dict[str, object] = orjson.loads(await r.read())
    return reply


async def test_the_loopback_answers_asset_pairs_and_trade_volume_in_krakens_shape(server: LoopbackKraken) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.rest_url + "/0/public/AssetPairs") as r:
            listing = orjson.loads(await r.read())
        async with session.get(server.rest_url + "/0/public/AssetPairs", params={"pair": "NOPEUSD"}) as r:
            unknown = orjson.loads(await r.read())
    assert listing["error"] == [] and list(listing["result"]) == ["XXBTZUSD"]  # keyed by the internal name
    entry = listing["result"]["XXBTZUSD"]
    assert (entry["altname"], entry["wsname"], entry["base"], entry["quote"]) == ("XBTUSD", "XBT/USD", "XXBT", "ZUSD")
    assert (entry["pair_decimals"], entry["lot_decimals"], entry["tick_size"], entry["ordermin"]) == (
        1,
        8,
        "0.1",
        "0.00000001",
    )
    assert unknown["error"] == ["EQuery:Unknown asset pair"]
    # TradeVolume asked by the altname answers under the internal name, as Kraken does.
    volume = await signed(server, "TradeVolume", {"pair": "XBTUSD", "fee-info": "true"})
    result = volume["result"]
    assert (
        isinstance(result, dict) and list(result["fees"]) == ["XXBTZUSD"] and list(result["fees_maker"]) == ["XXBTZUSD"]
    )
    assert result["fees"]["XXBTZUSD"]["fee"] == "0.1000"


async def test_the_accounts_fee_rates_from_trade_volume_are_the_venues_fees(
    server: LoopbackKraken, venues: list[LiveVenue]
) -> None:
    server.taker_fee, server.maker_fee = D("0.0026"), D("0.0016")  # the account's tier; the config says 0.002/0
    venue = await connect(server, venues, rate_tier="pro")
    assert venue.fee_source == "venue"
    assert venue.fees("BTC-USD") == FeeSchedule(D("0.0016"), D("0.0026"), FeeModel.NOTIONAL)
    trader = venue.trader
    assert isinstance(trader, KrakenTrader)
    assert trader.asset_pairs["BTC/USD"].key == "XXBTZUSD" and not trader.listing_problems
    # The fee charged on a fill is the one the venue reports, and what fees(market) now says.
    server.pause_market()
    ask_price, _ = server.book("BTC/USD")[1][0]
    report = await venue.place_order(order("fee1", Side.BUY, D("0.001"), ask_price))
    assert report.status is OrderStatus.FILLED
    assert report.fee == venue.fees("BTC-USD").fee(ask_price, D("0.001"), taker=True)


async def test_paper_mode_with_keys_reads_the_accounts_fees_by_the_internal_name(
    server: LoopbackKraken, venues: list[LiveVenue]
) -> None:
    server.taker_fee = D("0.0040")
    venue = await connect(server, venues, live=False, live_fees=True)
    assert venue.fee_source == "venue" and venue.fees("BTC-USD").taker_rate == D("0.0040")
    assert server.requests["TradeVolume"] == 1 and server.requests["AddOrder"] == 0


async def test_a_listing_off_krakens_grid_is_refused_locally_and_says_why(server: LoopbackKraken) -> None:
    finer = Listing("kraken", "BTC-USD", "BTC/USD", D("0.01"), D("0.00000001"), D("0.00000001"), 2, 8)
    trader = KrakenTrader("kraken", [finer], MARKETS, creds(server), LiveClock(), rest_url=server.rest_url)
    await trader.start()
    try:
        problem = trader.listing_problems["BTC/USD"]
        assert "XXBTZUSD" in problem and "tick_size 0.1" in problem and "pair_decimals 1" in problem
        ask_price, _ = server.book("BTC/USD")[1][0]
        report = await trader.place_order(order("grid1", Side.BUY, D("0.001"), ask_price))
        assert report.status is OrderStatus.REJECTED and report.reason == problem
        assert server.requests["AddOrder"] == 0  # nothing was sent
    finally:
        await trader.close()


async def test_a_pair_kraken_does_not_list_is_refused_locally(server: LoopbackKraken) -> None:
    eth = Listing("kraken", "ETH-USD", "ETH/USD", D("0.01"), D("0.00000001"), D("0.00000001"), 2, 8)
    markets = {**MARKETS, "ETH-USD": Market("ETH-USD", "ETH", "USD")}
    trader = KrakenTrader("kraken", [BTC, eth], markets, creds(server), LiveClock(), rest_url=server.rest_url)
    await trader.start()
    try:
        assert "lists no pair for ETH/USD" in trader.listing_problems["ETH/USD"]
        report = await trader.place_order(OrderRequest("eth1", "kraken", "ETH-USD", Side.BUY, D("0.01"), D("3000")))
        assert report.status is OrderStatus.REJECTED and server.requests["AddOrder"] == 0
        fees = await trader.live_fees()  # the listed pair's fees are still read
        assert set(fees) == {"BTC-USD"}
    finally:
        await trader.close()


# --- errors on AddOrder ---------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["ESession:Invalid session", "ETrade:User Locked"])
async def test_an_auth_or_account_refusal_of_an_order_is_a_rejection(
    server: LoopbackKraken, trader: KrakenTrader, error: str
) -> None:
    ask_price, _ = server.book("BTC/USD")[1][0]
    server.refuse_requests(error, 1, method="AddOrder")
    report = await trader.place_order(order("deny1", Side.BUY, D("0.001"), ask_price))
    assert report.status is OrderStatus.REJECTED and report.reason == error
    assert server.requests["AddOrder"] == 1  # refused: never re-sent
    assert not server.orders


@pytest.mark.parametrize(
    "error", ["EGeneral:Too many requests", "EAPI:Rate limit exceeded", "EOrder:Rate limit exceeded"]
)
async def test_a_rate_limited_order_waits_and_is_retried_then_refused_never_unknown(
    server: LoopbackKraken, trader: KrakenTrader, error: str
) -> None:
    ask_price, _ = server.book("BTC/USD")[1][0]
    server.refuse_requests(error, 1, method="AddOrder")
    report = await trader.place_order(order("rl1", Side.BUY, D("0.001"), ask_price + 100))
    assert report.status is OrderStatus.FILLED  # Kraken rejected the first: sending it again is safe
    assert server.requests["AddOrder"] == 2
    trading = trader.trading_budgets["BTC/USD"]
    assert trading.waits == 1 and trading.waited_s > 0  # it backed off for Kraken's counter first
    # Still limited after every retry: a refusal (the order was not placed), not an unknown outcome.
    server.refuse_requests(error, 4, method="AddOrder")
    report = await trader.place_order(order("rl2", Side.BUY, D("0.001"), ask_price + 100))
    assert report.status is OrderStatus.REJECTED and report.reason == f"rate limited, not placed: {error}"
    assert server.requests["AddOrder"] == 2 + 4
    assert not any(o.cl_ord_id == "rl2" for o in server.orders.values())
    with pytest.raises(UnknownOrder):
        await trader.order_status("rl2")
