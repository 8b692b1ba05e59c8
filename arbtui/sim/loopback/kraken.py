"""A loopback Kraken: Kraken's WebSocket v2 market data and its private REST API on 127.0.0.1.

It speaks the wire formats :mod:`arbtui.venues.kraken` speaks to the real venue (Kraken's WebSocket
v2 and REST documentation, https://docs.kraken.com/api/), so the connector, the engine and the
console can be run and tested end to end without the real venue:

WebSocket ``ws://HOST:PORT/v2``
    On connect a ``status`` frame. ``subscribe``/``unsubscribe`` for ``book`` (one ack per symbol,
    ``depth`` one of 10/25/100/500/1000, ``"Already subscribed"`` / ``"Currency pair not supported"``
    refusals) and ``instrument`` (a snapshot with every pair's precisions), and ``ping``. Book
    frames are Kraken's v2 shapes with prices and sizes as JSON **numbers** (so trailing zeros drop
    on the wire, as on the real venue) and a real CRC32 on the snapshot and every update. Like
    Kraken, no delete is sent for a level that only fell out of the subscribed depth. A
    ``heartbeat`` goes out after a second without other traffic.

REST ``http://HOST:PORT/0/private/<Method>``
    ``AddOrder``, ``CancelOrder``, ``QueryOrders``, ``OpenOrders``, ``ClosedOrders``, ``QueryTrades``,
    ``Balance``, ``BalanceEx``, ``TradeVolume`` (``fees`` / ``fees_maker`` keyed by the pair's
    internal name, ``XXBTZUSD``, whichever name the request used), and public ``Time`` and
    ``AssetPairs`` (keyed by internal name: ``altname``, v1 ``wsname``, legacy asset codes,
    ``pair_decimals``/``lot_decimals``/``cost_decimals``, ``ordermin`` = the lot, ``costmin``,
    ``tick_size``). A pair is taken by its altname or internal name. Every request's ``API-Key``, ``API-Sign`` and nonce
    are checked as Kraken does (``EAPI:Invalid key``, ``EAPI:Invalid signature``, ``EAPI:Invalid
    nonce`` for a nonce not above the last one) and errors come back in Kraken's shape
    (``{"error": ["EOrder:Insufficient funds"], "result": {}}``).

Orders are real: a limit order takes the published book's liquidity at or better than its limit
(as a taker), an IOC remainder is cancelled, a GTC remainder rests in the published book and is
filled (as a maker, at its price) when the moving market crosses it; what trades is gone from the
book and the next book frames show it. Balances are kept (fees in the quote currency) and checked.
``timeinforce`` FOK does not exist on Kraken spot and is refused like any invalid argument. Our own
resting orders are never matched by our own takers (Kraken's self-trade prevention would cancel one
of them; here the taker simply skips them).

Faults on demand (:meth:`LoopbackKraken.drop_connections`, ``skip_frames``, ``corrupt_frames``,
``send_garbage``, ``fail_requests``, ``refuse_requests`` (answer with a given Kraken error string),
``hang_requests``, ``lose_replies``, ``arrive_late``) let tests
break exactly one thing. ``arrive_late`` (:mod:`arbtui.sim.loopback.late`): the AddOrder reply is
lost and the order does not exist (``OpenOrders`` / ``ClosedOrders`` by ``cl_ord_id`` list nothing,
as for any unknown id) until ``delay_s`` later on the server's clock, when ``AddOrder`` runs as if the
request had just arrived: its ``deadline`` is checked then (``EService:Deadline elapsed``: never
placed), and otherwise it trades or rests like any order (``late_arrivals`` says what became of each).

Extras beyond the uniform loopback API: ``pause_market``/``resume_market`` (freeze the random walk so
a test can compare books), ``set_balance`` (move the account's funds behind a client's back),
``fail_requests(..., method=...)``/``hang_requests(..., method=...)`` (aim a fault at one endpoint),
``requests`` (private requests received, by method), ``replies_withheld`` / ``requests_hung`` (so a
test can wait for the fault to have happened rather than for a fixed time) and ``orders`` (every
order it has received, by txid).

The checksum and ``API-Sign`` here are written independently of the connector's, so a bug in one is
not silently mirrored by the other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import logging
import random
import socket
import string
import urllib.parse
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from arbtui.domain.book import Level
from arbtui.domain.clock import Clock, LiveClock
from arbtui.domain.money import ZERO, precision_of
from arbtui.sim.loopback.book_generator import BookGenerator, LoopbackMarket
from arbtui.sim.loopback.late import LateArrival, LateArrivals, Placement

log = logging.getLogger(__name__)

NS = 1_000_000_000
DEPTHS = (10, 25, 100, 500, 1000)
HEARTBEAT_S = 1.0
CHECKSUM_LEVELS = 10
_REST_NAMES = {"BTC": "XBT", "DOGE": "XDG"}  # REST altnames still use Kraken's old codes
_BALANCE_CODES = {"BTC": "XXBT", "ETH": "XETH", "DOGE": "XXDG", "USD": "ZUSD", "EUR": "ZEUR", "GBP": "ZGBP"}
# Internal pair names (AssetPairs' keys) that do not follow "legacy base code + legacy quote code".
_INTERNAL_NAMES = {"DOGE/USD": "XDGUSD"}


def _internal_name(base: str, quote: str, altname: str) -> str:
    """Kraken's internal pair name: the two legacy asset codes for pairs of legacy assets
    (``XXBTZUSD``, ``XETHXXBT``), else the altname (``SOLUSD``), as AssetPairs lists them."""
    special = _INTERNAL_NAMES.get(f"{base}/{quote}")
    if special is not None:
        return special
    if base in _BALANCE_CODES and quote in _BALANCE_CODES:
        return _BALANCE_CODES[base] + _BALANCE_CODES[quote]
    return altname


_CL_ORD_FREE_TEXT = set(string.ascii_letters + string.digits + string.punctuation.replace('"', "") + " ")


def _num(value: Decimal) -> str:
    """A Decimal as a JSON number without trailing zeros (what a JSON float looks like on the wire)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(_num(value))
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _dumps(data: Any) -> str:
    return orjson.dumps(data, default=_json_default).decode()


def _fixed(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"


def _rfc3339(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // NS, tz=UTC).replace(microsecond=(ns % NS) // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@lru_cache(maxsize=1 << 16)
def _token(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}".replace(".", "").lstrip("0")


def _crc(asks: list[Level], bids: list[Level], pp: int, qp: int) -> int:
    """Kraken's v2 book checksum, written from the guide: fixed-point text, no dot, no leading zeros."""
    text = "".join(_token(p, pp) + _token(q, qp) for p, q in asks[:CHECKSUM_LEVELS])
    text += "".join(_token(p, pp) + _token(q, qp) for p, q in bids[:CHECKSUM_LEVELS])
    return zlib.crc32(text.encode())


def _sign(path: str, body: bytes, nonce: str, secret: str) -> str:
    sha = hashlib.sha256(nonce.encode() + body).digest()
    return base64.b64encode(hmac.new(base64.b64decode(secret), path.encode() + sha, hashlib.sha512).digest()).decode()


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())


class KrakenError(Exception):
    """A request the loopback refuses with Kraken's error strings."""

    def __init__(self, *errors: str, status: int = 200) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)
        self.status = status


# ------------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Market:
    symbol: str
    base: str
    quote: str
    altname: str
    key: str  # the internal pair name (AssetPairs' key, TradeVolume's fees key): XXBTZUSD
    spec: LoopbackMarket
    gen: BookGenerator
    pp: int  # price precision
    qp: int  # qty precision


@dataclass(slots=True)
class _Trade:
    txid: str
    ordertxid: str
    pair: str
    time_ns: int
    side: str
    price: Decimal
    vol: Decimal
    fee: Decimal
    maker: bool


@dataclass(slots=True)
class _Order:
    txid: str
    cl_ord_id: str | None
    market: _Market
    side: str  # "buy" | "sell"
    price: Decimal
    vol: Decimal
    tif: str  # "GTC" | "IOC"
    oflags: str
    opentm_ns: int
    status: str = "pending"  # pending, open, closed, canceled, expired
    vol_exec: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    trades: list[str] = field(default_factory=list)
    reason: str | None = None
    closetm_ns: int | None = None

    @property
    def remaining(self) -> Decimal:
        return self.vol - self.vol_exec


@dataclass(slots=True)
class _Fault:
    kind: str  # "fail" | "hang" | "lose" | "refuse"
    remaining: int
    status: int = 0
    method: str | None = None
    errors: tuple[str, ...] = ()


class _Conn:
    """One WebSocket client: its subscriptions, what it was last sent, and what it is owed.

    Replies (acks, snapshots) queue in order; book changes only mark their symbol dirty, and the
    update is computed when the writer gets to it. A slow reader therefore gets fewer, larger
    updates, never a growing backlog (and each update is still exactly Kraken's diff against what
    that client was last sent, with its checksum).
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, number: int) -> None:
        self.ws = ws
        self.request = request
        self.number = number
        self.subs: dict[str, int] = {}  # symbol -> depth
        self.sent: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        self.ready: deque[str] = deque()
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.instrument = False

    def send(self, frame: str) -> None:
        self.ready.append(frame)
        self.wake.set()

    def touch(self, symbol: str) -> None:
        self.dirty.add(symbol)
        self.wake.set()

    async def run(self, render: Callable[[_Conn, str], str | None]) -> None:
        """Write replies in order, then the pending book updates; a heartbeat after a quiet second."""
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        try:
            while not self.ws.closed:
                if not self.ready and not self.dirty:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, last_sent + HEARTBEAT_S - loop.time())):
                            await self.wake.wait()
                self.wake.clear()
                frames = list(self.ready)
                self.ready.clear()
                dirty, self.dirty = self.dirty, set()
                for symbol in sorted(dirty):
                    frame = render(self, symbol)
                    if frame is not None:
                        frames.append(frame)
                if not frames and loop.time() - last_sent >= HEARTBEAT_S:
                    frames.append('{"channel":"heartbeat"}')
                for frame in frames:
                    await self.ws.send_str(frame)
                if frames:
                    last_sent = loop.time()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("kraken loopback: connection %d went away: %r", self.number, exc)

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()  # no closing handshake: the client sees the connection die mid-stream


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------


class LoopbackKraken:
    """Kraken on 127.0.0.1 (see the module docstring)."""

    kind: str = "kraken"

    def __init__(
        self,
        markets: Mapping[str, LoopbackMarket],
        *,
        seed: int = 0,
        interval_ms: int = 50,
        balances: Mapping[str, Decimal] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._clock: Clock = clock or LiveClock()
        self._interval_s = max(1, interval_ms) / 1000
        self._rng = random.Random(f"{seed}:kraken-loopback")
        self._markets: dict[str, _Market] = {}
        for symbol, spec in markets.items():
            base, sep, quote = symbol.partition("/")
            if not sep:
                raise ValueError(f"Kraken symbols are BASE/QUOTE, got {symbol!r}")
            altname = _REST_NAMES.get(base, base) + _REST_NAMES.get(quote, quote)
            gen = spec.generator(random.Random(f"{seed}:{symbol}"))
            key = _internal_name(base, quote, altname)
            self._markets[symbol] = _Market(
                symbol, base, quote, altname, key, spec, gen, precision_of(spec.tick), precision_of(spec.lot)
            )
        # Kraken takes a pair by its altname or its internal name wherever a request names one.
        self._by_altname = {m.altname: m for m in self._markets.values()}
        self._by_altname.update({m.key: m for m in self._markets.values()})
        if balances is None:
            balances = {}
            for m in self._markets.values():
                balances.setdefault(m.base, Decimal(1000))
                balances.setdefault(m.quote, Decimal(100_000_000))
        self._balances: dict[str, Decimal] = {k: Decimal(v) for k, v in balances.items()}
        self.taker_fee = Decimal("0.0010")
        self.maker_fee = Decimal("0.0000")
        secret = bytes(self._rng.getrandbits(8) for _ in range(64))
        self.credentials: dict[str, str] = {
            "api_key": f"loopback-kraken-{seed}-" + "".join(self._rng.choices(string.ascii_letters, k=24)),
            "api_secret": base64.b64encode(secret).decode(),
        }
        self._last_nonce: dict[str, int] = {}
        self.orders: dict[str, _Order] = {}
        self._trades: dict[str, _Trade] = {}
        self._ids = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._conn_numbers = itertools.count(1)
        self._faults: list[_Fault] = []
        self._late = LateArrivals(self._clock, "kraken-loopback")
        self._skip = 0
        self._corrupt = 0
        self._paused = False
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._publisher: asyncio.Task[None] | None = None
        self.subscriptions = 0
        self.replies_withheld = 0  # orders executed whose reply is being held back (lose_replies)
        self.requests_hung = 0  # requests being held unanswered and unexecuted (hang_requests)
        self.requests: Counter[str] = Counter()
        self.frames_sent = 0
        self.ws_url = ""
        self.rest_url = ""

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/v2", self._websocket)
        app.router.add_post("/0/private/{method}", self._private)
        app.router.add_get("/0/public/Time", self._time)
        app.router.add_get("/0/public/AssetPairs", self._asset_pairs)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            await web.SockSite(runner, sock).start()
        except OSError:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.ws_url = f"ws://{shown}:{bound}/v2"
        self.rest_url = f"http://{shown}:{bound}"
        self._stopping.clear()
        self._publisher = asyncio.create_task(self._publish_loop(), name="kraken-loopback-publisher")
        self._publisher.add_done_callback(_log_task_failure)

    async def stop(self) -> None:
        self._stopping.set()  # releases hung requests and lost replies
        await self._late.close()  # late orders still in flight never arrive
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.wait({self._publisher})
            self._publisher = None
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def venue_table(self, taker_fee: str = "0.0010") -> dict[str, object]:
        """A ``[venues.<name>]`` table for this server (TOML-ready)."""
        return {
            "kind": "kraken",
            "fee_model": "notional",
            "maker_fee": str(self.maker_fee),
            "taker_fee": taker_fee,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "depth": 10,
        }

    # --- faults ------------------------------------------------------------------------------
    def drop_connections(self) -> None:
        for conn in list(self._conns):
            conn.abort()

    def skip_frames(self, n: int = 1) -> None:
        """The next ``n`` book updates are generated (the book moves) but not sent: a gap."""
        self._skip += n

    def corrupt_frames(self, n: int = 1) -> None:
        """The next ``n`` book frames carry a wrong checksum."""
        self._corrupt += n

    def send_garbage(self, n: int = 1) -> None:
        """Send ``n`` frames to every connection that are not JSON, or JSON of the wrong shape."""
        symbol = next(iter(self._markets), "BTC/USD")
        samples = [
            "this is not json {",
            '{"channel":"book","type":"update","data":"oops"}',
            "[1,2,3]",
            _dumps(
                {
                    "channel": "book",
                    "type": "update",
                    "data": [{"symbol": symbol, "bids": [{"price": "abc", "qty": 1}], "asks": [], "checksum": 1}],
                }
            ),
        ]
        for conn in list(self._conns):
            for i in range(n):
                conn.send(samples[i % len(samples)])

    def fail_requests(self, status: int, n: int = 1, *, method: str | None = None) -> None:
        """The next ``n`` private requests (of ``method``, if given) are answered with HTTP ``status``."""
        self._faults.append(_Fault("fail", n, status, method))

    def refuse_requests(self, error: str, n: int = 1, *, method: str | None = None, status: int = 200) -> None:
        """The next ``n`` private requests (of ``method``, if given) are answered with Kraken's
        ``error`` string (``{"error": [error], "result": {}}``, HTTP ``status``) and not executed."""
        self._faults.append(_Fault("refuse", n, status, method, (error,)))

    def hang_requests(self, n: int = 1, *, method: str | None = None) -> None:
        """The next ``n`` private requests are never answered (nor executed) until the server stops."""
        self._faults.append(_Fault("hang", n, 0, method))

    def lose_replies(self, n: int = 1) -> None:
        """The next ``n`` AddOrder requests are executed but their replies never come."""
        self._faults.append(_Fault("lose", n, 0, "AddOrder"))

    def arrive_late(self, delay_s: float, n: int = 1) -> None:
        """The next ``n`` AddOrder requests arrive ``delay_s`` late (server clock): their replies never
        come, the order is unknown until then, and then ``AddOrder`` runs (its ``deadline`` checked)."""
        self._late.arm(n, delay_s)

    @property
    def late_arrivals(self) -> list[LateArrival]:
        """Every request the late-arrival fault held back, and what became of it."""
        return self._late.records

    def pause_market(self) -> None:
        """Stop the random walk (orders still trade and are published)."""
        self._paused = True

    def resume_market(self) -> None:
        self._paused = False

    def set_balance(self, asset: str, amount: Decimal) -> None:
        """Set the account's total balance of ``asset`` (a config asset name such as ``USD``)."""
        self._balances[asset] = Decimal(amount)

    # --- inspection --------------------------------------------------------------------------
    def book(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The full current book (bids, asks), best first: market makers' levels plus resting orders."""
        return self._levels(self._markets[symbol])

    def free_balances(self) -> dict[str, Decimal]:
        return self._free()

    # --- market data -------------------------------------------------------------------------
    def _levels(self, m: _Market) -> tuple[list[Level], list[Level]]:
        bids = dict(m.gen.bids)
        asks = dict(m.gen.asks)
        for order in self.orders.values():
            if order.market is m and order.status == "open":
                side = bids if order.side == "buy" else asks
                side[order.price] = side.get(order.price, ZERO) + order.remaining
        return sorted(bids.items(), reverse=True), sorted(asks.items())

    async def _publish_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self._interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at, loop.time() - self._interval_s)  # never try to catch up a backlog
            if self._paused:
                continue
            for m in self._markets.values():
                m.gen.step()
                self._match_resting(m)
                self._publish(m)

    def _publish(self, m: _Market) -> None:
        """Tell each subscriber of ``m`` that its book changed (its writer computes the update)."""
        for conn in self._conns:
            if m.symbol in conn.subs:
                conn.touch(m.symbol)

    def _render(self, conn: _Conn, symbol: str) -> str | None:
        m = self._markets.get(symbol)
        if m is None or symbol not in conn.subs:
            return None  # unsubscribed meanwhile
        bids, asks = self._levels(m)
        return self._book_frame(conn, m, bids, asks, snapshot=symbol not in conn.sent)

    def _book_frame(
        self, conn: _Conn, m: _Market, bids: list[Level], asks: list[Level], *, snapshot: bool
    ) -> str | None:
        """The book frame owed to ``conn`` (None when nothing changed in its depth, or skipped)."""
        depth = conn.subs[m.symbol]
        top_b, top_a = bids[:depth], asks[:depth]
        if snapshot:
            bid_changes, ask_changes = top_b, top_a
        else:
            old_b, old_a = conn.sent[m.symbol]
            bid_changes = _changes(old_b, top_b, {p for p, _ in bids})
            ask_changes = _changes(old_a, top_a, {p for p, _ in asks})
            if not bid_changes and not ask_changes:
                return None
        conn.sent[m.symbol] = (dict(top_b), dict(top_a))
        if not snapshot and self._skip > 0:
            self._skip -= 1
            return None  # generated and recorded as sent, but never sent: the client has a gap
        checksum = _crc(top_a, top_b, m.pp, m.qp)
        if self._corrupt > 0:
            self._corrupt -= 1
            checksum ^= 0x5A5A5A5A
        frame = {
            "channel": "book",
            "type": "snapshot" if snapshot else "update",
            "data": [
                {
                    "symbol": m.symbol,
                    "bids": [{"price": p, "qty": q} for p, q in bid_changes],
                    "asks": [{"price": p, "qty": q} for p, q in ask_changes],
                    "checksum": checksum,
                    "timestamp": _rfc3339(self._clock.now_ns()),
                }
            ],
        }
        self.frames_sent += 1
        return _dumps(frame)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request, next(self._conn_numbers))
        self._conns.add(conn)
        writer = asyncio.create_task(conn.run(self._render), name=f"kraken-loopback-ws-{conn.number}")
        writer.add_done_callback(_log_task_failure)
        conn.send(
            _dumps(
                {
                    "channel": "status",
                    "type": "update",
                    "data": [
                        {"version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": conn.number}
                    ],
                }
            )
        )
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_client_message(conn, msg.data)
        finally:
            self._conns.discard(conn)
            writer.cancel()
            await asyncio.wait({writer})
        return ws

    def _on_client_message(self, conn: _Conn, text: str) -> None:
        now = self._clock.now_ns()
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            conn.send(_dumps({"error": "Malformed request", "success": False, "time_in": _rfc3339(now)}))
            return
        if not isinstance(msg, dict):
            conn.send(_dumps({"error": "Malformed request", "success": False}))
            return
        method = msg.get("method")
        req_id = msg.get("req_id")
        stamp = {"time_in": _rfc3339(now), "time_out": _rfc3339(self._clock.now_ns())}
        extra = {"req_id": req_id} if req_id is not None else {}
        if method == "ping":
            conn.send(_dumps({"method": "pong", **extra, **stamp}))
            return
        params = msg.get("params")
        if method not in ("subscribe", "unsubscribe") or not isinstance(params, dict):
            conn.send(_dumps({"error": f"Method not found: {method}", "method": method, "success": False, **extra}))
            return
        channel = params.get("channel")
        if channel == "instrument":
            self._instrument(conn, method, params, extra, stamp)
        elif channel == "book":
            self._book_request(conn, method, params, extra, stamp)
        else:
            error = f"Channel not supported: {channel}"
            conn.send(_dumps({"error": error, "method": method, "success": False, **extra}))

    def _instrument(
        self, conn: _Conn, method: str, params: dict[str, Any], extra: dict[str, Any], stamp: dict[str, str]
    ) -> None:
        snapshot = params.get("snapshot", True) is not False
        conn.instrument = method == "subscribe"
        conn.send(
            _dumps(
                {
                    "method": method,
                    "result": {"channel": "instrument", "snapshot": snapshot},
                    "success": True,
                    **extra,
                    **stamp,
                }
            )
        )
        if method != "subscribe" or not snapshot:
            return
        assets = sorted({a for m in self._markets.values() for a in (m.base, m.quote)})
        pairs = [
            {
                "symbol": m.symbol,
                "base": m.base,
                "quote": m.quote,
                "status": "online",
                "qty_precision": m.qp,
                "qty_increment": m.spec.lot,
                "price_precision": m.pp,
                "price_increment": m.spec.tick,
                "cost_precision": m.pp + 4,
                "cost_min": Decimal("0.5"),
                "qty_min": m.spec.lot,
                "marginable": False,
                "has_index": True,
            }
            for m in self._markets.values()
        ]
        data = {
            "assets": [
                {"id": a, "status": "enabled", "precision": 10, "precision_display": 5, "borrowable": False}
                for a in assets
            ],
            "pairs": pairs,
        }
        conn.send(_dumps({"channel": "instrument", "type": "snapshot", "data": data}))

    def _book_request(
        self, conn: _Conn, method: str, params: dict[str, Any], extra: dict[str, Any], stamp: dict[str, str]
    ) -> None:
        symbols = params.get("symbol")
        depth = params.get("depth", 10)
        snapshot = params.get("snapshot", True) is not False
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            conn.send(_dumps({"error": "Missing symbol", "method": method, "success": False, **extra, **stamp}))
            return
        if depth not in DEPTHS:
            conn.send(_dumps({"error": f"Invalid depth {depth}", "method": method, "success": False, **extra, **stamp}))
            return
        if method == "subscribe":
            self.subscriptions += 1
        for symbol in symbols:
            m = self._markets.get(symbol)
            result = {"channel": "book", "depth": depth, "snapshot": snapshot, "symbol": symbol}
            if m is None:
                error = f"Currency pair not supported {symbol}"
            elif method == "subscribe" and symbol in conn.subs:
                error = "Already subscribed"
            elif method == "unsubscribe" and symbol not in conn.subs:
                error = "Subscription Not Found"
            else:
                error = ""
            if error:
                refusal = {"error": error, "method": method, "success": False, "symbol": symbol}
                conn.send(_dumps({**refusal, **extra, **stamp}))
                continue
            assert m is not None
            conn.send(_dumps({"method": method, "result": result, "success": True, **extra, **stamp}))
            if method == "subscribe":
                conn.subs[symbol] = depth
                conn.sent.pop(symbol, None)
                conn.dirty.discard(symbol)
                if snapshot:
                    bids, asks = self._levels(m)
                    frame = self._book_frame(conn, m, bids, asks, snapshot=True)
                    if frame is not None:
                        conn.send(frame)
                else:
                    conn.sent[symbol] = ({}, {})
            else:
                conn.subs.pop(symbol, None)
                conn.sent.pop(symbol, None)

    # --- REST --------------------------------------------------------------------------------
    async def _time(self, request: web.Request) -> web.Response:
        now = self._clock.now_ns()
        return _reply({"unixtime": now // NS, "rfc1123": _rfc3339(now)})

    async def _private(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        self.requests[method] += 1
        fault = self._take_fault(method, ("fail", "hang", "refuse"))
        if fault is not None and fault.kind == "refuse":
            return _error(list(fault.errors), status=fault.status)
        if fault is not None and fault.kind == "hang":
            self.requests_hung += 1
            await self._stopping.wait()
            return web.Response(status=503, text="shutting down")
        if fault is not None:
            if fault.status == 429:
                return _error(["EAPI:Rate limit exceeded"], status=429)
            if fault.status >= 500:
                return web.Response(status=fault.status, text=f"{fault.status} Server Error (loopback fault)")
            return _error(["EGeneral:Internal error"], status=fault.status)
        body = await request.read()
        late: int | None = None
        try:
            form = self._authenticate(request, method, body)
            handler = self._methods().get(method)
            if handler is None:
                raise KrakenError("EGeneral:Unknown method", status=404)
            late = self._late.take() if method == "AddOrder" else None
            if late is None:
                result = handler(form)
        except KrakenError as exc:
            return _error(exc.errors, status=exc.status)
        if late is not None:
            self._late.schedule(late, form.get("cl_ord_id") or None, lambda: self._late_add_order(form))
            await self._stopping.wait()  # the reply is lost; the order arrives later (or never)
            return web.Response(status=503, text="shutting down")
        if method == "AddOrder":
            lost = self._take_fault(method, ("lose",))
            if lost is not None:
                self.replies_withheld += 1
                await self._stopping.wait()  # executed; the reply is lost
                return web.Response(status=503, text="shutting down")
        return _reply(result)

    def _take_fault(self, method: str, kinds: tuple[str, ...]) -> _Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _authenticate(self, request: web.Request, method: str, body: bytes) -> dict[str, str]:
        key = request.headers.get("API-Key", "")
        sign = request.headers.get("API-Sign", "")
        if not hmac.compare_digest(key.encode(), self.credentials["api_key"].encode()):
            raise KrakenError("EAPI:Invalid key")
        try:
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise KrakenError("EGeneral:Invalid arguments") from None
        nonce_text = form.get("nonce", "")
        if not nonce_text.isdigit():
            raise KrakenError("EAPI:Invalid nonce")
        expected = _sign(f"/0/private/{method}", body, nonce_text, self.credentials["api_secret"])
        if not hmac.compare_digest(sign.encode(), expected.encode()):
            raise KrakenError("EAPI:Invalid signature")
        nonce = int(nonce_text)
        if nonce <= self._last_nonce.get(key, 0):
            raise KrakenError("EAPI:Invalid nonce")
        self._last_nonce[key] = nonce
        return form

    def _methods(self) -> dict[str, Callable[[dict[str, str]], Any]]:
        return {
            "AddOrder": self._add_order,
            "CancelOrder": self._cancel_order,
            "QueryOrders": self._query_orders,
            "OpenOrders": self._open_orders,
            "ClosedOrders": self._closed_orders,
            "QueryTrades": self._query_trades,
            "Balance": self._balance,
            "BalanceEx": self._balance_ex,
            "TradeVolume": self._trade_volume,
        }

    # --- trading -----------------------------------------------------------------------------
    def _late_add_order(self, form: dict[str, str]) -> Placement:
        """AddOrder for a request that arrives only now (the late-arrival fault)."""
        try:
            result = self._add_order(form)
        except KrakenError as exc:
            return None, "; ".join(exc.errors)
        txids = result.get("txid") or [None]
        return txids[0], None

    def _add_order(self, form: dict[str, str]) -> dict[str, Any]:
        now = self._clock.now_ns()
        for name in ("ordertype", "type", "volume", "pair"):
            if not form.get(name):
                raise KrakenError(f"EGeneral:Invalid arguments:{name}")
        m = self._by_altname.get(form["pair"])
        if m is None:
            raise KrakenError("EQuery:Unknown asset pair")
        if form["ordertype"] != "limit":
            raise KrakenError("EGeneral:Invalid arguments:ordertype")  # only limit orders here
        side = form["type"]
        if side not in ("buy", "sell"):
            raise KrakenError("EGeneral:Invalid arguments:type")
        tif = form.get("timeinforce", "GTC").upper()
        if tif not in ("GTC", "IOC"):
            raise KrakenError("EGeneral:Invalid arguments:timeinforce")  # no FOK on Kraken spot; no GTD here
        price = _decimal_arg(form.get("price", ""), "price")
        vol = _decimal_arg(form["volume"], "volume")
        if _places(price) > m.pp:
            raise KrakenError("EGeneral:Invalid arguments:price")
        if _places(vol) > m.qp:
            raise KrakenError("EGeneral:Invalid arguments:volume")
        if price <= 0 or price % m.spec.tick != 0:
            raise KrakenError("EOrder:Tick size check failed")
        if vol < m.spec.lot:
            raise KrakenError("EOrder:Order minimum not met")
        cl_ord_id = form.get("cl_ord_id") or None
        if cl_ord_id is not None:
            if not _valid_cl_ord_id(cl_ord_id):
                raise KrakenError("EGeneral:Invalid arguments:cl_ord_id")
            if any(o.cl_ord_id == cl_ord_id and o.status in ("open", "pending") for o in self.orders.values()):
                raise KrakenError("EOrder:Duplicate cl_ord_id")  # unique among open orders only
        deadline = form.get("deadline")
        if deadline:
            try:
                at = datetime.fromisoformat(deadline)
            except ValueError:
                raise KrakenError("EGeneral:Invalid arguments:deadline") from None
            at_ns = int(at.timestamp()) * NS + at.microsecond * 1000
            if at_ns < now:
                raise KrakenError("EService:Deadline elapsed")
            if at_ns > now + 60 * NS:
                raise KrakenError("EGeneral:Invalid arguments:deadline")
        free = self._free()
        if side == "buy":
            need, asset = vol * price * (1 + self.taker_fee), m.quote
        else:
            need, asset = vol, m.base
        if free.get(asset, ZERO) < need:
            raise KrakenError("EOrder:Insufficient funds")
        descr = f"{side} {_fixed(vol, m.qp)} {m.altname} @ limit {_fixed(price, m.pp)}"
        if form.get("validate", "").lower() in ("true", "1"):
            return {"descr": {"order": descr}}
        oflags = form.get("oflags", "")
        order = _Order(self._txid("O"), cl_ord_id, m, side, price, vol, tif, oflags, now)
        self.orders[order.txid] = order
        self._take(m, order, now)
        if order.remaining == 0:
            self._close(order, "closed", None, now)
        elif tif == "IOC":
            self._close(order, "canceled", "Immediate or cancel remainder", now)
        else:
            order.status = "open"
        self._publish(m)
        return {"descr": {"order": descr}, "txid": [order.txid]}

    def _take(self, m: _Market, order: _Order, now: int) -> None:
        """The order takes the market makers' liquidity at or better than its limit (as a taker)."""
        levels = m.gen.asks if order.side == "buy" else m.gen.bids
        prices = sorted(levels, reverse=order.side == "sell")
        for price in prices:
            if order.remaining <= 0:
                break
            if (order.side == "buy" and price > order.price) or (order.side == "sell" and price < order.price):
                break
            qty = min(levels[price], order.remaining)
            levels[price] -= qty
            if levels[price] == 0:
                del levels[price]
            self._fill(order, price, qty, maker=False, now=now)

    def _match_resting(self, m: _Market) -> None:
        """Resting orders the moving market now crosses are filled at their price (as makers)."""
        now = self._clock.now_ns()
        for order in list(self.orders.values()):
            if order.market is not m or order.status != "open":
                continue
            levels = m.gen.asks if order.side == "buy" else m.gen.bids
            crossing = sorted(
                (p for p in levels if (p <= order.price if order.side == "buy" else p >= order.price)),
                reverse=order.side == "sell",
            )
            for price in crossing:
                if order.remaining <= 0:
                    break
                qty = min(levels[price], order.remaining)
                levels[price] -= qty
                if levels[price] == 0:
                    del levels[price]
                self._fill(order, order.price, qty, maker=True, now=now)
            if order.remaining == 0:
                self._close(order, "closed", None, now)

    def _fill(self, order: _Order, price: Decimal, qty: Decimal, *, maker: bool, now: int) -> None:
        m = order.market
        fee = price * qty * (self.maker_fee if maker else self.taker_fee)
        trade = _Trade(self._txid("T"), order.txid, m.key, now, order.side, price, qty, fee, maker)
        self._trades[trade.txid] = trade
        order.trades.append(trade.txid)
        order.vol_exec += qty
        order.cost += price * qty
        order.fee += fee
        sign = 1 if order.side == "buy" else -1
        self._balances[m.base] = self._balances.get(m.base, ZERO) + sign * qty
        self._balances[m.quote] = self._balances.get(m.quote, ZERO) - sign * price * qty - fee

    def _close(self, order: _Order, status: str, reason: str | None, now: int) -> None:
        order.status = status
        order.reason = reason
        order.closetm_ns = now

    def _cancel_order(self, form: dict[str, str]) -> dict[str, Any]:
        txid, cl_ord_id = form.get("txid"), form.get("cl_ord_id")
        if bool(txid) == bool(cl_ord_id):
            raise KrakenError("EGeneral:Invalid arguments")
        matches = [
            o
            for o in self.orders.values()
            if o.status in ("open", "pending") and (o.txid == txid if txid else o.cl_ord_id == cl_ord_id)
        ]
        if not matches:
            raise KrakenError("EOrder:Unknown order")
        now = self._clock.now_ns()
        for order in matches:
            self._close(order, "canceled", "User requested", now)
            self._publish(order.market)
        return {"count": len(matches)}

    def _query_orders(self, form: dict[str, str]) -> dict[str, Any]:
        txids = [t for t in form.get("txid", "").split(",") if t]
        if not txids:
            raise KrakenError("EGeneral:Invalid arguments:txid")
        trades = form.get("trades", "").lower() in ("true", "1")
        out = {t: self._info(self.orders[t], trades) for t in txids if t in self.orders}
        if not out:
            raise KrakenError("EOrder:Invalid order")
        return out

    def _open_orders(self, form: dict[str, str]) -> dict[str, Any]:
        return {"open": self._listed(form, ("open", "pending"))}

    def _closed_orders(self, form: dict[str, str]) -> dict[str, Any]:
        closed = self._listed(form, ("closed", "canceled", "expired"))
        return {"closed": closed, "count": len(closed)}

    def _listed(self, form: dict[str, str], states: tuple[str, ...]) -> dict[str, Any]:
        cl_ord_id = form.get("cl_ord_id")
        trades = form.get("trades", "").lower() in ("true", "1")
        return {
            o.txid: self._info(o, trades)
            for o in self.orders.values()
            if o.status in states and (not cl_ord_id or o.cl_ord_id == cl_ord_id)
        }

    def _query_trades(self, form: dict[str, str]) -> dict[str, Any]:
        txids = [t for t in form.get("txid", "").split(",") if t]
        if not txids:
            raise KrakenError("EGeneral:Invalid arguments:txid")
        out: dict[str, Any] = {}
        for t in txids:
            trade = self._trades.get(t)
            if trade is None:
                continue
            m = self.orders[trade.ordertxid].market
            out[t] = {
                "ordertxid": trade.ordertxid,
                "postxid": "",
                "pair": trade.pair,
                "time": Decimal(trade.time_ns) / NS,
                "type": trade.side,
                "ordertype": "limit",
                "price": _fixed(trade.price, m.pp),
                "cost": format(trade.price * trade.vol, "f"),
                "fee": format(trade.fee, "f"),
                "vol": _fixed(trade.vol, m.qp),
                "margin": "0.00000",
                "misc": "",
                "maker": trade.maker,
            }
        return out

    def _info(self, o: _Order, trades: bool) -> dict[str, Any]:
        m = o.market
        avg = o.cost / o.vol_exec if o.vol_exec else ZERO
        info: dict[str, Any] = {
            "refid": None,
            "userref": 0,
            "cl_ord_id": o.cl_ord_id,
            "status": o.status,
            "opentm": Decimal(o.opentm_ns) / NS,
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": m.altname,
                "type": o.side,
                "ordertype": "limit",
                "price": _fixed(o.price, m.pp),
                "price2": "0",
                "leverage": "none",
                "order": f"{o.side} {_fixed(o.vol, m.qp)} {m.altname} @ limit {_fixed(o.price, m.pp)}",
                "close": "",
            },
            "vol": _fixed(o.vol, m.qp),
            "vol_exec": _fixed(o.vol_exec, m.qp),
            "cost": format(o.cost, "f"),
            "fee": format(o.fee, "f"),
            "price": format(avg, "f"),
            "stopprice": "0.00000",
            "limitprice": "0.00000",
            "misc": "",
            "oflags": o.oflags,
            "reason": o.reason,
        }
        if o.closetm_ns is not None:
            info["closetm"] = Decimal(o.closetm_ns) / NS
        if trades and o.trades:
            info["trades"] = list(o.trades)
        return info

    # --- balances and fees ---------------------------------------------------------------------
    def _free(self) -> dict[str, Decimal]:
        free = dict(self._balances)
        for o in self.orders.values():
            if o.status == "open":
                if o.side == "buy":
                    free[o.market.quote] = free.get(o.market.quote, ZERO) - o.remaining * o.price
                else:
                    free[o.market.base] = free.get(o.market.base, ZERO) - o.remaining
        return free

    def _balance(self, form: dict[str, str]) -> dict[str, Any]:
        return {_BALANCE_CODES.get(a, a): format(v, "f") for a, v in sorted(self._balances.items())}

    def _balance_ex(self, form: dict[str, str]) -> dict[str, Any]:
        free = self._free()
        return {
            _BALANCE_CODES.get(a, a): {"balance": format(v, "f"), "hold_trade": format(v - free.get(a, v), "f")}
            for a, v in sorted(self._balances.items())
        }

    def _trade_volume(self, form: dict[str, str]) -> dict[str, Any]:
        """Kraken's TradeVolume: ``fees`` / ``fees_maker`` keyed by each pair's *internal* name
        (``XXBTZUSD``) whatever name the request used (``XBTUSD``), as in Kraken's reply example
        (docs.kraken.com/api/docs/rest-api/get-trade-volume; ccxt's parseTradingFee reads it so)."""
        names = [p for p in form.get("pair", "").split(",") if p]
        if any(p not in self._by_altname for p in names):
            raise KrakenError("EQuery:Unknown asset pair")
        keys = list(dict.fromkeys(self._by_altname[p].key for p in names))

        def tier(rate: Decimal) -> dict[str, str | None]:
            pct = f"{rate * 100:.4f}"
            return {
                "fee": pct,
                "minfee": "0.0000",
                "maxfee": pct,
                "nextfee": pct,
                "nextvolume": None,  # null at the top tier; every loopback account is there
                "tiervolume": "0.0000",
            }

        return {
            "currency": "ZUSD",
            "volume": "0.0000",
            "fees": {k: tier(self.taker_fee) for k in keys} or None,
            "fees_maker": {k: tier(self.maker_fee) for k in keys} or None,
        }

    async def _asset_pairs(self, request: web.Request) -> web.Response:
        """Public AssetPairs in Kraken's shape: the listing keyed by internal name, each entry with
        its altname, v1 ``wsname`` (``XBT/USD``), legacy asset codes, decimals, minimums and tick
        (docs.kraken.com/api/docs/rest-api/get-tradable-asset-pairs). ``pair`` (altnames or internal
        names, comma-separated) narrows it; an unknown one is ``EQuery:Unknown asset pair``."""
        names = [p for p in request.query.get("pair", "").split(",") if p]
        if any(p not in self._by_altname for p in names):
            return _error(["EQuery:Unknown asset pair"])
        chosen = [self._by_altname[p] for p in names] if names else list(self._markets.values())
        return _reply({m.key: self._asset_pair(m) for m in chosen})

    def _asset_pair(self, m: _Market) -> dict[str, Any]:
        v1 = _REST_NAMES  # wsname is the v1 name, which says XBT and XDG like the altname
        return {
            "altname": m.altname,
            "wsname": f"{v1.get(m.base, m.base)}/{v1.get(m.quote, m.quote)}",
            "aclass_base": "currency",
            "base": _BALANCE_CODES.get(m.base, m.base),
            "aclass_quote": "currency",
            "quote": _BALANCE_CODES.get(m.quote, m.quote),
            "lot": "unit",
            "cost_decimals": m.pp + 4,
            "pair_decimals": m.pp,
            "lot_decimals": m.qp,
            "lot_multiplier": 1,
            "leverage_buy": [],
            "leverage_sell": [],
            "fees": [[0, self.taker_fee * 100]],
            "fees_maker": [[0, self.maker_fee * 100]],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": _num(m.spec.lot),
            "costmin": "0.5",
            "tick_size": _num(m.spec.tick),
            "status": "online",
        }

    def _txid(self, prefix: str) -> str:
        n = next(self._ids)
        chars = "".join(self._rng.choices(string.ascii_uppercase + string.digits, k=15))
        return f"{prefix}{chars[:5]}-{chars[5:10]}-{n:06d}"

    async def run_forever(self) -> None:
        """Wait until :meth:`stop` (for the launcher)."""
        await self._stopping.wait()


def _changes(old: dict[Decimal, Decimal], top: list[Level], present: set[Decimal]) -> list[Level]:
    """What turns a client's ``old`` levels into ``top``: changed levels, and deletes for levels that
    left the book (a level that only fell below the depth is not deleted: the client truncates)."""
    top_map = dict(top)
    out = [(p, q) for p, q in top if old.get(p) != q]
    out.extend((p, ZERO) for p in old if p not in top_map and p not in present)
    return out


def _reply(result: Any) -> web.Response:
    return web.Response(body=_dumps({"error": [], "result": result}), content_type="application/json")


def _error(errors: list[str], status: int = 200) -> web.Response:
    return web.Response(body=_dumps({"error": errors, "result": {}}), status=status, content_type="application/json")


def _decimal_arg(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise KrakenError(f"EGeneral:Invalid arguments:{name}") from None
    if not value.is_finite():
        raise KrakenError(f"EGeneral:Invalid arguments:{name}")
    return value


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _valid_cl_ord_id(value: str) -> bool:
    """A long UUID, a 32-hex short UUID, or free text of at most 18 printable ASCII characters."""
    hexdigits = set(string.hexdigits)
    plain = value.replace("-", "")
    if len(value) == 36 and value.count("-") == 4 and len(plain) == 32 and set(plain) <= hexdigits:
        return True
    if len(value) == 32 and set(value) <= hexdigits:
        return True
    return 0 < len(value) <= 18 and set(value) <= _CL_ORD_FREE_TEXT
