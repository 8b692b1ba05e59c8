"""RemoteSimVenue against the simulated market server running in another process (loopback only).

The server is started with ``sys.executable -m arbtui.sim.server --port 0`` and always stopped
in a fixture's teardown. Waiting is done by bounded polling with generous deadlines, never by
fixed sleeps, so a slow machine makes the tests slower, not flaky.
"""

from __future__ import annotations

import asyncio
import selectors
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest

from arbtui.config import default_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import LiveClock
from arbtui.domain.events import VenueStatus
from arbtui.domain.money import ceil_to_step, floor_to_step
from arbtui.domain.orders import OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.sim.server import parse_args
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.sim_remote import MalformedFrame, RemoteSimVenue, parse_frame

D = Decimal
VENUE = "kraken"
MARKET = "BTC-USD"
STARTUP_S = 20.0
DEADLINE_S = 20.0
QTY = D("0.01")
NO_FAULTS = ("--timeout-rate", "0", "--reject-rate", "0", "--partial-fill-rate", "0")
FAST = ("--ack-latency-ms", "4", "--latency-jitter-ms", "0")


# --- the server process ------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:] if self.log.exists() else ""


def start_server(log: Path, *args: str) -> Server:
    """Start the server and wait (up to STARTUP_S) for its ``LISTENING`` line."""
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "arbtui.sim.server", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    server = Server(proc, "", log)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=STARTUP_S):
                raise AssertionError(f"no LISTENING line within {STARTUP_S} s\n{server.log_tail()}")
        line = proc.stdout.readline().strip()
        assert line.startswith("LISTENING http://127.0.0.1:"), f"{line!r}\n{server.log_tail()}"
        server.url = line.split(" ", 1)[1]
        return server
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=15)
    if server.proc.stdout is not None:
        server.proc.stdout.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One fault-free server shared by the module's tests (each uses its own client order ids)."""
    srv = start_server(tmp_path_factory.mktemp("sim-server") / "server.log", *NO_FAULTS, *FAST)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def timeout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on which no order's reply ever comes."""
    srv = start_server(
        tmp_path_factory.mktemp("sim-timeout") / "server.log",
        "--timeout-rate",
        "1",
        "--reject-rate",
        "0",
        "--partial-fill-rate",
        "0",
        *FAST,
    )
    try:
        yield srv
    finally:
        stop_server(srv)


# --- the client ------------------------------------------------------------------------------


class Recorder:
    """A VenueListener that keeps what it was told, and whether any book it saw was crossed."""

    def __init__(self) -> None:
        self.books: dict[str, int] = {}
        self.crossed: list[tuple[str, int]] = []
        self.statuses: list[tuple[VenueStatus, str]] = []

    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        self.books[market] = self.books.get(market, 0) + 1
        if book.is_crossed():
            self.crossed.append((market, book.sequence))

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        self.statuses.append((status, detail))


def make_venue(url: str, depth: int = 15, name: str = VENUE) -> RemoteSimVenue:
    cfg = default_config()
    listings = cfg.instruments().listings_for_venue(VENUE)
    return RemoteSimVenue(name, url, listings, cfg.venue(VENUE).fees, LiveClock(), depth=depth)


@pytest.fixture
async def kraken(server: Server) -> AsyncIterator[tuple[RemoteSimVenue, Recorder]]:
    venue, rec = make_venue(server.url), Recorder()
    await venue.connect(rec)
    try:
        yield venue, rec
    finally:
        await venue.close()


async def eventually(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.02)


def book_of(venue: RemoteSimVenue, market: str = MARKET) -> OrderBook:
    book = venue.book(market)
    assert book is not None
    return book


def tick(venue: RemoteSimVenue, market: str = MARKET) -> Decimal:
    return next(lst.tick_size for lst in venue.listings if lst.market == market)


def marketable_buy(venue: RemoteSimVenue, cid: str, qty: Decimal = QTY) -> OrderRequest:
    ask = book_of(venue).best_ask()
    assert ask is not None
    limit = ceil_to_step(ask[0] * D("1.01"), tick(venue))  # 1% through the touch: fills whatever the book does
    return OrderRequest(cid, VENUE, MARKET, Side.BUY, qty, limit, TimeInForce.IOC)


async def final_report(venue: RemoteSimVenue, cid: str, timeout_s: float = DEADLINE_S) -> OrderReport:
    """Poll ``order_status`` until the order is final; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (report := await venue.order_status(cid)).status.is_final:
        assert loop.time() < deadline, f"order {cid} still {report.status.value} after {timeout_s} s"
        await asyncio.sleep(0.02)
    return report


def same_order(a: OrderReport, b: OrderReport) -> None:
    assert (
        a.client_order_id,
        a.venue,
        a.venue_order_id,
        a.status,
        a.quantity,
        a.filled_quantity,
        a.average_price,
        a.fee,
        a.reason,
        a.fills,
    ) == (
        b.client_order_id,
        b.venue,
        b.venue_order_id,
        b.status,
        b.quantity,
        b.filled_quantity,
        b.average_price,
        b.fee,
        b.reason,
        b.fills,
    )


# --- market data -------------------------------------------------------------------------------


async def test_books_arrive_uncrossed_and_keep_updating(kraken: tuple[RemoteSimVenue, Recorder]) -> None:
    venue, rec = kraken
    markets = [lst.market for lst in venue.listings]
    assert sorted(markets) == ["BTC-USD", "ETH-USD"]
    assert venue.status is VenueStatus.CONNECTED
    assert [s for s, _ in rec.statuses] == [VenueStatus.CONNECTING, VenueStatus.CONNECTED]
    for m in markets:  # connect() returned after every snapshot
        book = book_of(venue, m)
        assert book.best_bid() is not None and book.best_ask() is not None
        assert len(book.bids) <= 15 and len(book.asks) <= 15
    await eventually(lambda: all(rec.books.get(m, 0) >= 5 for m in markets), "live updates on every book")
    assert rec.crossed == []
    for m in markets:
        book = book_of(venue, m)
        assert not book.is_crossed()
        assert all(p % tick(venue, m) == 0 and q > 0 for p, q in [*book.bids, *book.asks])
    assert venue.malformed_frames == 0


async def test_updates_on_a_snapshot_rebuild_the_venue_book_at_any_depth(server: Server) -> None:
    """A deep client and a shallow one, fed by independent diffs, agree whenever they have seen the
    same publication: levels entering and leaving the top ``depth`` are all sent."""
    deep, shallow = make_venue(server.url, depth=15), make_venue(server.url, depth=4)
    await deep.connect(Recorder())
    await shallow.connect(Recorder())
    try:
        matches = 0

        def compare() -> bool:
            nonlocal matches
            a, b = book_of(deep), book_of(shallow)
            if a.last_update_ns == b.last_update_ns and a.sequence > 1 and b.sequence > 1:
                assert a.bids.top(4) == list(b.bids) and a.asks.top(4) == list(b.asks)
                matches += 1
            return matches >= 5

        await eventually(compare, "both clients at the same publication of BTC-USD, five times")

        # A snapshot over REST agrees with the deep client whenever they show the same publication.
        def levels(raw: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
            return [(D(p), D(q)) for p, q in raw]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"{server.url}/v/{VENUE}/book/{MARKET}") as resp:
                    assert resp.status == 200
                    rest = orjson.loads(await resp.read())
                book = book_of(deep)
                if rest["ts_ns"] == book.last_update_ns:
                    assert list(book.bids) == levels(rest["bids"])[:15]
                    assert list(book.asks) == levels(rest["asks"])[:15]
                    assert isinstance(rest["sequence"], int) and rest["sequence"] > 0
                    break
                assert loop.time() < deadline, "the REST book never matched the streamed one"
                await asyncio.sleep(0.01)
    finally:
        await deep.close()
        await shallow.close()


# --- orders ------------------------------------------------------------------------------------


async def test_ioc_buy_fills_matches_order_status_and_moves_balances(kraken: tuple[RemoteSimVenue, Recorder]) -> None:
    venue, _ = kraken
    before = await venue.balances()
    order = marketable_buy(venue, "ioc-fill-1")

    report = await venue.place_order(order)

    assert report.status is OrderStatus.FILLED
    assert report.filled_quantity == order.quantity and report.remaining == 0
    assert report.venue == VENUE and report.venue_order_id
    assert report.fills and sum((f.quantity for f in report.fills), D(0)) == order.quantity
    notional = sum((f.quantity * f.price for f in report.fills), D(0))
    assert report.average_price == notional / order.quantity
    assert report.fee == notional * venue.fees(MARKET).taker_rate  # exact: Decimal end to end
    assert all(isinstance(v, Decimal) for v in (report.fee, report.quantity, report.fills[0].price))

    status = await venue.order_status("ioc-fill-1")
    same_order(status, report)

    after = await venue.balances()
    assert after["BTC"] == before["BTC"] + order.quantity
    assert after["USD"] == before["USD"] - notional - report.fee
    assert after["ETH"] == before["ETH"]


async def test_gtc_rests_holds_funds_and_cancels(kraken: tuple[RemoteSimVenue, Recorder]) -> None:
    venue, _ = kraken
    bid = book_of(venue).best_bid()
    assert bid is not None
    limit = floor_to_step(bid[0] / 2, tick(venue))  # far below the market: it rests
    before = await venue.balances()
    report = await venue.place_order(OrderRequest("gtc-1", VENUE, MARKET, Side.BUY, D("0.02"), limit, TimeInForce.GTC))
    assert report.status is OrderStatus.OPEN and report.filled_quantity == 0
    held = await venue.balances()
    assert held["USD"] == before["USD"] - D("0.02") * limit

    cancelled = await venue.cancel_order("gtc-1")
    assert cancelled.status is OrderStatus.CANCELLED
    assert (await venue.order_status("gtc-1")).status is OrderStatus.CANCELLED
    assert (await venue.balances())["USD"] == before["USD"]


async def test_unknown_orders_raise_unknown_order(kraken: tuple[RemoteSimVenue, Recorder]) -> None:
    venue, _ = kraken
    with pytest.raises(UnknownOrder):
        await venue.cancel_order("never-sent")
    with pytest.raises(UnknownOrder):
        await venue.order_status("never-sent")


async def test_a_duplicate_client_order_id_is_refused(kraken: tuple[RemoteSimVenue, Recorder]) -> None:
    venue, _ = kraken
    first = await venue.place_order(marketable_buy(venue, "dup-1"))
    assert first.status is OrderStatus.FILLED
    with pytest.raises(VenueError) as refused:
        await venue.place_order(marketable_buy(venue, "dup-1"))
    assert not isinstance(refused.value, UnknownOrder)
    assert not refused.value.retryable
    assert "duplicate" in str(refused.value)
    same_order(await venue.order_status("dup-1"), first)  # the first order is untouched


async def test_any_client_order_id_is_one_path_segment(kraken: tuple[RemoteSimVenue, Recorder]) -> None:
    venue, _ = kraken
    cid = "odd/id with space?&#%"
    report = await venue.place_order(marketable_buy(venue, cid))
    assert report.client_order_id == cid
    same_order(await venue.order_status(cid), report)


async def test_a_lost_reply_hangs_but_the_order_executed(timeout_server: Server) -> None:
    venue, rec = make_venue(timeout_server.url), Recorder()
    await venue.connect(rec)
    try:
        before = await venue.balances()
        order = marketable_buy(venue, "lost-1")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(venue.place_order(order), timeout=1.0)

        # Cancelling the request left the client usable, and the venue did execute the order.
        status = await final_report(venue, "lost-1")
        assert status.status is OrderStatus.FILLED
        assert status.filled_quantity == order.quantity
        after = await venue.balances()
        assert after["BTC"] == before["BTC"] + order.quantity
        # A second lost reply: still no answer, still executed (the first did not wedge anything).
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(venue.place_order(marketable_buy(venue, "lost-2")), timeout=1.0)
        assert (await final_report(venue, "lost-2")).status is OrderStatus.FILLED
        assert venue.status is VenueStatus.CONNECTED
    finally:
        await venue.close()


# --- the HTTP API as other clients see it ------------------------------------------------------


async def test_malformed_requests_get_clear_errors(server: Server) -> None:
    good = {
        "client_order_id": "raw-1",
        "market": MARKET,
        "side": "buy",
        "quantity": "0.01",
        "limit_price": "1000",
        "time_in_force": "gtc",
    }
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> tuple[int, dict[str, object]]:
            async with http.post(f"{server.url}/v/{VENUE}/orders", data=body) as resp:
                return resp.status, orjson.loads(await resp.read())

        status, err = await post(b"{nope")
        assert status == 400 and "not JSON" in str(err["error"])
        status, err = await post(orjson.dumps({**good, "quantity": 0.01}))
        assert status == 400 and "quantity" in str(err["error"]) and "decimal string" in str(err["error"])
        status, err = await post(orjson.dumps({**good, "side": "long"}))
        assert status == 400 and "side" in str(err["error"])
        status, err = await post(orjson.dumps({k: v for k, v in good.items() if k != "market"}))
        assert status == 400 and "market" in str(err["error"])
        status, err = await post(orjson.dumps({**good, "limit_price": "-1"}))
        assert status == 400 and "limit price" in str(err["error"])
        status, err = await post(orjson.dumps({**good, "limit_price": "NaN"}))
        assert status == 400 and "limit_price" in str(err["error"])

        async with http.get(f"{server.url}/v/nowhere/balances") as resp:
            assert resp.status == 404 and "unknown venue" in orjson.loads(await resp.read())["error"]
        async with http.get(f"{server.url}/v/{VENUE}/book/DOGE-USD") as resp:
            assert resp.status == 404
        async with http.get(f"{server.url}/v/{VENUE}/orders/nothing") as resp:
            assert (resp.status, orjson.loads(await resp.read())) == (404, {"error": "unknown order"})
        async with http.get(f"{server.url}/v/{VENUE}/ws", params={"depth": "0"}) as resp:
            assert resp.status == 400
        async with http.get(f"{server.url}/v/{VENUE}/balances") as resp:
            balances = orjson.loads(await resp.read())
            assert all(isinstance(v, str) for v in balances.values()) and "USD" in balances


async def test_connecting_to_an_unknown_venue_fails_cleanly(server: Server) -> None:
    venue, rec = make_venue(server.url, name="nowhere"), Recorder()
    with pytest.raises(VenueError) as failed:
        await venue.connect(rec)
    assert failed.value.retryable
    assert [s for s, _ in rec.statuses] == [VenueStatus.CONNECTING, VenueStatus.ERROR]
    await venue.close()
    await venue.close()


async def test_losing_the_server_is_reported_and_close_is_idempotent(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "server.log", *NO_FAULTS, *FAST)
    try:
        venue, rec = make_venue(srv.url), Recorder()
        await venue.connect(rec)
        srv.proc.terminate()
        await eventually(lambda: venue.status is VenueStatus.ERROR, "the loss of market data to be reported")
        assert rec.statuses[-1][0] is VenueStatus.ERROR
        with pytest.raises(VenueError) as lost:
            await venue.balances()
        assert lost.value.retryable
        await venue.close()
        await venue.close()
        assert venue.status is VenueStatus.CLOSED
        assert [s for s, _ in rec.statuses][-2:] == [VenueStatus.ERROR, VenueStatus.CLOSED]
        with pytest.raises(VenueError):
            await venue.order_status("x")
    finally:
        stop_server(srv)


def test_the_server_refuses_to_listen_beyond_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--host", "0.0.0.0"])
    assert "loopback" in capsys.readouterr().err
    assert parse_args(["--host", "127.0.0.1"]).host == "127.0.0.1"
    with pytest.raises(SystemExit):
        parse_args(["--timeout-rate", "0.6", "--reject-rate", "0.6"])


# --- frames ------------------------------------------------------------------------------------

SNAPSHOT = {
    "type": "snapshot",
    "market": MARKET,
    "bids": [["100.0", "1"], ["99.9", "2"]],
    "asks": [["100.1", "1.5"]],
    "ts_ns": 5,
}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (orjson.dumps({"type": "trade"}), "unknown frame type"),
        (orjson.dumps({**SNAPSHOT, "market": 7}), "market id"),
        (orjson.dumps({**SNAPSHOT, "ts_ns": "5"}), "ts_ns"),
        (orjson.dumps({**SNAPSHOT, "ts_ns": True}), "ts_ns"),
        (orjson.dumps({**SNAPSHOT, "bids": [[100.0, "1"]]}), "decimal string"),
        (orjson.dumps({**SNAPSHOT, "bids": [["100", "1", "x"]]}), "pair"),
        (orjson.dumps({**SNAPSHOT, "asks": [["100", "-1"]]}), "not negative"),
        (orjson.dumps({**SNAPSHOT, "asks": [["0", "1"]]}), "positive"),
        (orjson.dumps({**SNAPSHOT, "asks": [["Infinity", "1"]]}), "finite"),
        (orjson.dumps({**SNAPSHOT, "asks": None}), "list"),
    ],
)
def test_parse_frame_refuses_malformed_frames(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedFrame, match=why):
        parse_frame(raw)


def test_parse_frame_reads_exact_decimals_and_heartbeats() -> None:
    frame = parse_frame(orjson.dumps(SNAPSHOT).decode())
    assert frame is not None and frame.snapshot and frame.market == MARKET and frame.ts_ns == 5
    assert frame.bids == ((D("100.0"), D(1)), (D("99.9"), D(2)))
    assert frame.asks == ((D("100.1"), D("1.5")),)
    assert parse_frame(b'{"type": "heartbeat"}') is None


async def test_a_malformed_frame_is_counted_and_skipped() -> None:
    venue = make_venue("http://127.0.0.1:9")  # never connected: frames are fed by hand
    update = {"type": "update", "market": MARKET, "bids": [["100.0", "0"]], "asks": [], "ts_ns": 6}
    venue.handle_frame(orjson.dumps({**update, "market": "ETH-USD"}))  # an update before its snapshot
    assert venue.malformed_frames == 1 and venue.book("ETH-USD") is None
    venue.handle_frame(orjson.dumps(SNAPSHOT))
    venue.handle_frame(b"\x00garbage")
    # one bad level spoils the whole frame: the good level in it is not applied either
    venue.handle_frame(orjson.dumps({**update, "asks": [["100.1", 2.5]]}))
    assert venue.malformed_frames == 3
    book = book_of(venue)
    assert list(book.bids) == [(D("100.0"), D(1)), (D("99.9"), D(2))] and book.sequence == 1
    venue.handle_frame(orjson.dumps(update))
    venue.handle_frame(b'{"type": "heartbeat"}')
    venue.handle_frame(orjson.dumps({**SNAPSHOT, "market": "XRP-USD"}))  # not served here: ignored
    assert venue.malformed_frames == 3
    assert list(book_of(venue).bids) == [(D("99.9"), D(2))] and book_of(venue).last_update_ns == 6
