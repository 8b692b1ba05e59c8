"""The Coinbase venue against :class:`LoopbackCoinbase` on 127.0.0.1: the feed keeps the server's books
through gaps, reorders, garbage and dropped connections; live trading places, fills, cancels and
finds orders through the real wire format and JWT auth; paper trading fills against the fed book.

Conditions are polled with a generous deadline, never slept on: a slow machine only takes longer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from arbtui.config import Config, parse_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import LiveClock, ManualClock
from arbtui.domain.events import VenueStatus
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.orders import Liquidity, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.loopback.coinbase import LoopbackCoinbase
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.coinbase import CoinbaseFeed, CoinbaseSigner, CoinbaseTrader
from arbtui.venues.live import LiveVenue
from arbtui.venues.secrets import Credentials, Secret

D = Decimal
LOT = D("0.00000001")
DEADLINE_S = 20.0


def markets() -> dict[str, LoopbackMarket]:
    return {
        "BTC-USD": LoopbackMarket("60000", "0.01", "0.00000001", level_size="0.5", depth=10),
        "ETH-USD": LoopbackMarket("3000", "0.01", "0.00000001", level_size="4", depth=10),
    }


async def until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)


class Listener:
    def __init__(self) -> None:
        self.books = 0
        self.statuses: list[tuple[VenueStatus, str]] = []

    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        self.books += 1

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        self.statuses.append((status, detail))


def config_for(server: LoopbackCoinbase, taker_fee: str = "0.0010") -> Config:
    """The TOML-ready table the server offers, read by the real config parser."""
    listing = {"tick_size": "0.01", "lot_size": "0.00000001"}
    return parse_config(
        {
            "mode": "paper",
            "venues": {"coinbase": server.venue_table(taker_fee)},
            "markets": {
                "BTC-USD": {
                    "base": "BTC",
                    "quote": "USD",
                    "max_quantity": "10",
                    "venues": {"coinbase": {"symbol": "BTC-USD", **listing}},
                },
                "ETH-USD": {
                    "base": "ETH",
                    "quote": "USD",
                    "max_quantity": "100",
                    "venues": {"coinbase": {"symbol": "ETH-USD", **listing}},
                },
            },
        },
        "test",
    )


def credentials(fields: dict[str, str]) -> Credentials:
    return Credentials("coinbase", {k: Secret(v) for k, v in fields.items()}, "test")


def build(server: LoopbackCoinbase, *, live: bool, creds: Credentials | None, taker_fee: str = "0.0010") -> LiveVenue:
    from arbtui.venues.coinbase import build_venue

    config = config_for(server, taker_fee)
    instruments = config.instruments()
    venue = build_venue(
        config.venues[0],
        instruments.listings_for_venue("coinbase"),
        dict(instruments.markets),
        LiveClock(),
        creds,
        live=live,
        tap=None,
    )
    if isinstance(venue.trader, CoinbaseTrader):
        venue.trader.poll_base_s = 0.005
    return venue


def same_book(feed_book: OrderBook | None, server_book: tuple[list[Any], list[Any]]) -> bool:
    return feed_book is not None and (list(feed_book.bids), list(feed_book.asks)) == server_book


def in_step(feed: Any, server: LoopbackCoinbase, market: str) -> Callable[[], bool]:
    return lambda: same_book(feed.book(market), server.book(market))


@pytest.fixture
async def lively() -> AsyncIterator[LoopbackCoinbase]:
    server = LoopbackCoinbase(markets(), seed=3, interval_ms=20)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def quiet() -> AsyncIterator[LoopbackCoinbase]:
    """A server whose books stay put (one frame a minute), so a test can price orders off them."""
    server = LoopbackCoinbase(markets(), seed=5, interval_ms=60_000)
    await server.start()
    yield server
    await server.stop()


async def connected(server: LoopbackCoinbase, *, live: bool, creds: Credentials | None) -> LiveVenue:
    venue = build(server, live=live, creds=creds)
    await venue.connect(Listener())
    feed = venue.feed
    await until(lambda: all(feed.book(m) is not None for m in ("BTC-USD", "ETH-USD")), "first snapshots")
    return venue


# --- the feed ----------------------------------------------------------------------------------------


async def test_feed_books_equal_the_servers_and_subscriptions_carry_a_valid_jwt(lively: LoopbackCoinbase) -> None:
    venue = await connected(lively, live=False, creds=credentials(lively.credentials))
    try:
        feed = venue.feed
        assert isinstance(feed, CoinbaseFeed)
        for market in ("BTC-USD", "ETH-USD"):
            await until(in_step(feed, lively, market), f"{market} equals the server's")
        assert lively.subscriptions == 2 and lively.ws_jwts_verified == 2 and lively.auth_failures == 0
        await until(lambda: feed.heartbeats >= 1, "a heartbeat")
        c = feed.counters
        assert c.book_updates > 0 and c.malformed == 0 and c.integrity_failures == 0 and c.resyncs == 0
    finally:
        await venue.close()


@pytest.mark.parametrize("fault", ["skip", "corrupt"])
async def test_a_sequence_break_resubscribes_and_recovers(lively: LoopbackCoinbase, fault: str) -> None:
    venue = await connected(lively, live=False, creds=None)
    try:
        feed = venue.feed
        await until(lambda: same_book(feed.book("BTC-USD"), lively.book("BTC-USD")), "in step")
        before = lively.subscriptions
        (lively.skip_frames if fault == "skip" else lively.corrupt_frames)(1)
        await until(lambda: feed.counters.integrity_failures >= 1, "the break is seen")
        await until(lambda: feed.counters.resyncs >= 1, "a resubscription (spaced 1 s from the last)")
        await until(lambda: lively.subscriptions > before, "a new level2 subscription")
        for market in ("BTC-USD", "ETH-USD"):
            await until(in_step(feed, lively, market), f"{market} recovered")
        assert feed.counters.reconnects == 0  # recovered on the same connection
    finally:
        await venue.close()


async def test_a_dropped_connection_reconnects_and_resubscribes(lively: LoopbackCoinbase) -> None:
    venue = await connected(lively, live=False, creds=None)
    try:
        feed = venue.feed
        lively.drop_connections()
        await until(lambda: feed.counters.reconnects >= 1 and feed.counters.connects >= 2, "reconnected")
        await until(lambda: lively.subscriptions >= 4, "subscribed again")
        await until(lambda: same_book(feed.book("BTC-USD"), lively.book("BTC-USD")), "in step again")
    finally:
        await venue.close()


async def test_garbage_is_counted_and_changes_nothing(lively: LoopbackCoinbase) -> None:
    venue = await connected(lively, live=False, creds=None)
    try:
        feed = venue.feed
        lively.send_garbage(4)
        await until(lambda: feed.counters.malformed >= 4, "garbage counted")
        assert feed.counters.integrity_failures == 0 and feed.counters.resyncs == 0
        await until(lambda: same_book(feed.book("ETH-USD"), lively.book("ETH-USD")), "still in step")
    finally:
        await venue.close()


async def test_a_client_that_does_not_subscribe_is_disconnected(lively: LoopbackCoinbase) -> None:
    lively.subscribe_deadline_s = 0.2
    async with websockets.connect(lively.ws_url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), DEADLINE_S)


# --- live trading -----------------------------------------------------------------------------------


@pytest.fixture
async def live(quiet: LoopbackCoinbase) -> AsyncIterator[LiveVenue]:
    venue = await connected(quiet, live=True, creds=credentials(quiet.credentials))
    yield venue
    await venue.close()


def order(cid: str, side: Side, qty: Decimal, price: Decimal, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(cid, "coinbase", "BTC-USD", side, qty, price, tif)


async def test_ioc_partial_fill_takes_the_levels_within_the_limit(quiet: LoopbackCoinbase, live: LiveVenue) -> None:
    before = await live.balances()
    asks = quiet.book("BTC-USD")[1]
    (p1, q1), (p2, q2) = asks[0], asks[1]
    report = await live.place_order(order("ioc-1", Side.BUY, q1 + q2 + D("0.25"), p2, TimeInForce.IOC))
    assert report.status is OrderStatus.EXPIRED and report.reason == "IOC remainder expired"
    assert report.filled_quantity == q1 + q2 and report.remaining == D("0.25")
    assert [(f.price, f.quantity, f.liquidity) for f in report.fills] == [
        (p1, q1, Liquidity.TAKER),
        (p2, q2, Liquidity.TAKER),
    ]
    notional = p1 * q1 + p2 * q2
    assert report.average_price == notional / (q1 + q2)
    assert report.fee == notional * D("0.0010") == sum(f.fee for f in report.fills)
    assert quiet.book("BTC-USD")[1][0] == asks[2]  # the liquidity taken is gone from the server's book
    after = await live.balances()
    assert after["BTC"] == before["BTC"] + q1 + q2
    assert after["USD"] == before["USD"] - notional - report.fee
    status = await live.order_status("ioc-1")
    assert (status.status, status.filled_quantity, status.fills) == (
        report.status,
        report.filled_quantity,
        report.fills,
    )


async def test_fok_is_all_or_nothing(quiet: LoopbackCoinbase, live: LiveVenue) -> None:
    asks = quiet.book("BTC-USD")[1]
    (_, q1), (p2, q2) = asks[0], asks[1]
    miss = await live.place_order(order("fok-1", Side.BUY, q1 + q2 + LOT, p2, TimeInForce.FOK))
    assert miss.status is OrderStatus.EXPIRED and miss.filled_quantity == 0 and miss.reason == "FOK could not fill"
    assert quiet.book("BTC-USD")[1] == asks
    hit = await live.place_order(order("fok-2", Side.BUY, q1 + q2, p2, TimeInForce.FOK))
    assert hit.status is OrderStatus.FILLED and hit.filled_quantity == q1 + q2 and len(hit.fills) == 2


async def test_gtc_rests_and_batch_cancel_takes_it_off(quiet: LoopbackCoinbase, live: LiveVenue) -> None:
    bids = quiet.book("BTC-USD")[0]
    price = bids[0][0] - D("0.05")
    level_before = dict(bids).get(price, D(0))
    report = await live.place_order(order("gtc-1", Side.BUY, D("0.3"), price, TimeInForce.GTC))
    assert report.status is OrderStatus.OPEN and report.filled_quantity == 0
    assert dict(quiet.book("BTC-USD")[0])[price] == level_before + D("0.3")
    assert quiet.balance("USD")[1] == D("0.3") * price  # held for the resting order
    assert (await live.order_status("gtc-1")).status is OrderStatus.OPEN
    cancelled = await live.cancel_order("gtc-1")
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == 0
    assert dict(quiet.book("BTC-USD")[0]).get(price, D(0)) == level_before
    assert quiet.balance("USD")[1] == 0
    again = await live.cancel_order("gtc-1")  # refused by the venue (success false): the report says why not
    assert again.status is OrderStatus.CANCELLED


async def test_gtc_partly_filled_rests_its_remainder(quiet: LoopbackCoinbase, live: LiveVenue) -> None:
    p1, q1 = quiet.book("BTC-USD")[1][0]
    report = await live.place_order(order("gtc-2", Side.BUY, q1 + D("0.1"), p1, TimeInForce.GTC))
    assert report.status is OrderStatus.PARTIALLY_FILLED and report.filled_quantity == q1
    assert quiet.book("BTC-USD")[0][0] == (p1, D("0.1"))  # the remainder is now the best bid
    cancelled = await live.cancel_order("gtc-2")
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == q1 and len(cancelled.fills) == 1


async def test_a_lost_reply_is_found_by_client_order_id(quiet: LoopbackCoinbase, live: LiveVenue) -> None:
    p1, q1 = quiet.book("BTC-USD")[1][0]
    quiet.lose_replies(1)
    placing = asyncio.ensure_future(live.place_order(order("lost-1", Side.BUY, q1, p1, TimeInForce.IOC)))
    await until(lambda: quiet.replies_lost == 1, "the order executed and its reply withheld")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(placing, 0.05)  # the caller's timeout: the reply will never come
    report = await live.order_status("lost-1")  # looked up with List Orders: the create reply never came
    assert report.status is OrderStatus.FILLED and report.filled_quantity == q1 and report.venue_order_id
    assert report.client_order_id == "lost-1" and report.fills[0].price == p1
    asks = quiet.book("BTC-USD")[1]
    again = await live.place_order(order("lost-1", Side.BUY, q1, p1, TimeInForce.IOC))  # a retry of the same leg
    assert again.venue_order_id == report.venue_order_id and quiet.book("BTC-USD")[1] == asks  # not sent twice


async def test_a_hung_request_times_out_and_the_order_is_unknown(quiet: LoopbackCoinbase, live: LiveVenue) -> None:
    asks = quiet.book("BTC-USD")[1]
    quiet.hang_requests(1)
    placing = asyncio.ensure_future(live.place_order(order("hung-1", Side.BUY, D("0.1"), asks[0][0], TimeInForce.IOC)))
    await until(lambda: quiet.requests_hung == 1, "the request held unanswered")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(placing, 0.05)
    with pytest.raises(UnknownOrder):
        await live.order_status("hung-1")  # never executed: the venue does not know it
    assert quiet.book("BTC-USD")[1] == asks


@pytest.mark.parametrize("status", [429, 500])
async def test_overload_is_retryable_and_nothing_executes(
    quiet: LoopbackCoinbase, live: LiveVenue, status: int
) -> None:
    asks = quiet.book("BTC-USD")[1]
    quiet.fail_requests(status)
    with pytest.raises(VenueError) as info:
        await live.place_order(order(f"busy-{status}", Side.BUY, D("0.1"), asks[0][0], TimeInForce.IOC))
    assert info.value.retryable
    with pytest.raises(UnknownOrder):
        await live.order_status(f"busy-{status}")
    quiet.fail_requests(status)
    with pytest.raises(VenueError) as info:
        await live.balances()
    assert info.value.retryable


async def test_insufficient_funds_is_a_rejection_in_the_venues_words(live: LiveVenue) -> None:
    report = await live.place_order(order("poor-1", Side.SELL, D("5000"), D("1.00"), TimeInForce.IOC))
    assert report.status is OrderStatus.REJECTED
    assert report.reason is not None and "INSUFFICIENT_FUND" in report.reason


async def test_the_server_refuses_bad_jwts(quiet: LoopbackCoinbase) -> None:
    listings = config_for(quiet).instruments().listings_for_venue("coinbase")
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    name = Secret(quiet.credentials["key_name"])
    wrong_key = CoinbaseTrader(
        "coinbase", quiet.rest_url, listings, CoinbaseSigner(name, Secret(other.decode()), LiveClock()), LiveClock()
    )
    stale_clock = ManualClock(1_600_000_000 * 1_000_000_000)  # a token that expired years ago
    expired = CoinbaseTrader(
        "coinbase",
        quiet.rest_url,
        listings,
        CoinbaseSigner(name, Secret(quiet.credentials["private_key"]), stale_clock),
        LiveClock(),
    )
    for trader, why in ((wrong_key, "Signature verification failed"), (expired, "expired")):
        await trader.start()
        try:
            failures = quiet.auth_failures
            report = await trader.place_order(order("bad-jwt", Side.BUY, D("0.1"), D("1.00"), TimeInForce.IOC))
            assert report.status is OrderStatus.REJECTED and "Unauthorized" in (report.reason or "")
            assert quiet.auth_failures == failures + 1 and why in (quiet.last_auth_error or "")
            with pytest.raises(VenueError) as info:
                await trader.balances()
            assert not info.value.retryable and "authentication refused" in str(info.value)
        finally:
            await trader.close()


async def test_ed25519_keys_and_paginated_accounts(quiet: LoopbackCoinbase) -> None:
    listings = config_for(quiet).instruments().listings_for_venue("coinbase")
    creds = quiet.ed25519_credentials
    signer = CoinbaseSigner(Secret(creds["key_name"]), Secret(creds["private_key"]), LiveClock())
    assert signer.alg == "EdDSA"
    trader = CoinbaseTrader("coinbase", quiet.rest_url, listings, signer, LiveClock())
    trader.accounts_page_size = 1
    await trader.start()
    try:
        balances = await trader.balances()
        assert balances == {a: quiet.balance(a)[0] - quiet.balance(a)[1] for a in ("BTC", "ETH", "USD")}
        assert quiet.auth_failures == 0 and trader.requests == 3  # one page per account
        assert trader.budgets()[0].limit == 5.0
    finally:
        await trader.close()


async def test_live_fees_replace_the_configured_ones(quiet: LoopbackCoinbase) -> None:
    quiet.maker_fee_rate, quiet.taker_fee_rate = D("0.0015"), D("0.0025")
    venue = await connected(quiet, live=True, creds=credentials(quiet.credentials))
    try:
        assert venue.fee_source == "venue" and venue.fees("BTC-USD") == FeeSchedule(D("0.0015"), D("0.0025"))
    finally:
        await venue.close()


# --- paper trading ----------------------------------------------------------------------------------


async def test_paper_fills_against_the_fed_book_and_never_reaches_the_venue(quiet: LoopbackCoinbase) -> None:
    venue = await connected(quiet, live=False, creds=None)
    try:
        asks = quiet.book("BTC-USD")[1]
        p1, q1 = asks[0]
        report = await venue.place_order(order("paper-1", Side.BUY, q1, p1, TimeInForce.IOC))
        assert report.status is OrderStatus.FILLED and report.average_price == p1
        assert report.fee == p1 * q1 * D("0.0010")  # the configured taker fee (no keys: no live fees)
        assert venue.fee_source == "config" and quiet.requests == 0 and quiet.book("BTC-USD")[1] == asks
        assert (await venue.balances())["BTC"] == D(1000) + q1  # the paper balances from the venue table
    finally:
        await venue.close()


async def test_paper_with_keys_uses_the_accounts_fee_rates(quiet: LoopbackCoinbase) -> None:
    quiet.taker_fee_rate = D("0.0030")
    venue = await connected(quiet, live=False, creds=credentials(quiet.credentials))
    try:
        assert venue.fee_source == "venue" and venue.fees("BTC-USD").taker_rate == D("0.0030")
        p1, q1 = quiet.book("BTC-USD")[1][0]
        report = await venue.place_order(order("paper-2", Side.BUY, q1, p1, TimeInForce.IOC))
        assert report.status is OrderStatus.FILLED and report.fee == p1 * q1 * D("0.0030")
        assert quiet.requests == 1  # transaction_summary only: the order stayed in arbtui
    finally:
        await venue.close()
