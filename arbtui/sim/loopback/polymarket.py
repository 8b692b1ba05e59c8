"""A loopback Polymarket CLOB: the market WebSocket channel and the REST API, on 127.0.0.1.

Market channel (``ws://127.0.0.1:PORT/ws/market``), shapes as in Polymarket's market-channel docs
(docs.polymarket.com/market-data/websocket/market-channel):

- a subscribe (``{"assets_ids": [...], "type": "market"}``, or later ``{"operation": "subscribe",
  "assets_ids": [...]}``) is answered with one frame holding an array of ``book`` events, one per known
  asset (bids ascending, asks descending: clients must sort); ``subscriptions`` counts them;
- each book change is one ``price_change`` event (``market`` = a condition id made from the symbol)
  whose ``price_changes[]`` entries carry the level's new size ("0" removes it) and the asset's
  ``best_bid`` / ``best_ask`` after that entry (an empty side shows "0" for bids, "1" for asks);
- :meth:`LoopbackPolymarket.change_tick` sends ``tick_size_change``; the text ``PING`` is answered
  ``PONG`` (``pings`` counts them).

REST (``http://127.0.0.1:PORT``): ``GET /version``, ``/fee-rate``, ``/tick-size``, ``/neg-risk``
(public); ``POST /order``, ``DELETE /order``, ``GET /data/order/<id>``, ``GET /data/trades``,
``GET /balance-allowance`` (L2). Every private request's L2 HMAC is checked with the test key, secret
and passphrase (401 ``{"error": "Unauthorized/Invalid api key"}`` otherwise). ``order_version`` (1 or
2, what ``GET /version`` answers; it may be changed while running, as a migration would) is the only
order version accepted: an order of the other shape is refused with HTTP 400
``{"error": "order_version_mismatch"}``. An order's EIP-712 signer is recovered from its signature and
must be ``POLY_ADDRESS``: V1 through py_order_utils' struct hash, V2 through :func:`order_hash_v2`,
which builds the typed data from the wire fields with py-clob-client-v2's own typed-data model and
contract table (not its order builder, the client's signing path) and hashes it with eth_account. A V1
order's ``feeRateBps`` must be the market's ``base_fee`` (V2 orders carry no fee); a V2 order's
``metadata`` and ``builder`` must be bytes32, its ``timestamp`` and (unsigned) ``expiration`` integers,
and ``deferExec`` false (the deferred execution is not modelled); a V2 reply adds ``tradeIDs``. The
price (from the amounts) must be on the current tick. Orders match against the server's book (a price-time
:class:`~arbtui.sim.matching.MatchingBook` holding the generated market-maker quotes and resting client
orders): FAK fills what it can (none at all is refused, as the venue does), FOK all or nothing, GTC
rests and fills when the quotes move through it. Fills consume the book and show in the next frames;
collateral and token balances are kept and checked (resting orders reserve them); takers pay
``shares * base_fee/10000 * p * (1 - p)`` in USDC.

Insert errors (not enough balance, off-tick price, size, a duplicate hash, an FOK/FAK that cannot
match) answer HTTP 400 ``{"error": ...}`` by default, as reported for "not enough balance / allowance"
(Polymarket/py-clob-client#287, #290); with ``insert_errors_in_body`` they answer as the docs describe
("Insert Error Messages", https://docs.polymarket.com/developers/CLOB/orders/create-order): HTTP 200,
the order reply's keys (``success``, ``errorMsg``, ``orderID`` "", ``transactionsHashes`` [], ``status``
"", ``takingAmount`` "", ``makingAmount`` "") with the documented text in ``errorMsg``.

Faults on demand, each for the next ``n`` frames or requests: :meth:`refuse_orders` (an insert error
with a given ``errorMsg``/``success`` in that 200 shape, nothing placed), :meth:`delay_orders` (the
matching delay: ``status: "delayed"`` at once, the order placed ``delay_s`` later), :meth:`drop_connections`,
:meth:`skip_frames`, :meth:`corrupt_frames` (a wrong ``best_bid``), :meth:`send_garbage`,
:meth:`fail_requests`, :meth:`hang_requests`, :meth:`lose_replies` (the order is executed, the reply
never comes), :meth:`arrive_late` (:mod:`arbtui.sim.loopback.late`: the reply never comes and the order
does not exist until ``delay_s`` later on the server's clock, when it is placed as if just sent and
trades or rests like any order).

``GET /data/order/<id>`` for an order the venue does not have answers HTTP 200 with a JSON ``null``
body: py-clob-client's ``get`` raises on any status but 200 and returns the parsed body, and its
``get_order`` is reported to "not return anything" for such an order (Polymarket/py-clob-client#217,
where the order was a matched FAK: a real venue may not list matched orders there at all; set
``hide_matched_orders`` to answer so). ``GET /data/trades`` filters by ``id``, ``asset_id``,
``market``, ``after`` and ``before`` (``match_time``, unix seconds), py-clob-client's ``TradeParams``,
in one page (``next_cursor`` "LTE=", the end).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import logging
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from arbtui.domain.clock import NS_PER_S, Clock, LiveClock
from arbtui.domain.money import ZERO
from arbtui.domain.orders import Side, TimeInForce
from arbtui.sim.loopback.book_generator import BookGenerator, LoopbackMarket
from arbtui.sim.loopback.late import LateArrival, LateArrivals, Placement
from arbtui.sim.matching import MatchingBook, MatchResult, Trade
from arbtui.venues.polymarket import (
    ORDER_VERSION_MISMATCH,
    UNITS,
    address_of,
    l2_signature,
    order_hash_v1,
    price_valid,
    recover_order_signer,
)

log = logging.getLogger(__name__)

# Hardhat's account #0: a publicly known test key (py-clob-client, tests/signing/test_eip712.py), never a real
# account.
TEST_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
WS_PATH = "/ws/market"
MM = "mm"
CLIENT = "client"
UNAUTHORIZED = {"error": "Unauthorized/Invalid api key"}
FOK_KILLED = "order couldn't be fully filled. FOK orders are fully filled or killed."
# The documented insert error texts (the CLOB's order placement docs, "Insert Error Messages":
# https://docs.polymarket.com/developers/CLOB/orders/create-order), answered in the 200 body.
NOT_ENOUGH_BALANCE = "not enough balance / allowance"
BODY_FOK_KILLED = "order couldn't be fully filled, FOK orders are fully filled/killed"
BODY_TICK = "order is invalid. Price breaks minimum tick size rules"
BODY_MIN_SIZE = "order is invalid. Size lower than the minimum"
BODY_DUPLICATED = "order is invalid. Duplicated. Same order has already been placed, can't be placed again"
FAK_KILLED = "no orders found to match with FAK order. FAK orders are partially filled or killed if no match is found."
_L2 = ("POLY_ADDRESS", "POLY_SIGNATURE", "POLY_TIMESTAMP", "POLY_API_KEY", "POLY_PASSPHRASE")
_TIF = {"FAK": TimeInForce.IOC, "FOK": TimeInForce.FOK, "GTC": TimeInForce.GTC, "GTD": TimeInForce.GTC}
_V1_ONLY = frozenset({"taker", "nonce", "feeRateBps"})
_V2_ONLY = frozenset({"timestamp", "metadata", "builder"})
_GARBAGE = ("this is not json", '{"event_type": "book", "asset_id": 5}', "[1, 2, 3]", '{"hello": "world"}')


def _wire(value: Decimal, *, bare: bool = False) -> str:
    """A decimal as the venue writes it ("0.5", "200"); ``bare`` drops a leading zero (".48")."""
    text = format(value.normalize(), "f") if value else "0"
    return text[1:] if bare and text.startswith("0.") else text


def order_hash_v2(order: Mapping[str, Any], chain_id: int, neg_risk: bool) -> str:
    """The EIP-712 digest of a V2 order given as its wire dict: the typed data is rebuilt field by field
    from py-clob-client-v2's typed-data model (domain, ``Order`` struct, the V2 contracts of its
    ``get_contract_config``) and hashed by eth_account. ValueError/KeyError/TypeError on a bad field."""
    from eth_account.messages import encode_typed_data
    from eth_utils.crypto import keccak
    from py_clob_client_v2.config import get_contract_config
    from py_clob_client_v2.order_utils.model.ctf_exchange_v2_typed_data import (
        CTF_EXCHANGE_V2_DOMAIN_NAME,
        CTF_EXCHANGE_V2_DOMAIN_VERSION,
        CTF_EXCHANGE_V2_ORDER_STRUCT,
        EIP712_DOMAIN,
    )

    try:
        contracts = get_contract_config(chain_id)
    except Exception:  # noqa: BLE001 - the package raises a bare Exception for an unknown chain
        raise ValueError(f"no V2 exchange for chain {chain_id}") from None
    message: dict[str, Any] = {}
    for member in CTF_EXCHANGE_V2_ORDER_STRUCT:
        name, kind, raw = member["name"], member["type"], order[member["name"]]
        if name == "side":
            message[name] = {"BUY": 0, "SELL": 1}[raw]
        elif kind == "address":
            message[name] = str(raw)
        elif kind == "bytes32":
            text = str(raw)
            if not (text.startswith("0x") and len(text) == 66):
                raise ValueError(f"{name} is not bytes32: {text!r}")
            message[name] = bytes.fromhex(text[2:])
        else:  # uint256 / uint8, sent as JSON numbers or decimal strings
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise TypeError(f"{name} is not an integer: {raw!r}")
            message[name] = int(raw)
    typed_data = {
        "primaryType": "Order",
        "types": {"EIP712Domain": EIP712_DOMAIN, "Order": CTF_EXCHANGE_V2_ORDER_STRUCT},
        "domain": {
            "name": CTF_EXCHANGE_V2_DOMAIN_NAME,
            "version": CTF_EXCHANGE_V2_DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": contracts.neg_risk_exchange_v2 if neg_risk else contracts.exchange_v2,
        },
        "message": message,
    }
    signable = encode_typed_data(full_message=typed_data)
    return "0x" + keccak(b"\x19" + signable.version + signable.header + signable.body).hex()


def _wire_version(order: Mapping[str, Any]) -> int | None:
    """Which order version a wire order's fields are (None: neither)."""
    keys = set(order)
    if _V2_ONLY <= keys and not keys & _V1_ONLY:
        return 2
    if _V1_ONLY <= keys and not keys & _V2_ONLY:
        return 1
    return None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


@dataclass(eq=False)
class _Conn:
    """One market-channel client: its subscriptions, and its outbox (one writer keeps frames in order)."""

    ws: web.WebSocketResponse
    request: web.Request
    assets: set[str] = field(default_factory=set)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


@dataclass
class _Market:
    symbol: str
    spec: LoopbackMarket
    condition: str
    generator: BookGenerator
    tick: Decimal
    matching: MatchingBook = field(default_factory=MatchingBook)
    mm_orders: dict[tuple[Side, Decimal], int] = field(default_factory=dict)
    bids: dict[Decimal, Decimal] = field(default_factory=dict)  # as last published
    asks: dict[Decimal, Decimal] = field(default_factory=dict)


@dataclass
class _ClientOrder:
    order_id: str
    symbol: str
    side: Side
    price: Decimal
    size: Decimal
    order_type: str
    created_at: int
    expiration: int = 0
    status: str = "LIVE"
    matched: Decimal = ZERO
    matching_id: int | None = None
    trades: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.size - self.matched


class LoopbackPolymarket:
    """The loopback Polymarket server (see the module docstring; the uniform loopback API)."""

    kind = "polymarket"

    def __init__(
        self,
        markets: Mapping[str, LoopbackMarket],
        *,
        seed: int = 0,
        interval_ms: int = 50,
        balances: Mapping[str, Decimal] | None = None,
        chain_id: int = 137,
        neg_risk: bool = False,
        fee_rate_bps: int = 0,
        order_version: int = 1,
        clock: Clock | None = None,
    ) -> None:
        self.interval_ms = interval_ms
        self.chain_id = chain_id
        self.neg_risk = neg_risk
        self.fee_rate_bps = fee_rate_bps
        self.order_version = order_version
        self._clock = clock or LiveClock()
        self.address = address_of(TEST_PRIVATE_KEY)
        digest = hashlib.sha256(f"arbtui-loopback-polymarket:{seed}".encode()).digest()
        self.api_key = str(uuid.UUID(bytes=digest[:16], version=4))
        self.api_secret = base64.urlsafe_b64encode(digest).decode()
        self.api_passphrase = hashlib.sha256(digest).hexdigest()[:32]
        self.credentials: dict[str, str] = {
            "private_key": TEST_PRIVATE_KEY,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "api_passphrase": self.api_passphrase,
        }
        self._markets: dict[str, _Market] = {}
        for symbol, spec in markets.items():
            gen = spec.generator(random.Random(f"{seed}:{symbol}"))
            condition = "0x" + hashlib.sha256(f"condition:{symbol}".encode()).hexdigest()
            st = _Market(symbol, spec, condition, gen, spec.tick)
            bids, asks = gen.snapshot()
            self._quote(st, bids, asks)
            st.bids, st.asks = self._levels(st)
            self._markets[symbol] = st
        start = balances if balances is not None else {"USDC": Decimal(1_000_000)}
        self.collateral = Decimal(start.get("USDC", ZERO))
        self.tokens: dict[str, Decimal] = {s: Decimal(start.get(s, Decimal(10_000))) for s in self._markets}
        self._orders: dict[str, _ClientOrder] = {}
        self._by_matching_id: dict[tuple[str, int], str] = {}
        self._trades: dict[str, dict[str, Any]] = {}
        self._trade_ids = itertools.count(1)
        self._conns: set[_Conn] = set()
        self.subscriptions = 0
        self.pings = 0
        self.orders_received = 0  # POST /order requests that passed authentication
        self.frames_skipped = 0  # faults carried out so far
        self.requests_hung = 0
        self.replies_lost = 0
        self._skip = self._corrupt = self._garbage = self._hang = self._lose = 0
        self._fail: list[int] = []
        self._late = LateArrivals(self._clock, "polymarket-loopback")
        self._delayed = LateArrivals(self._clock, "polymarket-loopback-matching-delay")
        self._refusals: list[tuple[str, bool]] = []  # (errorMsg, success) of armed refuse_orders faults
        # Insert errors (balance, tick, size, duplicate, FOK/FAK kill) as HTTP 200 with errorMsg and an
        # empty orderID, the documented shape; False: HTTP 400 {"error": ...}, as reported in
        # Polymarket/py-clob-client#287 and #290 for "not enough balance / allowance".
        self.insert_errors_in_body = False
        self.hide_matched_orders = False  # GET /data/order answers a MATCHED order as unknown (#217)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._publisher: asyncio.Task[None] | None = None
        self.ws_url = ""
        self.rest_url = ""

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get(WS_PATH, self._ws)
        app.router.add_get("/version", self._version)
        app.router.add_get("/fee-rate", self._fee_rate)
        app.router.add_get("/tick-size", self._tick_size)
        app.router.add_get("/neg-risk", self._neg_risk)
        app.router.add_post("/order", self._post_order)
        app.router.add_delete("/order", self._delete_order)
        app.router.add_get("/data/order/{order_id}", self._get_order)
        app.router.add_get("/data/trades", self._get_trades)
        app.router.add_get("/balance-allowance", self._balance_allowance)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.ws_url = f"ws://{host}:{bound}{WS_PATH}"
        self.rest_url = f"http://{host}:{bound}"
        self._stopping.clear()
        self._publisher = asyncio.create_task(self._publish_loop(), name=f"loopback-polymarket:{bound}")
        self._publisher.add_done_callback(_log_failure)

    async def stop(self) -> None:
        self._stopping.set()  # hung and lost requests answer now
        await self._late.close()  # late orders still in flight never arrive
        await self._delayed.close()
        task, self._publisher = self._publisher, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for conn in list(self._conns):
            await conn.ws.close(code=1001, message=b"server shutdown")
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def venue_table(self, taker_fee: str = "0.0010") -> dict[str, object]:
        """A ``[venues.<name>]`` table for this server. The server's ``base_fee`` is set to ``taker_fee``
        (in basis points) so that the configured and the venue's fee agree."""
        bps = Decimal(taker_fee) * 10_000
        if bps != bps.to_integral_value():
            raise ValueError(f"taker_fee {taker_fee} is not a whole number of basis points")
        self.fee_rate_bps = int(bps)
        return {
            "kind": "polymarket",
            "fee_model": "probability",
            "maker_fee": "0",
            "taker_fee": taker_fee,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "chain_id": self.chain_id,
            "signature_type": 0,
            "neg_risk": self.neg_risk,
            "rate_per_s": "50",  # this server has no rate limit; keep the client's budget out of the way
            "paper": {"balances": {"USDC": format(self.collateral, "f")}},
        }

    # --- faults ------------------------------------------------------------------------------
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
        """The next ``n`` ``POST /order`` requests arrive ``delay_s`` late (server clock): their replies
        never come, the order is unknown until then, and then it is placed as if just sent."""
        self._late.arm(n, delay_s)

    @property
    def late_arrivals(self) -> list[LateArrival]:
        """Every order the late-arrival fault held back, and what became of it."""
        return self._late.records

    def refuse_orders(self, error_msg: str, *, success: bool = True, n: int = 1) -> None:
        """The next ``n`` ``POST /order`` requests are refused with ``error_msg`` in the documented insert
        error shape (HTTP 200, ``success`` as given, an empty ``orderID``); nothing is placed."""
        self._refusals.extend([(error_msg, success)] * n)

    def delay_orders(self, delay_s: float, n: int = 1) -> None:
        """The next ``n`` ``POST /order`` requests are held in a matching delay: answered at once with
        ``status: "delayed"`` (success, the order hash, no amounts), unknown to ``GET /data/order`` until
        ``delay_s`` later (server clock), then placed as if just sent."""
        self._delayed.arm(n, delay_s)

    @property
    def delayed_orders(self) -> list[LateArrival]:
        """Every order the matching-delay fault held, and what became of it."""
        return self._delayed.records

    # --- inspection --------------------------------------------------------------------------
    def book(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The server's current book (bids, asks), best first."""
        return self._markets[symbol].matching.snapshot()

    def change_tick(self, symbol: str, tick: Decimal) -> None:
        """Change the market's tick (orders must follow) and announce it with ``tick_size_change``.
        The quotes stay on their own grid."""
        st = self._markets[symbol]
        event = {
            "event_type": "tick_size_change",
            "asset_id": symbol,
            "market": st.condition,
            "old_tick_size": _wire(st.tick),
            "new_tick_size": _wire(tick),
            "timestamp": self._ms(),
        }
        st.tick = tick
        self._broadcast(symbol, orjson.dumps(event).decode())

    def order_ids(self) -> set[str]:
        """The ids (order hashes) of every order the server accepted."""
        return set(self._orders)

    def free_collateral(self) -> Decimal:
        held = sum((o.remaining * o.price for o in self._live() if o.side is Side.BUY), ZERO)
        return self.collateral - held

    def free_tokens(self, symbol: str) -> Decimal:
        held = sum((o.remaining for o in self._live() if o.side is Side.SELL and o.symbol == symbol), ZERO)
        return self.tokens[symbol] - held

    # --- market data -------------------------------------------------------------------------
    def _ms(self) -> str:
        return str(self._clock.now_ns() // 1_000_000)

    def _levels(self, st: _Market) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        bids, asks = st.matching.snapshot()
        return dict(bids), dict(asks)

    def _quote(self, st: _Market, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]) -> None:
        """The market makers requote the given levels (absolute sizes, 0 = withdraw): withdrawals first,
        then new quotes, which may trade with resting client orders they cross."""
        changes = [(Side.BUY, p, q) for p, q in bids] + [(Side.SELL, p, q) for p, q in asks]
        for side, price, _qty in changes:
            oid = st.mm_orders.pop((side, price), None)
            if oid is not None:
                st.matching.cancel(oid)
        for side, price, qty in changes:
            if qty > 0:
                result = st.matching.submit(MM, side, price, qty, TimeInForce.GTC)
                self._settle(st, result, None)
                if result.rested is not None:
                    st.mm_orders[(side, price)] = result.order_id

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_ms / 1000)
            if self._garbage:
                for conn in list(self._conns):
                    for i in range(self._garbage):
                        conn.outbox.put_nowait(_GARBAGE[i % len(_GARBAGE)])
                self._garbage = 0
            for st in self._markets.values():
                bids, asks = st.generator.step()
                self._quote(st, bids, asks)
                self._publish(st)

    def _publish(self, st: _Market) -> None:
        """Send what changed in ``st``'s book since the last publication, as one ``price_change``."""
        new_bids, new_asks = self._levels(st)
        changes: list[tuple[str, Decimal, Decimal]] = []
        for side, old, new in (("BUY", st.bids, new_bids), ("SELL", st.asks, new_asks)):
            changes += [(side, p, q) for p, q in new.items() if old.get(p) != q]
            changes += [(side, p, ZERO) for p in old if p not in new]
        if not changes:
            return
        entries = []
        for side, price, qty in changes:
            levels = st.bids if side == "BUY" else st.asks
            if qty:
                levels[price] = qty
            else:
                levels.pop(price, None)
            entries.append(
                {
                    "asset_id": st.symbol,
                    "price": _wire(price),
                    "size": _wire(qty),
                    "side": side,
                    "hash": hashlib.sha1(f"{st.symbol}:{side}:{price}:{qty}".encode()).hexdigest(),
                    "best_bid": _wire(max(st.bids)) if st.bids else "0",
                    "best_ask": _wire(min(st.asks)) if st.asks else "1",
                }
            )
        if self._skip:
            self._skip -= 1
            self.frames_skipped += 1
            return
        if self._corrupt:
            self._corrupt -= 1
            last = entries[-1]
            bid = Decimal(last["best_bid"])
            last["best_bid"] = _wire(bid + st.tick if bid + st.tick < 1 else bid - st.tick)
        event = {
            "market": st.condition,
            "price_changes": entries,
            "timestamp": self._ms(),
            "event_type": "price_change",
        }
        self._broadcast(st.symbol, orjson.dumps(event).decode())

    def _broadcast(self, symbol: str, text: str) -> None:
        for conn in self._conns:
            if symbol in conn.assets:
                conn.outbox.put_nowait(text)

    async def _writer(self, conn: _Conn) -> None:
        try:
            while not conn.ws.closed:
                await conn.ws.send_str(await conn.outbox.get())
        except (ConnectionError, RuntimeError) as exc:
            log.debug("loopback polymarket: a subscriber went away: %r", exc)

    def _book_event(self, st: _Market) -> dict[str, Any]:
        bids = sorted(st.bids.items())  # ascending, as in the doc's example
        asks = sorted(st.asks.items(), reverse=True)
        content = f"{st.symbol}:{bids}:{asks}"
        return {
            "event_type": "book",
            "asset_id": st.symbol,
            "market": st.condition,
            "bids": [{"price": _wire(p, bare=True), "size": _wire(q)} for p, q in bids],
            "asks": [{"price": _wire(p, bare=True), "size": _wire(q)} for p, q in asks],
            "timestamp": self._ms(),
            "hash": "0x" + hashlib.sha1(content.encode()).hexdigest(),
        }

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = _Conn(ws, request)
        self._conns.add(conn)
        writer = asyncio.create_task(self._writer(conn), name=f"loopback-polymarket-ws-writer:{id(conn)}")
        writer.add_done_callback(_log_failure)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_message(conn, msg.data)
        finally:
            self._conns.discard(conn)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    def _on_message(self, conn: _Conn, text: str) -> None:
        if text == "PING":
            self.pings += 1
            conn.outbox.put_nowait("PONG")
            return
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        assets = data.get("assets_ids") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(assets, list):
            conn.outbox.put_nowait("INVALID OPERATION")
            return
        known = [a for a in assets if isinstance(a, str) and a in self._markets]
        if data.get("operation") == "unsubscribe":
            conn.assets.difference_update(known)
            return
        self.subscriptions += 1
        conn.assets.update(known)
        if known:
            conn.outbox.put_nowait(orjson.dumps([self._book_event(self._markets[a]) for a in known]).decode())

    # --- REST: plumbing ----------------------------------------------------------------------
    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == WS_PATH:
            response: web.StreamResponse = await handler(request)
            return response
        if self._fail:
            status = self._fail.pop(0)
            return _error(status, "Too Many Requests" if status == 429 else "Internal Server Error")
        if self._hang:
            self._hang -= 1
            self.requests_hung += 1
            await self._stopping.wait()
            return _error(503, "shutting down")
        response = await handler(request)
        return response

    def _check_l2(self, request: web.Request, body: str | None) -> web.Response | None:
        """None when the L2 headers are right, else the venue's 401."""
        h = request.headers
        if any(name not in h for name in _L2):
            return _json(UNAUTHORIZED, 401)
        if not (
            hmac.compare_digest(h["POLY_API_KEY"], self.api_key)
            and hmac.compare_digest(h["POLY_PASSPHRASE"], self.api_passphrase)
            and h["POLY_ADDRESS"].lower() == self.address.lower()
        ):
            return _json(UNAUTHORIZED, 401)
        try:
            expected = l2_signature(self.api_secret, h["POLY_TIMESTAMP"], request.method, request.path, body or None)
        except ValueError:
            return _json(UNAUTHORIZED, 401)
        if not hmac.compare_digest(expected, h["POLY_SIGNATURE"]):
            return _json(UNAUTHORIZED, 401)
        return None

    def _market_of(self, request: web.Request) -> _Market | None:
        return self._markets.get(request.query.get("token_id", ""))

    # --- REST: public ------------------------------------------------------------------------
    async def _version(self, request: web.Request) -> web.Response:
        return _json({"version": self.order_version})

    async def _fee_rate(self, request: web.Request) -> web.Response:
        if self._market_of(request) is None:
            return _error(404, "market not found")
        return _json({"base_fee": self.fee_rate_bps})

    async def _tick_size(self, request: web.Request) -> web.Response:
        st = self._market_of(request)
        if st is None:
            return _error(404, "market not found")
        return _json({"minimum_tick_size": float(st.tick)})  # float ok: the venue sends a JSON number

    async def _neg_risk(self, request: web.Request) -> web.Response:
        if self._market_of(request) is None:
            return _error(404, "market not found")
        return _json({"neg_risk": self.neg_risk})

    # --- REST: orders ------------------------------------------------------------------------
    async def _post_order(self, request: web.Request) -> web.Response:
        body = await request.text()
        denied = self._check_l2(request, body)
        if denied is not None:
            return denied
        self.orders_received += 1
        if self._refusals:
            message, success = self._refusals.pop(0)
            return self._insert_error(message, success)
        held = self._delayed.take()
        if held is not None:
            order_id = self._hash_of(body)
            self._delayed.schedule(held, order_id, lambda: self._late_place(request, body))
            delayed: dict[str, Any] = {
                "success": True,
                "errorMsg": "",
                "orderID": order_id or "",
                "transactionsHashes": [],
                "status": "delayed",
                "takingAmount": "",
                "makingAmount": "",
            }
            return _json(delayed)
        delay = self._late.take()
        if delay is not None:
            self._late.schedule(delay, self._hash_of(body), lambda: self._late_place(request, body))
            await self._stopping.wait()  # the reply is lost; the order arrives later (or never)
            return _error(503, "shutting down")
        response = self._place(request, body)
        if self._lose:
            self._lose -= 1
            self.replies_lost += 1
            await self._stopping.wait()  # executed, but the reply is lost
            return _error(503, "shutting down")
        return response

    def _insert_error(self, message: str, success: bool = True) -> web.Response:
        """An insert error in the documented 200 shape: the keys of the order reply (py-clob-client
        returns the body as is; TS clob-client ``OrderResponse``; rs-clob-client ``PostOrderResponse``,
        which requires ``orderID``, ``status`` and both amounts), with the text in ``errorMsg``."""
        return _json(
            {
                "success": success,
                "errorMsg": message,
                "orderID": "",
                "transactionsHashes": [],
                "status": "",
                "takingAmount": "",
                "makingAmount": "",
            }
        )

    def _refuse(self, status: int, message: str, body_message: str | None = None) -> web.Response:
        """An insert error: HTTP 200 with ``errorMsg`` (``body_message``, the documented text) when
        ``insert_errors_in_body``, else ``status`` with ``{"error": message}``."""
        if self.insert_errors_in_body:
            return self._insert_error(body_message or message)
        return _error(status, message)

    def _hash_of(self, body: str) -> str | None:
        """The order hash (the id a client looks a late order up by), if the body is readable."""
        try:
            order = json.loads(body)["order"]
            version = _wire_version(order)
            if version == 1:
                return order_hash_v1(order, self.chain_id, self.neg_risk)
            return order_hash_v2(order, self.chain_id, self.neg_risk) if version == 2 else None
        except (ValueError, KeyError, TypeError):
            return None

    def _late_place(self, request: web.Request, body: str) -> Placement:
        """``POST /order`` for a request that arrives only now (the late-arrival fault)."""
        answer = orjson.loads(self._place(request, body).body)  # type: ignore[arg-type]  # _json bodies are bytes
        if isinstance(answer, dict) and answer.get("success") is True and answer.get("orderID"):
            return str(answer["orderID"]), None
        return None, str((answer.get("error") or answer.get("errorMsg")) if isinstance(answer, dict) else answer)

    def _place(self, request: web.Request, body: str) -> web.Response:
        try:
            payload = json.loads(body)
            order = payload["order"]
            owner, order_type = payload["owner"], payload["orderType"]
            version = _wire_version(order)
            if version is None:
                raise ValueError("neither a V1 nor a V2 order")
            if version != self.order_version:
                return _error(400, ORDER_VERSION_MISMATCH)
            side = Side.BUY if order["side"] == "BUY" else Side.SELL if order["side"] == "SELL" else None
            maker_amount, taker_amount = int(order["makerAmount"]), int(order["takerAmount"])
            symbol, signature = str(order["tokenId"]), str(order["signature"])
            signature_type = int(order["signatureType"])
            expiration = int(order.get("expiration", 0))
            if version == 1:
                fee_bps: int | None = int(order["feeRateBps"])
                order_id = order_hash_v1(order, self.chain_id, self.neg_risk)
            else:
                fee_bps = None
                if payload.get("deferExec", False) is not False:
                    return _error(400, "deferExec is not supported by the loopback server")
                order_id = order_hash_v2(order, self.chain_id, self.neg_risk)
        except (ValueError, KeyError, TypeError):
            return _error(400, "Invalid order payload")
        if owner != self.api_key:
            return _error(400, "the order owner has to be the owner of the API KEY")
        if side is None or order_type not in _TIF:
            return _error(400, "Invalid order payload")
        try:
            signer = recover_order_signer(order_id, signature)
        except (ValueError, TypeError) as exc:
            log.debug("unrecoverable signature: %r", exc)
            return _error(400, "invalid signature")
        address = request.headers["POLY_ADDRESS"].lower()
        if signer.lower() != str(order["signer"]).lower() or signer.lower() != address:
            return _error(400, "invalid signature")
        if signature_type == 0 and str(order["maker"]).lower() != signer.lower():
            return _error(400, "invalid signature")
        st = self._markets.get(symbol)
        if st is None:
            return _error(400, "market not found")
        if fee_bps is not None and fee_bps != self.fee_rate_bps:
            return _error(400, f"invalid fee rate ({fee_bps}), current market's taker fee: {self.fee_rate_bps}")
        if maker_amount <= 0 or taker_amount <= 0:
            return _error(400, "invalid amounts")
        usdc, shares = (maker_amount, taker_amount) if side is Side.BUY else (taker_amount, maker_amount)
        size = Decimal(shares) / UNITS
        price = Decimal(usdc) / Decimal(shares)
        if not price_valid(price, st.tick):
            invalid = f"invalid price ({_wire(price)}), min: {_wire(st.tick)} - max: {_wire(1 - st.tick)}"
            return self._refuse(400, invalid, BODY_TICK)
        if size % st.spec.lot:
            invalid = f"invalid size ({_wire(size)}): not a multiple of {_wire(st.spec.lot)}"
            return self._refuse(400, invalid, BODY_MIN_SIZE)
        if order_id in self._orders:
            return self._refuse(400, BODY_DUPLICATED)
        free = self.free_collateral() if side is Side.BUY else self.free_tokens(symbol)
        if free < (size * price if side is Side.BUY else size):
            return self._refuse(400, NOT_ENOUGH_BALANCE)
        tif = _TIF[order_type]
        book = st.matching
        if tif is TimeInForce.FOK and book.available(side, price) < size:
            return self._refuse(400, FOK_KILLED, BODY_FOK_KILLED)
        if tif is TimeInForce.IOC and book.available(side, price) == 0:
            return self._refuse(400, FAK_KILLED)
        now = self._clock.now_ns() // NS_PER_S
        client = _ClientOrder(order_id, symbol, side, price, size, order_type, now, expiration=expiration)
        self._orders[order_id] = client
        result = book.submit(CLIENT, side, price, size, tif, tag=order_id)
        client.matching_id = result.order_id
        self._by_matching_id[(symbol, result.order_id)] = order_id
        spent = self._settle(st, result, client)
        if result.rested is None:
            client.status = "MATCHED"
        self._publish(st)
        making, taking = (spent, client.matched) if side is Side.BUY else (client.matched, spent)
        reply: dict[str, Any] = {
            "success": True,
            "errorMsg": "",
            "orderID": order_id,
            "transactionsHashes": ["0x" + hashlib.sha256(t.encode()).hexdigest() for t in client.trades],
            "status": "live" if result.rested is not None else "matched",
            "takingAmount": _wire(taking) if client.matched else "",
            "makingAmount": _wire(making) if client.matched else "",
        }
        if version == 2:
            reply["tradeIDs"] = list(client.trades)  # py-clob-client-v2 post_order: trades to follow
        return _json(reply)

    def _settle(self, st: _Market, result: MatchResult, taker: _ClientOrder | None) -> Decimal:
        """Record the trades of one submission and move balances; returns the taker's USDC."""
        usdc = ZERO
        rate = Decimal(self.fee_rate_bps) / 10_000
        for trade in result.trades:
            maker = self._client_maker(st, trade)
            tid = f"{next(self._trade_ids)}"
            now = self._clock.now_ns() // NS_PER_S
            maker_orders = []
            if maker is not None:
                maker.matched += trade.quantity
                maker.trades.append(tid)
                if maker.remaining == 0:
                    maker.status = "MATCHED"
                self._move(maker.symbol, maker.side, trade.price, trade.quantity, ZERO)
                maker_orders.append(
                    {
                        "order_id": maker.order_id,
                        "owner": self.api_key,
                        "maker_address": self.address,
                        "matched_amount": _wire(trade.quantity),
                        "price": _wire(trade.price),
                        "fee_rate_bps": "0",
                        "asset_id": st.symbol,
                        "outcome": "Yes",
                        "side": maker.side.name,
                    }
                )
            taker_side = maker.side.opposite if maker is not None else (taker.side if taker else Side.BUY)
            if taker is not None:
                fee = trade.quantity * rate * trade.price * (1 - trade.price)
                taker.matched += trade.quantity
                taker.trades.append(tid)
                usdc += trade.price * trade.quantity
                self._move(st.symbol, taker.side, trade.price, trade.quantity, fee)
            self._trades[tid] = {
                "id": tid,
                "taker_order_id": taker.order_id if taker is not None else f"mm-{result.order_id}",
                "market": st.condition,
                "asset_id": st.symbol,
                "side": taker_side.name,
                "size": _wire(trade.quantity),
                "fee_rate_bps": str(self.fee_rate_bps),
                "price": _wire(trade.price),
                "status": "MATCHED",
                "match_time": str(now),
                "outcome": "Yes",
                "owner": self.api_key if taker is not None else "",
                "maker_address": self.address if maker is not None else "",
                "trader_side": "TAKER" if taker is not None else "MAKER",
                "maker_orders": maker_orders,
            }
        return usdc

    def _client_maker(self, st: _Market, trade: Trade) -> _ClientOrder | None:
        if trade.maker.owner != CLIENT:
            return None
        oid = self._by_matching_id.get((st.symbol, trade.maker.order_id))
        return self._orders.get(oid) if oid is not None else None

    def _move(self, symbol: str, side: Side, price: Decimal, qty: Decimal, fee: Decimal) -> None:
        sign = 1 if side is Side.BUY else -1
        self.tokens[symbol] += sign * qty
        self.collateral -= sign * price * qty + fee

    def _live(self) -> list[_ClientOrder]:
        return [o for o in self._orders.values() if o.status == "LIVE"]

    async def _delete_order(self, request: web.Request) -> web.Response:
        body = await request.text()
        denied = self._check_l2(request, body)
        if denied is not None:
            return denied
        try:
            order_id = str(json.loads(body)["orderID"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "Invalid order payload")
        order = self._orders.get(order_id)
        if order is None:
            return _json({"canceled": [], "not_canceled": {order_id: "order can't be found"}})
        if order.status == "MATCHED":
            return _json({"canceled": [], "not_canceled": {order_id: "matched orders can't be canceled"}})
        if order.status != "LIVE":
            return _json({"canceled": [], "not_canceled": {order_id: "order can't be found - already canceled"}})
        st = self._markets[order.symbol]
        if order.matching_id is not None:
            st.matching.cancel(order.matching_id)
        order.status = "CANCELED"
        self._publish(st)
        return _json({"canceled": [order_id], "not_canceled": {}})

    async def _get_order(self, request: web.Request) -> web.Response:
        denied = self._check_l2(request, None)
        if denied is not None:
            return denied
        order = self._orders.get(request.match_info["order_id"])
        if order is None or (self.hide_matched_orders and order.status == "MATCHED"):
            return _json(None)  # the venue's answer for an order it does not have (module docstring)
        return _json(
            {
                "id": order.order_id,
                "status": order.status,
                "owner": self.api_key,
                "maker_address": self.address,
                "market": self._markets[order.symbol].condition,
                "asset_id": order.symbol,
                "side": order.side.name,
                "original_size": _wire(order.size),
                "size_matched": _wire(order.matched),
                "price": _wire(order.price),
                "outcome": "Yes",
                "expiration": str(order.expiration),
                "order_type": order.order_type,
                "associate_trades": list(order.trades),
                "created_at": order.created_at,
            }
        )

    async def _get_trades(self, request: web.Request) -> web.Response:
        denied = self._check_l2(request, None)
        if denied is not None:
            return denied
        q = request.query
        try:
            after, before = int(q.get("after", 0)), int(q.get("before", 2**63))
        except ValueError:
            return _error(400, "invalid after / before")
        rows = [
            t
            for tid, t in self._trades.items()
            if q.get("id", tid) == tid
            and q.get("asset_id", t["asset_id"]) == t["asset_id"]
            and q.get("market", t["market"]) == t["market"]
            and after <= int(t["match_time"]) <= before
        ]
        return _json({"data": rows, "next_cursor": "LTE=", "limit": 500, "count": len(rows)})

    async def _balance_allowance(self, request: web.Request) -> web.Response:
        denied = self._check_l2(request, None)
        if denied is not None:
            return denied
        kind = request.query.get("asset_type", "")
        if kind == "COLLATERAL":
            amount = self.collateral
        elif kind == "CONDITIONAL" and request.query.get("token_id", "") in self.tokens:
            amount = self.tokens[request.query["token_id"]]
        else:
            return _error(400, "invalid asset_type / token_id")
        units = str(int((amount * UNITS).to_integral_value()))
        return _json({"balance": units, "allowance": "115792089237316195423570985008687907853269984665640564039457"})


def _log_failure(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("loopback polymarket task failed", exc_info=exc)
