"""A 127.0.0.1 Coinbase Advanced Trade server: the ``level2``/``heartbeats`` WebSocket and the REST
endpoints arbtui uses, with real JWT verification, a matching engine, balances, and faults on demand.

WebSocket (``ws_url``, the root path like the real ``wss://advanced-trade-ws.coinbase.com``)
    Subscribe messages as in Coinbase's WebSocket overview (docs.cdp.coinbase.com) and
    coinbase-advanced-py: ``{"type": "subscribe", "product_ids": [...], "channel": "level2", "jwt": ...}``
    and ``{"type": "subscribe", "channel": "heartbeats"}``; ``unsubscribe`` likewise. A JWT is optional;
    when present it is verified like a REST one, without ``uri``. A client that has not subscribed
    within 5 s is disconnected. Every message of a connection carries that connection's
    ``sequence_num`` (0, 1, 2, ...): the ``subscriptions`` ack, one ``l2_data`` ``snapshot`` per product
    subscribed, then one ``update`` frame per market every ``interval_ms`` (``"offer"`` = ask side,
    absolute ``new_quantity``), and a ``heartbeats`` message every second.
    Problems are answered ``{"type": "error", "message": ...}``.

REST (``rest_url``; every request needs ``Authorization: Bearer <JWT>``)
    The JWT is checked as Coinbase does (coinbase-advanced-py, coinbase/jwt_generator.py): a known
    ``kid``, ``alg`` matching that key (ES256 for the EC P-256 key, EdDSA for the Ed25519 key), a valid
    signature, ``iss == "cdp"``, ``sub == kid``, ``nbf``/``exp`` (at most 2 minutes apart), a ``nonce``
    header, and ``uri == "<METHOD> <host><path>"`` with this server's ``127.0.0.1:PORT`` as host. A
    failure is ``401 Unauthorized``. Endpoints under ``/api/v3/brokerage``: ``POST /orders``
    (``sor_limit_ioc``, ``limit_limit_gtc``, ``limit_limit_fok``), ``POST /orders/batch_cancel``,
    ``GET /orders/historical/{id}``, ``GET /orders/historical/batch``, ``GET /orders/historical/fills``,
    ``GET /accounts`` (paginated) and ``GET /transaction_summary``.

Orders match against the published book (seeded market makers from
:class:`~arbtui.sim.loopback.book_generator.BookGenerator`, plus resting client orders) through
:class:`~arbtui.sim.matching.MatchingBook`: a taker order fills at levels at or better than its
limit, an IOC remainder is cancelled, a FOK fills entirely or not at all, a GTC remainder rests and
fills (as maker) when the market makers' quotes trade through it. What trades is gone from the book
and the next ``l2_data`` frame says so. Balances are checked (a buy needs ``size * limit * (1 +
taker fee)`` of the quote, a sell its size of the base) and moved by every fill.

Faults on demand: ``drop_connections``, ``skip_frames``, ``corrupt_frames``, ``send_garbage``,
``fail_requests``, ``hang_requests``, ``lose_replies`` and ``arrive_late``
(:mod:`arbtui.sim.loopback.late`): the create reply is lost and the order does not exist (List Orders
does not list it, Get Order answers 404, as for any unknown order) until ``delay_s`` later on the
server's clock, when it is created as if the request had just arrived and trades or rests like any
order. Advanced Trade has no field that makes the venue refuse an IOC that arrives late.

Loopback assumptions where the real venue's behaviour is unverified: an IOC/FOK remainder ends
``CANCELLED``; a repeated ``client_order_id`` answers the existing order instead of creating one;
error frame and 401 bodies are plausible shapes, not copies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import jwt
import orjson
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from arbtui.domain.clock import Clock, LiveClock
from arbtui.domain.orders import Side, TimeInForce
from arbtui.sim.loopback.book_generator import BookGenerator, LoopbackMarket
from arbtui.sim.loopback.late import LateArrival, LateArrivals, Placement
from arbtui.sim.matching import MatchingBook, Trade

log = logging.getLogger(__name__)

API = "/api/v3/brokerage"
ZERO = Decimal(0)
ONE = Decimal(1)
SUBSCRIBE_DEADLINE_S = 5.0
HEARTBEAT_S = 1.0
JWT_MAX_LIFETIME_S = 120
JWT_LEEWAY_S = 5
MM = "mm"
CLIENT = "client"
CONFIG_TIF = {"sor_limit_ioc": TimeInForce.IOC, "limit_limit_gtc": TimeInForce.GTC, "limit_limit_fok": TimeInForce.FOK}
WIRE_TIF = {
    TimeInForce.IOC: "IMMEDIATE_OR_CANCEL",
    TimeInForce.GTC: "GOOD_UNTIL_CANCELLED",
    TimeInForce.FOK: "FILL_OR_KILL",
}
GARBAGE = (
    b"this is not JSON {",
    b"[1, 2, 3]",
    b'{"channel": "l2_data"}',
    b'{"channel": "l2_data", "sequence_num": "x"}',
)


def _iso(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _s(value: Decimal) -> str:
    return f"{value:f}"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _bad(message: str, status: int = 400, error: str = "INVALID_ARGUMENT") -> web.Response:
    return _json({"error": error, "error_details": message, "message": message}, status)


@dataclass
class _Market:
    symbol: str
    base: str
    quote: str
    spec: LoopbackMarket
    gen: BookGenerator
    matching: MatchingBook = field(default_factory=MatchingBook)
    mm: dict[tuple[Side, Decimal], int] = field(default_factory=dict)


@dataclass
class _Order:
    order_id: str
    client_order_id: str
    product_id: str
    side: Side
    tif: TimeInForce
    config_name: str
    config: dict[str, Any]
    size: Decimal
    limit: Decimal
    created_ns: int
    status: str = "PENDING"
    filled: Decimal = ZERO
    filled_value: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0
    last_fill_ns: int | None = None
    matching_id: int | None = None
    hold: Decimal = ZERO  # quote (buys) or base (sells) held for the resting remainder
    cancel_message: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.size - self.filled


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.BaseRequest
    seq: int = 0
    products: set[str] = field(default_factory=set)
    heartbeats: bool = False
    subscribed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LoopbackCoinbase:
    """See the module docstring. The uniform loopback API: ``start``/``stop``, ``ws_url``/``rest_url``,
    ``credentials``, ``venue_table``, the fault knobs, ``book`` and ``subscriptions``."""

    kind = "coinbase"

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
        self._markets: dict[str, _Market] = {}
        for symbol, spec in markets.items():
            base, _, quote = symbol.partition("-")
            if not base or not quote:
                raise ValueError(f"a Coinbase product id is BASE-QUOTE, got {symbol!r}")
            m = _Market(symbol, base, quote, spec, spec.generator(random.Random(f"{seed}:{symbol}")))
            bids, asks = m.gen.snapshot()
            for side, levels in ((Side.BUY, bids), (Side.SELL, asks)):
                for price, qty in levels:
                    m.mm[(side, price)] = m.matching.submit(MM, side, price, qty, TimeInForce.GTC).order_id
            m.matching.dirty.clear()
            self._markets[symbol] = m
        self.interval_s = interval_ms / 1000
        self.subscribe_deadline_s = SUBSCRIBE_DEADLINE_S  # Coinbase disconnects a silent client after 5 s
        if balances is None:
            assets = {a for m in self._markets.values() for a in (m.base, m.quote)}
            balances = {a: Decimal(1_000_000) if a in {"USD", "USDC", "EUR"} else Decimal(1_000) for a in assets}
        self._balances: dict[str, Decimal] = dict(balances)
        self.maker_fee_rate = Decimal("0.0005")  # what transaction_summary reports and fills are charged
        self.taker_fee_rate = Decimal("0.0010")
        self._orders: dict[str, _Order] = {}
        self._by_client: dict[str, str] = {}
        self._fills: list[dict[str, Any]] = []
        self._trade_ids = itertools.count(1)
        # Test keys, generated here, never stored: one EC P-256 (ES256) and one Ed25519 (EdDSA).
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ed_key = ed25519.Ed25519PrivateKey.generate()
        ec_name = f"organizations/loopback/apiKeys/{uuid.UUID(int=random.Random(f'{seed}:ec').getrandbits(128))}"
        ed_name = f"organizations/loopback/apiKeys/{uuid.UUID(int=random.Random(f'{seed}:ed').getrandbits(128))}"
        ec_pem = ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode()
        ed_raw = ed_key.private_bytes_raw() + ed_key.public_key().public_bytes_raw()
        self.credentials: dict[str, str] = {"key_name": ec_name, "private_key": ec_pem}
        self.ed25519_credentials: dict[str, str] = {
            "key_name": ed_name,
            "private_key": base64.b64encode(ed_raw).decode(),
        }
        self._keys: dict[str, tuple[Any, str]] = {
            ec_name: (ec_key.public_key(), "ES256"),
            ed_name: (ed_key.public_key(), "EdDSA"),
        }
        self._conns: set[_Conn] = set()
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._heartbeat_counter = 0
        self.ws_url = ""
        self.rest_url = ""
        self.port = 0
        # faults (each affects the next n frames/requests, all connections)
        self._skip = 0
        self._corrupt = 0
        self._garbage = 0
        self._fail: list[int] = []
        self._hang = 0
        self._lose = 0
        self._late = LateArrivals(self._clock, "coinbase-loopback")
        # what happened, for tests
        self.subscriptions = 0
        self.ws_jwts_verified = 0
        self.connections = 0
        self.frames_sent = 0
        self.requests = 0
        self.requests_hung = 0  # requests held unanswered and unexecuted (hang_requests)
        self.replies_lost = 0  # requests executed whose reply is withheld (lose_replies)
        self.auth_failures = 0
        self.last_auth_error: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/", self._ws_handler)
        app.router.add_post(f"{API}/orders", self._create_order)
        app.router.add_post(f"{API}/orders/batch_cancel", self._batch_cancel)
        app.router.add_get(f"{API}/orders/historical/batch", self._list_orders)
        app.router.add_get(f"{API}/orders/historical/fills", self._list_fills)
        app.router.add_get(f"{API}/orders/historical/{{order_id}}", self._get_order)
        app.router.add_get(f"{API}/accounts", self._accounts)
        app.router.add_get(f"{API}/transaction_summary", self._transaction_summary)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
            await web.SockSite(self._runner, sock).start()
        except OSError:
            sock.close()
            await self._runner.cleanup()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.ws_url = f"ws://{host}:{self.port}"
        self.rest_url = f"http://{host}:{self.port}"
        self._stopping.clear()
        self._ticker = asyncio.create_task(self._run(), name=f"loopback-coinbase:{self.port}")
        self._ticker.add_done_callback(self._ticker_done)

    async def stop(self) -> None:
        self._stopping.set()  # releases hung and lost requests
        await self._late.close()  # late orders still in flight never arrive
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _ticker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("loopback coinbase ticker stopped", exc_info=task.exception())

    # --- the uniform API -------------------------------------------------------------------------
    def venue_table(self, taker_fee: str = "0.0010") -> dict[str, object]:
        """A ``[venues.<name>]`` table for this server (TOML-ready: strings, numbers, tables)."""
        return {
            "kind": "coinbase",
            "fee_model": "notional",
            "maker_fee": _s(self.maker_fee_rate),
            "taker_fee": taker_fee,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "stale_after_s": "5",
            "paper": {"balances": {asset: _s(v) for asset, v in sorted(self._balances.items())}},
        }

    def drop_connections(self) -> None:
        for conn in list(self._conns):
            transport = conn.request.transport
            if transport is not None:
                transport.abort()

    def skip_frames(self, n: int = 1) -> None:
        self._skip += n

    def corrupt_frames(self, n: int = 1) -> None:
        self._corrupt += n

    def send_garbage(self, n: int = 1) -> None:
        self._garbage += n

    def fail_requests(self, status: int, n: int = 1) -> None:
        self._fail.extend([status] * n)

    def hang_requests(self, n: int = 1) -> None:
        self._hang += n

    def lose_replies(self, n: int = 1) -> None:
        self._lose += n

    def arrive_late(self, delay_s: float, n: int = 1) -> None:
        """The next ``n`` order creates arrive ``delay_s`` late (server clock): their replies never come,
        the order is unknown until then, and then it is created and trades as if just sent."""
        self._late.arm(n, delay_s)

    @property
    def late_arrivals(self) -> list[LateArrival]:
        """Every create the late-arrival fault held back, and what became of it."""
        return self._late.records

    def book(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return self._markets[symbol].matching.snapshot()

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(total, held) of an asset."""
        held = sum((o.hold for o in self._orders.values() if self._asset_held(o) == asset), ZERO)
        return self._balances.get(asset, ZERO), held

    # --- market data -----------------------------------------------------------------------------
    async def _run(self) -> None:
        """Book frames every ``interval_s``, heartbeats every second, whatever the interval."""
        next_tick = time.monotonic() + self.interval_s
        next_heartbeat = time.monotonic() + HEARTBEAT_S
        while True:
            await asyncio.sleep(max(0.0, min(next_tick, next_heartbeat) - time.monotonic()))
            now = time.monotonic()
            if now >= next_tick:
                next_tick = max(next_tick + self.interval_s, now)
                if self._garbage > 0:
                    self._garbage -= 1
                    await self._broadcast_raw(GARBAGE[self._garbage % len(GARBAGE)])
                for m in self._markets.values():
                    self._step(m)
                    await self._publish(m)
            if now >= next_heartbeat:
                next_heartbeat = max(next_heartbeat + HEARTBEAT_S, now)
                await self._heartbeat()

    def _step(self, m: _Market) -> None:
        bids, asks = m.gen.step()
        changes = [(Side.BUY, p, q) for p, q in bids] + [(Side.SELL, p, q) for p, q in asks]
        # Withdrawn levels first, so a new quote never meets an old one on the other side.
        for side, price, qty in sorted(changes, key=lambda c: c[2] != 0):
            oid = m.mm.pop((side, price), None)
            if oid is not None:
                m.matching.cancel(oid)
            if qty > 0:
                result = m.matching.submit(MM, side, price, qty, TimeInForce.GTC)
                self._settle_makers(m, result.trades)
                if result.rested is not None:
                    m.mm[(side, price)] = result.order_id

    async def _publish(self, m: _Market) -> None:
        bids, asks = m.matching.take_dirty()
        if not bids and not asks:
            return
        now = time.time_ns()
        event = {
            "type": "update",
            "product_id": m.symbol,
            "updates": _updates(bids, asks, _iso(now)),
        }
        mode = "send"
        if self._skip > 0:
            self._skip -= 1
            mode = "skip"
        elif self._corrupt > 0:
            self._corrupt -= 1
            mode = "corrupt"
        msg = {"channel": "l2_data", "client_id": "", "timestamp": _iso(now), "sequence_num": 0, "events": [event]}
        for conn in list(self._conns):
            if m.symbol in conn.products:
                await self._send(conn, msg, mode)

    async def _heartbeat(self) -> None:
        self._heartbeat_counter += 1
        now = time.time_ns()
        msg = {
            "channel": "heartbeats",
            "client_id": "",
            "timestamp": _iso(now),
            "sequence_num": 0,
            "events": [{"current_time": _iso(now), "heartbeat_counter": str(self._heartbeat_counter)}],
        }
        for conn in list(self._conns):
            if conn.heartbeats:
                await self._send(conn, msg)

    async def _send(self, conn: _Conn, msg: dict[str, Any], mode: str = "send") -> None:
        async with conn.lock:
            if mode == "skip":
                conn.seq += 1  # generated, numbered, never sent: a gap
                return
            if mode == "corrupt":
                msg["sequence_num"] = conn.seq - 1  # a repeated number: out of order
            else:
                msg["sequence_num"] = conn.seq
                conn.seq += 1
            try:
                await conn.ws.send_str(orjson.dumps(msg).decode())
                self.frames_sent += 1
            except (ConnectionError, RuntimeError):
                self._conns.discard(conn)

    async def _broadcast_raw(self, raw: bytes) -> None:
        for conn in list(self._conns):
            if conn.subscribed:
                async with conn.lock:
                    try:
                        await conn.ws.send_str(raw.decode())
                    except (ConnectionError, RuntimeError):
                        self._conns.discard(conn)

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(ws, request)
        self._conns.add(conn)
        self.connections += 1
        deadline = time.monotonic() + self.subscribe_deadline_s
        try:
            while not ws.closed:
                timeout = None if conn.subscribed else max(0.0, deadline - time.monotonic())
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    await ws.close(code=1008, message=b"no subscribe within 5 s")
                    break
                if msg.type == WSMsgType.TEXT:
                    await self._on_client_message(conn, msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            self._conns.discard(conn)
        return ws

    async def _error_frame(self, conn: _Conn, message: str) -> None:
        async with conn.lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(orjson.dumps({"type": "error", "message": message}).decode())

    async def _on_client_message(self, conn: _Conn, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self._error_frame(conn, "malformed message: not JSON")
            return
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            await self._error_frame(conn, "expected a subscribe or unsubscribe message")
            return
        token = msg.get("jwt")
        if token is not None:
            problem = self._verify_jwt(token, None) if isinstance(token, str) else "jwt is not a string"
            if problem is not None:
                self.auth_failures += 1
                self.last_auth_error = problem
                await self._error_frame(conn, "authentication failure")
                return
            self.ws_jwts_verified += 1
        channel = msg.get("channel")
        products = msg.get("product_ids", [])
        subscribe = msg["type"] == "subscribe"
        if channel == "level2":
            if not isinstance(products, list) or not products or any(p not in self._markets for p in products):
                await self._error_frame(conn, f"level2 needs known product_ids, got {products!r}")
                return
            if subscribe:
                conn.products.update(products)
            else:
                conn.products.difference_update(products)
        elif channel == "heartbeats":
            conn.heartbeats = subscribe
        else:
            await self._error_frame(conn, f"unsupported channel {channel!r}")
            return
        if subscribe:
            self.subscriptions += 1
            conn.subscribed = True
        now = time.time_ns()
        subs: dict[str, list[str]] = {}
        if conn.products:
            subs["level2"] = sorted(conn.products)
        if conn.heartbeats:
            subs["heartbeats"] = ["heartbeats"]
        ack = {
            "channel": "subscriptions",
            "client_id": "",
            "timestamp": _iso(now),
            "sequence_num": 0,
            "events": [{"subscriptions": subs}],
        }
        await self._send(conn, ack)
        if subscribe and channel == "level2":
            for product in products:
                bids, asks = self._markets[product].matching.snapshot()
                event = {"type": "snapshot", "product_id": product, "updates": _updates(bids, asks, _iso(now))}
                snap = {"channel": "l2_data", "client_id": "", "timestamp": _iso(now), "sequence_num": 0}
                snap["events"] = [event]
                await self._send(conn, snap)

    # --- auth ------------------------------------------------------------------------------------
    def _verify_jwt(self, token: str, uri: str | None) -> str | None:
        """None if ``token`` is a valid Coinbase JWT (for ``uri`` when given), else what is wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return "malformed token"
        kid = header.get("kid")
        entry = self._keys.get(kid) if isinstance(kid, str) else None
        if entry is None:
            return "unknown key (kid)"
        public, alg = entry
        if header.get("alg") != alg:
            return f"alg {header.get('alg')!r} does not match the key ({alg})"
        if not header.get("nonce"):
            return "no nonce in the header"
        try:
            claims = jwt.decode(
                token,
                public,
                algorithms=[alg],
                issuer="cdp",
                leeway=JWT_LEEWAY_S,
                options={"require": ["sub", "iss", "nbf", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return f"invalid token: {exc}"
        if claims.get("sub") != kid:
            return "sub does not match kid"
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if not isinstance(nbf, int) or not isinstance(exp, int) or exp - nbf > JWT_MAX_LIFETIME_S:
            return "token lifetime over 2 minutes"
        if uri is not None and claims.get("uri") != uri:
            return f"uri {claims.get('uri')!r} does not match the request ({uri!r})"
        return None

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(API):
            return await handler(request)
        self.requests += 1
        if self._hang > 0:
            self._hang -= 1
            self.requests_hung += 1
            await self._stopping.wait()  # never answered, never executed
            raise web.HTTPServiceUnavailable()
        if self._fail:
            status = self._fail.pop(0)
            if status == 429:
                return _json({"error": "RATE_LIMIT_EXCEEDED", "message": "Too many requests"}, 429)
            return _json({"error": "INTERNAL", "message": f"loopback fault {status}"}, status)
        auth = request.headers.get("Authorization", "")
        problem = "no bearer token" if not auth.startswith("Bearer ") else None
        if problem is None:
            problem = self._verify_jwt(auth[len("Bearer ") :], f"{request.method} {request.host}{request.path}")
        if problem is not None:
            self.auth_failures += 1
            self.last_auth_error = problem
            return web.Response(status=401, text="Unauthorized")
        response = await handler(request)
        if self._lose > 0:
            self._lose -= 1
            self.replies_lost += 1
            await self._stopping.wait()  # executed, but the reply is lost
            raise web.HTTPServiceUnavailable()
        return response

    # --- orders ------------------------------------------------------------------------------------
    async def _create_order(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _bad("body is not JSON")
        if not isinstance(body, dict):
            return _bad("body must be a JSON object")
        delay = self._late.take()
        if delay is not None:
            cid = body.get("client_order_id")
            self._late.schedule(delay, cid if isinstance(cid, str) else None, lambda: self._late_create(body))
            await self._stopping.wait()  # the reply is lost; the order arrives later (or never)
            raise web.HTTPServiceUnavailable()
        return self._create(body)

    def _late_create(self, body: dict[str, Any]) -> Placement:
        """The create of a request that arrives only now (the late-arrival fault)."""
        answer = orjson.loads(self._create(body).body)  # type: ignore[arg-type]  # _json bodies are bytes
        if answer.get("success") is True:
            return str(answer["order_id"]), None
        error = answer.get("error_response") or answer
        return None, str(error.get("error") or error.get("message") or "refused")

    def _create(self, body: dict[str, Any]) -> web.Response:
        cid, product, side_s, cfg = (
            body.get(k) for k in ("client_order_id", "product_id", "side", "order_configuration")
        )
        if not isinstance(cid, str) or not cid:
            return _bad("client_order_id is required")
        if cid in self._by_client:  # loopback assumption: a repeated id answers the existing order
            return _json(self._success(self._orders[self._by_client[cid]]))
        if not isinstance(cfg, dict) or len(cfg) != 1:
            return _bad("order_configuration must hold exactly one configuration")
        ((cfg_name, cfg_body),) = cfg.items()
        if product not in self._markets:
            return _json(self._failure("INVALID_PRODUCT_ID", "PREVIEW_INVALID_PRODUCT_ID", "unknown product", cfg))
        if side_s not in ("BUY", "SELL"):
            return _json(self._failure("INVALID_SIDE", "PREVIEW_INVALID_SIDE", "side must be BUY or SELL", cfg))
        tif = CONFIG_TIF.get(cfg_name)
        if tif is None or not isinstance(cfg_body, dict):
            return _json(
                self._failure("UNSUPPORTED_ORDER_CONFIGURATION", "PREVIEW_INVALID_ORDER_CONFIG", cfg_name, cfg)
            )
        m = self._markets[product]
        try:
            size = _decimal(cfg_body.get("base_size"))
            limit = _decimal(cfg_body.get("limit_price"))
        except ValueError as exc:
            return _bad(str(exc))
        if limit <= 0 or limit % m.spec.tick != 0:
            return _json(self._failure("INVALID_PRICE_PRECISION", "PREVIEW_INVALID_PRICE_PRECISION", str(limit), cfg))
        if size < m.spec.lot:
            return _json(self._failure("INVALID_SIZE_PRECISION", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL", str(size), cfg))
        if size % m.spec.lot != 0:
            return _json(self._failure("INVALID_SIZE_PRECISION", "PREVIEW_INVALID_SIZE_PRECISION", str(size), cfg))
        side = Side.BUY if side_s == "BUY" else Side.SELL
        asset = m.quote if side is Side.BUY else m.base
        need = size * limit * (ONE + self.taker_fee_rate) if side is Side.BUY else size
        total, held = self.balance(asset)
        if total - held < need:
            return _json(
                self._failure(
                    "INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND", "Insufficient balance in source account", cfg
                )
            )
        order = _Order(
            order_id=str(uuid.uuid4()),
            client_order_id=cid,
            product_id=product,
            side=side,
            tif=tif,
            config_name=cfg_name,
            config=dict(cfg_body),
            size=size,
            limit=limit,
            created_ns=self._clock.now_ns(),
        )
        self._orders[order.order_id] = order
        self._by_client[cid] = order.order_id
        result = m.matching.submit(CLIENT, side, limit, size, tif, tag=order.order_id)
        for trade in result.trades:
            self._fill(order, trade.price, trade.quantity, taker=True)
        self._settle_makers(m, result.trades)
        if result.rested is not None:
            order.matching_id = result.order_id
            order.status = "OPEN"
            self._update_hold(order)
        elif order.remaining == 0:
            order.status = "FILLED"
        else:
            order.status = "CANCELLED"  # loopback assumption for an IOC/FOK remainder
        return _json(self._success(order))

    def _success(self, order: _Order) -> dict[str, Any]:
        return {
            "success": True,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": order.order_id,
            "success_response": {
                "order_id": order.order_id,
                "product_id": order.product_id,
                "side": "BUY" if order.side is Side.BUY else "SELL",
                "client_order_id": order.client_order_id,
            },
            "order_configuration": {order.config_name: order.config},
        }

    @staticmethod
    def _failure(reason: str, preview: str, message: str, cfg: Any) -> dict[str, Any]:
        return {
            "success": False,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": "",
            "error_response": {
                "error": reason,
                "message": message,
                "error_details": message,
                "preview_failure_reason": preview,
                "new_order_failure_reason": reason,
            },
            "order_configuration": cfg,
        }

    def _asset_held(self, order: _Order) -> str:
        m = self._markets[order.product_id]
        return m.quote if order.side is Side.BUY else m.base

    def _update_hold(self, order: _Order) -> None:
        resting = order.status == "OPEN" and order.remaining > 0
        order.hold = (order.remaining * order.limit if order.side is Side.BUY else order.remaining) if resting else ZERO

    def _fill(self, order: _Order, price: Decimal, qty: Decimal, *, taker: bool) -> None:
        m = self._markets[order.product_id]
        fee = price * qty * (self.taker_fee_rate if taker else self.maker_fee_rate)
        now = self._clock.now_ns()
        order.filled += qty
        order.filled_value += price * qty
        order.fees += fee
        order.fills += 1
        order.last_fill_ns = now
        sign = 1 if order.side is Side.BUY else -1
        self._balances[m.base] = self._balances.get(m.base, ZERO) + sign * qty
        self._balances[m.quote] = self._balances.get(m.quote, ZERO) - sign * price * qty - fee
        trade_id = f"T-{next(self._trade_ids):08d}"
        self._fills.append(
            {
                "entry_id": trade_id,
                "trade_id": trade_id,
                "order_id": order.order_id,
                "trade_time": _iso(now),
                "trade_type": "FILL",
                "price": _s(price),
                "size": _s(qty),
                "commission": _s(fee),
                "product_id": order.product_id,
                "sequence_timestamp": _iso(now),
                "liquidity_indicator": "TAKER" if taker else "MAKER",
                "size_in_quote": False,
                "user_id": "loopback-user",
                "side": "BUY" if order.side is Side.BUY else "SELL",
            }
        )

    def _settle_makers(self, m: _Market, trades: list[Trade]) -> None:
        """Fills of resting client orders that an incoming order traded with."""
        for trade in trades:
            if trade.maker.owner != CLIENT:
                continue
            order = self._orders.get(trade.maker.tag)
            if order is None:
                continue
            self._fill(order, trade.price, trade.quantity, taker=False)
            if trade.maker.remaining == 0:
                order.status = "FILLED"
                order.matching_id = None
            self._update_hold(order)

    def _order_json(self, o: _Order) -> dict[str, Any]:
        avg = o.filled_value / o.filled if o.filled else ZERO
        total_after = o.filled_value + o.fees if o.side is Side.BUY else o.filled_value - o.fees
        return {
            "order_id": o.order_id,
            "product_id": o.product_id,
            "user_id": "loopback-user",
            "order_configuration": {o.config_name: o.config},
            "side": "BUY" if o.side is Side.BUY else "SELL",
            "client_order_id": o.client_order_id,
            "status": o.status,
            "time_in_force": WIRE_TIF[o.tif],
            "created_time": _iso(o.created_ns),
            "completion_percentage": _s((o.filled / o.size * 100).quantize(Decimal("0.01"))),
            "filled_size": _s(o.filled),
            "average_filled_price": _s(avg),
            "fee": "",
            "number_of_fills": str(o.fills),
            "filled_value": _s(o.filled_value),
            "pending_cancel": False,
            "size_in_quote": False,
            "total_fees": _s(o.fees),
            "size_inclusive_of_fees": False,
            "total_value_after_fees": _s(total_after),
            "trigger_status": "INVALID_ORDER_TYPE",
            "order_type": "LIMIT",
            "reject_reason": "REJECT_REASON_UNSPECIFIED",
            "settled": o.status in ("FILLED", "CANCELLED"),
            "product_type": "SPOT",
            "reject_message": "",
            "cancel_message": o.cancel_message,
            "order_placement_source": "RETAIL_ADVANCED",
            "outstanding_hold_amount": _s(o.hold),
            "is_liquidation": False,
            "last_fill_time": _iso(o.last_fill_ns) if o.last_fill_ns else None,
        }

    async def _get_order(self, request: web.Request) -> web.StreamResponse:
        order = self._orders.get(request.match_info["order_id"])
        if order is None:
            return _bad("order with this orderID was not found", 404, "NOT_FOUND")
        return _json({"order": self._order_json(order)})

    async def _batch_cancel(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _bad("body is not JSON")
        ids = body.get("order_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return _bad("order_ids must be a list of strings")
        results = []
        for oid in ids:
            order = self._orders.get(oid)
            if order is None:
                results.append({"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": oid})
            elif order.status != "OPEN":
                reason = "ORDER_IS_FULLY_FILLED" if order.status == "FILLED" else "INVALID_CANCEL_REQUEST"
                results.append({"success": False, "failure_reason": reason, "order_id": oid})
            else:
                if order.matching_id is not None:
                    self._markets[order.product_id].matching.cancel(order.matching_id)
                order.matching_id = None
                order.status = "CANCELLED"
                order.cancel_message = "User requested cancel"
                self._update_hold(order)
                # The enum default rides along on a success, as on the real venue (Coinbase's Cancel Orders
                # example response, docs.cdp.coinbase.com).
                results.append({"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": oid})
        return _json({"results": results})

    async def _list_orders(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        ids, products, statuses = (
            set(q.getall("order_ids", [])),
            set(q.getall("product_ids", [])),
            set(q.getall("order_status", [])),
        )
        start = q.get("start_date")
        start_ns = _parse_iso(start) if start else None
        orders = [
            o
            for o in sorted(self._orders.values(), key=lambda o: o.created_ns, reverse=True)
            if (not ids or o.order_id in ids)
            and (not products or o.product_id in products)
            and (not statuses or o.status in statuses)
            and (start_ns is None or o.created_ns >= start_ns)
        ]
        page, cursor, more = _page(orders, q.get("limit"), q.get("cursor"), 100, 1000)
        return _json(
            {"orders": [self._order_json(o) for o in page], "sequence": "0", "has_next": more, "cursor": cursor}
        )

    async def _list_fills(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        ids, products = set(q.getall("order_ids", [])), set(q.getall("product_ids", []))
        fills = [
            f
            for f in reversed(self._fills)
            if (not ids or f["order_id"] in ids) and (not products or f["product_id"] in products)
        ]
        page, cursor, _more = _page(fills, q.get("limit"), q.get("cursor"), 100, 1000)
        return _json({"fills": page, "cursor": cursor})

    async def _accounts(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        rows = []
        for asset in sorted(self._balances):
            total, held = self.balance(asset)
            rows.append(
                {
                    "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"loopback-coinbase:{asset}")),
                    "name": f"{asset} Wallet",
                    "currency": asset,
                    "available_balance": {"value": _s(total - held), "currency": asset},
                    "default": True,
                    "active": True,
                    "created_at": "2024-01-01T00:00:00Z",
                    "updated_at": "2024-01-01T00:00:00Z",
                    "deleted_at": None,
                    "type": "ACCOUNT_TYPE_FIAT" if asset in ("USD", "EUR") else "ACCOUNT_TYPE_CRYPTO",
                    "ready": True,
                    "hold": {"value": _s(held), "currency": asset},
                    "retail_portfolio_id": "loopback-portfolio",
                }
            )
        page, cursor, more = _page(rows, q.get("limit"), q.get("cursor"), 49, 250)
        return _json({"accounts": page, "has_next": more, "cursor": cursor, "size": len(page)})

    async def _transaction_summary(self, request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "total_volume": 0,
                "total_fees": 0,
                "fee_tier": {
                    "pricing_tier": "Loopback",
                    "usd_from": "0",
                    "usd_to": "1000",
                    "taker_fee_rate": _s(self.taker_fee_rate),
                    "maker_fee_rate": _s(self.maker_fee_rate),
                    "aop_from": "",
                    "aop_to": "",
                },
                "margin_rate": None,
                "goods_and_services_tax": None,
                "advanced_trade_only_volume": 0,
                "advanced_trade_only_fees": 0,
                "coinbase_pro_volume": 0,
                "coinbase_pro_fees": 0,
            }
        )


def _updates(
    bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], event_time: str
) -> list[dict[str, str]]:
    out = [{"side": "bid", "event_time": event_time, "price_level": _s(p), "new_quantity": _s(q)} for p, q in bids]
    out += [{"side": "offer", "event_time": event_time, "price_level": _s(p), "new_quantity": _s(q)} for p, q in asks]
    return out


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"expected a decimal string, got {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return d


def _parse_iso(text: str) -> int | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(dt.timestamp()) * 1_000_000_000


def _page(
    rows: list[Any], limit: str | None, cursor: str | None, default: int, cap: int
) -> tuple[list[Any], str, bool]:
    try:
        size = min(cap, max(1, int(limit))) if limit else default
        start = int(cursor) if cursor else 0
    except ValueError:
        size, start = default, 0
    page = rows[start : start + size]
    more = start + size < len(rows)
    return page, str(start + size) if more else "", more
