"""The Polymarket feed through a real socket against the loopback server (books equal the server's; a
corrupted best_bid is resynced; a dropped connection reconnects; garbage is counted; PING is sent), and
the server's own checks (L2 HMAC, the EIP-712 signer of V1 and V2 orders, the order version, fee rate,
tick, balances).

Everything runs on 127.0.0.1 with ephemeral ports. Waiting is bounded polling with generous deadlines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
import tomli_w

from arbtui.config import load_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import LiveClock
from arbtui.domain.events import VenueStatus
from arbtui.domain.instruments import Listing
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.loopback.polymarket import TEST_PRIVATE_KEY, LoopbackPolymarket
from arbtui.venues.connection import ConnectionSupervisor, SupervisorConfig
from arbtui.venues.polymarket import (
    PolymarketFeed,
    l2_signature,
    order_amounts,
    order_salt,
    sign_order_v1,
    sign_order_v2,
)

D = Decimal
YES = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
NO = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
DEADLINE_S = 20.0
TICK = D("0.01")
LISTINGS = [
    Listing("polymarket", "FED-YES", YES, D("0.01"), D("0.01"), D("1"), 2, 2),
    Listing("polymarket", "FED-NO", NO, D("0.01"), D("0.01"), D("1"), 2, 2),
]
MARKET_OF = {YES: "FED-YES", NO: "FED-NO"}
# Another well-known Hardhat test key (account #1): a signer the server must not accept for account #0.
OTHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


async def until(pred: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def levels(book: OrderBook | None) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]] | None:
    return None if book is None else (book.bids.top(10_000), book.asks.top(10_000))


class Feed:
    """A PolymarketFeed kept alive by the real ConnectionSupervisor."""

    def __init__(self, lb: LoopbackPolymarket, keepalive_s: float = 10.0) -> None:
        clock = LiveClock()
        self.lb = lb
        self.feed = PolymarketFeed(LISTINGS, clock)
        self.changes: list[str] = []
        self.feed.set_on_change(self.changes.append)
        self.statuses: list[VenueStatus] = []
        config = SupervisorConfig(
            url=lb.ws_url, stale_after_s=30, backoff_base_s=0.05, backoff_max_s=0.2, keepalive_s=keepalive_s
        )
        self.supervisor = ConnectionSupervisor(
            "polymarket",
            "market",
            config,
            self.feed,
            clock,
            self.feed.counters,
            lambda status, detail: self.statuses.append(status),
        )

    def in_sync(self) -> bool:
        return all(levels(self.feed.book(MARKET_OF[t])) == self.lb.book(t) for t in (YES, NO))

    async def synced(self, what: str) -> None:
        await until(self.in_sync, what)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackPolymarket]:
    spec = LoopbackMarket("0.40", "0.01", "0.01", level_size="50", depth=10, spread_ticks=2, probability=True)
    lb = LoopbackPolymarket(
        {YES: spec, NO: LoopbackMarket("0.60", "0.01", "0.01", probability=True)}, seed=3, interval_ms=20
    )
    await lb.start()
    try:
        yield lb
    finally:
        await lb.stop()


@pytest.fixture
async def feed(server: LoopbackPolymarket) -> AsyncIterator[Feed]:
    f = Feed(server)
    await f.supervisor.start()
    try:
        yield f
    finally:
        await f.supervisor.stop()


async def test_the_books_equal_the_servers_while_it_moves(server: LoopbackPolymarket, feed: Feed) -> None:
    await feed.synced("the first snapshots")
    assert server.subscriptions == 1 and feed.feed.counters.book_updates >= 2
    updates = feed.feed.counters.book_updates
    await until(lambda: feed.feed.counters.book_updates >= updates + 20, "twenty moves")
    await feed.synced("the moving books")
    c = feed.feed.counters
    assert c.malformed == 0 and c.integrity_failures == 0 and c.resyncs == 0
    assert set(feed.changes) == {"FED-YES", "FED-NO"}


async def test_a_corrupted_best_bid_is_resynced_and_recovered(server: LoopbackPolymarket, feed: Feed) -> None:
    await feed.synced("the first snapshots")
    server.corrupt_frames(1)
    await until(lambda: feed.feed.counters.integrity_failures == 1, "the failed cross-check")
    assert feed.feed.counters.resyncs == 1
    await until(lambda: server.subscriptions == 2, "the asset's resubscribe")
    await feed.synced("the recovered books")
    assert feed.feed.counters.reconnects == 0  # one asset resubscribed, the connection kept


async def test_a_dropped_connection_reconnects_and_resubscribes(server: LoopbackPolymarket, feed: Feed) -> None:
    await feed.synced("the first snapshots")
    server.drop_connections()
    await until(lambda: feed.feed.counters.reconnects >= 1 and feed.feed.counters.connects >= 2, "the reconnect")
    await until(lambda: server.subscriptions >= 2, "the new subscription")
    await feed.synced("the books after the reconnect")
    assert VenueStatus.CONNECTING in feed.statuses[1:]


async def test_garbage_is_counted_and_skipped(server: LoopbackPolymarket, feed: Feed) -> None:
    await feed.synced("the first snapshots")
    server.send_garbage(4)
    await until(lambda: feed.feed.counters.malformed == 4, "four malformed frames")
    await feed.synced("the books after the garbage")
    assert feed.feed.counters.integrity_failures == 0


async def test_a_skipped_frame_that_moves_the_top_is_caught(server: LoopbackPolymarket) -> None:
    f = Feed(server)
    await f.supervisor.start()
    try:
        await f.synced("the first snapshots")
        # Without sequence numbers a gap shows only through the top of book; skip until one does.
        for attempt in range(200):
            server.skip_frames(1)
            await until(lambda n=attempt + 1: server.frames_skipped == n, "a skipped frame")  # type: ignore[misc]
            if f.feed.counters.integrity_failures:
                break
            await asyncio.sleep(0.05)
        await until(lambda: f.feed.counters.integrity_failures >= 1, "a detected gap")
        await f.synced("the books after the gap")
    finally:
        await f.supervisor.stop()


async def test_ping_is_sent_and_pong_is_not_an_error(server: LoopbackPolymarket) -> None:
    f = Feed(server, keepalive_s=0.05)
    await f.supervisor.start()
    try:
        await until(lambda: server.pings >= 3, "three PINGs")
        await until(lambda: f.feed.counters.frames > 3, "frames")
        assert f.feed.counters.malformed == 0
    finally:
        await f.supervisor.stop()


async def test_tick_size_changes_reach_the_feed(server: LoopbackPolymarket, feed: Feed) -> None:
    await feed.synced("the first snapshots")
    server.change_tick(NO, D("0.001"))
    await until(lambda: feed.feed.tick("FED-NO") == D("0.001"), "the new tick")
    assert feed.feed.tick("FED-YES") is None


# --- the server's checks, spoken to directly ------------------------------------------------------


class Client:
    """Bare REST requests with the L2 headers, to probe what the server accepts."""

    def __init__(self, lb: LoopbackPolymarket, session: aiohttp.ClientSession) -> None:
        self.lb = lb
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        secret: str | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, object]:
        text = None if body is None else json.dumps(body, separators=(",", ":"))
        ts = "1700000000"
        headers = {
            "POLY_ADDRESS": self.lb.address,
            "POLY_SIGNATURE": l2_signature(secret or self.lb.api_secret, ts, method, path, text),
            "POLY_TIMESTAMP": ts,
            "POLY_API_KEY": self.lb.api_key,
            "POLY_PASSPHRASE": self.lb.api_passphrase,
        }
        async with self.session.request(
            method, self.lb.rest_url + path, data=text, headers=headers, params=params
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    def order(
        self,
        cid: str,
        price: Decimal,
        size: Decimal,
        *,
        key: str = TEST_PRIVATE_KEY,
        fee_bps: int = 0,
        maker: str | None = None,
        tick: Decimal = TICK,
    ) -> dict[str, object]:
        maker_amount, taker_amount = order_amounts("BUY", price, size, tick)
        signed = sign_order_v1(
            key,
            chain_id=137,
            neg_risk=False,
            salt=order_salt(cid),
            token_id=YES,
            maker_amount=maker_amount,
            taker_amount=taker_amount,
            side="BUY",
            fee_rate_bps=fee_bps,
            maker=maker,
        )
        return {"order": signed.order, "owner": self.lb.api_key, "orderType": "FAK", "postOnly": False}

    def order_v2(
        self,
        cid: str,
        price: Decimal,
        size: Decimal,
        *,
        key: str = TEST_PRIVATE_KEY,
        maker: str | None = None,
        timestamp_ms: int = 1_700_000_000_000,
    ) -> dict[str, object]:
        maker_amount, taker_amount = order_amounts("BUY", price, size, TICK)
        signed = sign_order_v2(
            key,
            chain_id=137,
            neg_risk=False,
            salt=order_salt(cid),
            token_id=YES,
            maker_amount=maker_amount,
            taker_amount=taker_amount,
            side="BUY",
            timestamp_ms=timestamp_ms,
            maker=maker,
        )
        return signed.body(self.lb.api_key, "FAK")


@pytest.fixture
async def still() -> AsyncIterator[LoopbackPolymarket]:
    """A server whose quotes do not move (one step a minute): what a test reads is what an order meets."""
    spec = LoopbackMarket("0.40", "0.01", "0.01", level_size="50", depth=10, spread_ticks=2, probability=True)
    lb = LoopbackPolymarket({YES: spec, NO: spec}, seed=5, interval_ms=60_000)
    await lb.start()
    try:
        yield lb
    finally:
        await lb.stop()


@pytest.fixture
async def client(still: LoopbackPolymarket) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(still, session)


async def test_the_server_checks_the_l2_signature(still: LoopbackPolymarket, client: Client) -> None:
    ok, body = await client.request("GET", "/balance-allowance", params={"asset_type": "COLLATERAL"})
    assert ok == 200 and body == {"balance": "1000000000000", "allowance": body["allowance"]}  # type: ignore[index]
    bad, body = await client.request(
        "GET", "/balance-allowance", secret="A" * 43 + "=", params={"asset_type": "COLLATERAL"}
    )
    assert bad == 401 and body == {"error": "Unauthorized/Invalid api key"}
    async with client.session.get(still.rest_url + "/data/trades") as resp:  # no headers at all
        assert resp.status == 401


async def test_the_server_recovers_the_order_signer(still: LoopbackPolymarket, client: Client) -> None:
    ask = still.book(YES)[1][0][0]
    forged = client.order("sig-1", ask, D(1), key=OTHER_KEY, maker=still.address)
    status, body = await client.request("POST", "/order", forged)
    assert (status, body) == (400, {"error": "invalid signature"})
    tampered = client.order("sig-2", ask, D(1))
    tampered["order"]["takerAmount"] = "2000000"  # type: ignore[index]  # signed for 1 share, sent as 2
    status, body = await client.request("POST", "/order", tampered)
    assert (status, body) == (400, {"error": "invalid signature"})
    status, body = await client.request("POST", "/order", client.order("sig-3", ask, D(1)))
    assert status == 200 and body["success"] is True  # type: ignore[index]


async def test_a_v2_server_recovers_the_v2_order_signer(still: LoopbackPolymarket, client: Client) -> None:
    still.order_version = 2
    ask = still.book(YES)[1][0][0]
    forged = client.order_v2("v2sig-1", ask, D(1), key=OTHER_KEY, maker=still.address)
    assert await client.request("POST", "/order", forged) == (400, {"error": "invalid signature"})
    for field, value in (("takerAmount", "2000000"), ("timestamp", "1700000000001"), ("builder", "0x" + "11" * 32)):
        tampered = client.order_v2(f"v2sig-{field}", ask, D(1))
        tampered["order"][field] = value  # type: ignore[index]  # a signed field changed after signing
        assert await client.request("POST", "/order", tampered) == (400, {"error": "invalid signature"}), field
    unsigned = client.order_v2("v2sig-2", ask, D(1))
    unsigned["order"]["expiration"] = "1800000000"  # type: ignore[index]  # sent, not signed: still valid
    status, body = await client.request("POST", "/order", unsigned)
    assert status == 200 and body["success"] is True and body["status"] == "matched"  # type: ignore[index]
    assert body["tradeIDs"] and body["orderID"] in still.order_ids()  # type: ignore[index]
    status, row = await client.request("GET", f"/data/order/{body['orderID']}")  # type: ignore[index]
    assert status == 200 and row["expiration"] == "1800000000"  # type: ignore[index]


async def test_the_server_refuses_orders_of_the_other_version(still: LoopbackPolymarket, client: Client) -> None:
    ask = still.book(YES)[1][0][0]
    mismatch = (400, {"error": "order_version_mismatch"})
    assert await client.request("POST", "/order", client.order_v2("ver-1", ask, D(1))) == mismatch  # V1 server
    still.order_version = 2
    assert await client.request("POST", "/order", client.order("ver-2", ask, D(1))) == mismatch
    mixed = client.order_v2("ver-3", ask, D(1))
    mixed["order"]["feeRateBps"] = "0"  # type: ignore[index]
    assert await client.request("POST", "/order", mixed) == (400, {"error": "Invalid order payload"})
    deferred = {**client.order_v2("ver-4", ask, D(1)), "deferExec": True}
    status, body = await client.request("POST", "/order", deferred)
    assert status == 400 and "deferExec" in body["error"]  # type: ignore[index]
    assert still.order_ids() == set()
    status, body = await client.request("POST", "/order", client.order_v2("ver-5", ask, D(1)))
    assert status == 200 and body["success"] is True  # type: ignore[index]


async def test_the_server_checks_fee_rate_tick_and_balance(still: LoopbackPolymarket, client: Client) -> None:
    ask = still.book(YES)[1][0][0]
    status, body = await client.request("POST", "/order", client.order("chk-1", ask, D(1), fee_bps=100))
    assert status == 400 and "invalid fee rate" in body["error"]  # type: ignore[index]
    status, body = await client.request(
        "POST", "/order", client.order("chk-2", ask - D("0.005"), D(1), tick=D("0.001"))
    )
    assert status == 400 and "invalid price" in body["error"]  # type: ignore[index]
    still.collateral = D("0.10")
    status, body = await client.request("POST", "/order", client.order("chk-3", ask, D(1)))
    assert (status, body) == (400, {"error": "not enough balance / allowance"})


async def test_a_taken_level_leaves_the_book_and_the_feed_follows(still: LoopbackPolymarket, client: Client) -> None:
    f = Feed(still)
    await f.supervisor.start()
    try:
        await f.synced("the first snapshots")
        (ask, qty), (next_ask, _) = still.book(YES)[1][:2]
        status, body = await client.request("POST", "/order", client.order("take-1", ask, qty))
        assert status == 200 and body["status"] == "matched"  # type: ignore[index]
        assert body["takingAmount"] == format(qty.normalize(), "f")  # type: ignore[index]
        assert still.book(YES)[1][0][0] == next_ask
        await f.synced("the books after the fill")
        assert still.tokens[YES] == D(10_000) + qty
    finally:
        await f.supervisor.stop()


async def test_the_venue_table_is_a_valid_config(still: LoopbackPolymarket, tmp_path: Path) -> None:
    def market(outcome: str, token: str) -> dict[str, object]:
        listing = {"symbol": token, "tick_size": "0.01", "lot_size": "0.01", "min_size": "1"}
        return {
            "kind": "outcome",
            "event": "FED",
            "outcome": outcome,
            "base": f"FED-{outcome}",
            "quote": "USDC",
            "max_quantity": "100",
            "venues": {"pm": listing},
        }

    table = still.venue_table("0.0200")
    markets = {"FED-YES": market("YES", YES), "FED-NO": market("NO", NO)}
    doc = {"mode": "paper", "venues": {"pm": table}, "markets": markets}
    path = tmp_path / "config.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    vc = load_config(path).venue("pm")
    assert vc.kind == "polymarket" and vc.real is not None
    assert (vc.real.ws_url, vc.real.rest_url) == (still.ws_url, still.rest_url)
    assert vc.fees.taker_rate == D("0.02") and still.fee_rate_bps == 200  # the server charges what the table says
    assert set(still.credentials) == {"private_key", "api_key", "api_secret", "api_passphrase"}
