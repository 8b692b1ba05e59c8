"""The order path's preparation, checked against what it replaced (test layer (a): plain asyncio).

Kraken: the request body is encoded without ``urlencode`` when nothing needs escaping, and signed
with an HMAC keyed once; both must give exactly the bytes and the ``API-Sign`` that ``urlencode``
and :func:`api_sign` give. Coinbase: the order-create JWT is minted before the order (at start,
then after each order has gone out, and kept fresh while idle), and every JWT is still used for one
request only. The confirm_to_wire figure's wire tap reads client order ids from the bytes it sees.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import urllib.parse
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import jwt
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from arbtui.bench.confirm_to_wire import WireTap, percentile
from arbtui.domain.clock import LiveClock, ManualClock
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.orders import OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.venues import coinbase
from arbtui.venues.coinbase import CoinbaseSigner, CoinbaseTrader
from arbtui.venues.kraken import KrakenTrader, _form, api_sign
from arbtui.venues.secrets import Credentials, Secret, SecretsError

D = Decimal
NS = 1_000_000_000
T0 = 1_700_000_000 * NS
KRAKEN_BTC = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.00000001"), D("0.00000001"), 1, 8)
COINBASE_BTC = Listing("coinbase", "BTC-USD", "BTC-USD", D("0.01"), D("0.00000001"), D("0.00000001"), 2, 8)
MARKETS = {"BTC-USD": Market("BTC-USD", "BTC", "USD")}
KRAKEN_BTC_PAIR = {
    "altname": "XBTUSD",
    "wsname": "XBT/USD",
    "base": "XXBT",
    "quote": "ZUSD",
    "pair_decimals": 1,
    "lot_decimals": 8,
    "cost_decimals": 5,
    "ordermin": "0.00005",
    "costmin": "0.5",
    "tick_size": "0.1",
    "status": "online",
}
KEY_NAME = "organizations/test-organization/apiKeys/test-api-key"


class Server:
    """A scripted HTTP server on 127.0.0.1 that keeps every request it gets."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self.orders = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": raw,
                "host": request.host,
            }
        )
        path = request.path
        if path == "/0/public/AssetPairs":  # Kraken's shape: keyed by the internal name
            return web.json_response({"error": [], "result": {"XXBTZUSD": KRAKEN_BTC_PAIR}})
        if path == "/0/private/AddOrder":  # Kraken: refused, so the trader asks nothing more
            return web.json_response({"error": ["EOrder:Insufficient funds"]})
        if path == coinbase.ORDERS_PATH:
            self.orders += 1
            return web.json_response({"success": True, "success_response": {"order_id": f"o-{self.orders}"}})
        if path.startswith(coinbase.ORDER_PATH):
            order_id = path.removeprefix(coinbase.ORDER_PATH)
            return web.json_response(
                {
                    "order": {
                        "order_id": order_id,
                        "product_id": "BTC-USD",
                        "order_configuration": {
                            "sor_limit_ioc": {"base_size": "0.01000000", "limit_price": "60000.00"}
                        },
                        "side": "BUY",
                        "client_order_id": "x",
                        "status": "CANCELLED",
                        "time_in_force": "IMMEDIATE_OR_CANCEL",
                        "filled_size": "0",
                        "average_filled_price": "0",
                        "total_fees": "0",
                    }
                }
            )
        return web.json_response({"error": "NOT_FOUND"}, status=404)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    srv.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield srv
    await runner.cleanup()
    sock.close()


async def idle(clock: ManualClock, seconds: int, step: int = 5) -> None:
    """Let ``seconds`` of quiet pass on ``clock``, a step at a time, leaving real time after each step
    for what a woken task sends over the socket (a ManualClock cannot wait for the network)."""
    for _ in range(seconds // step):
        await clock.advance(step * NS)
        for _ in range(20):
            await asyncio.sleep(0.002)


# --- Kraken ----------------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(st.lists(st.tuples(text, text), max_size=12))
def test_kraken_form_is_urlencode(params: list[tuple[str, str]]) -> None:
    assert _form(params) == urllib.parse.urlencode(params).encode()


def test_kraken_form_of_an_order_needs_no_escaping_but_the_deadline() -> None:
    params = [
        ("nonce", "1700000000000001"),
        ("ordertype", "limit"),
        ("type", "buy"),
        ("volume", "0.01000000"),
        ("pair", "XBTUSD"),
        ("price", "49500.0"),
        ("timeinforce", "IOC"),
        ("oflags", "fciq"),
        ("cl_ord_id", "aabc0000001e01"),
        ("deadline", "2023-11-14T22:13:25.000000Z"),
    ]
    body = _form(params)
    assert body == urllib.parse.urlencode(params).encode()
    assert b"deadline=2023-11-14T22%3A13%3A25.000000Z" in body


async def test_kraken_requests_are_signed_exactly_as_api_sign_says(server: Server) -> None:
    secret = base64.b64encode(bytes(range(64))).decode()
    creds = Credentials("kraken", {"api_key": Secret("key-" + "a" * 20), "api_secret": Secret(secret)}, "test")
    trader = KrakenTrader("kraken", [KRAKEN_BTC], MARKETS, creds, LiveClock(), rest_url=server.url)
    await trader.start()
    try:
        for n in range(3):
            req = OrderRequest(
                f"abc{n:07d}e01", "kraken", "BTC-USD", Side.BUY, D("0.01"), D("49500.0"), TimeInForce.IOC
            )
            report = await trader.place_order(req)
            assert report.status is OrderStatus.REJECTED
    finally:
        await trader.close()
    orders = [s for s in server.seen if s["path"] == "/0/private/AddOrder"]
    assert len(orders) == 3
    assert [s["path"] for s in server.seen].count("/0/public/AssetPairs") == 1  # read once, at start
    for seen in orders:
        body: bytes = seen["body"]
        form = dict(urllib.parse.parse_qsl(body.decode()))
        assert seen["headers"]["API-Sign"] == api_sign("/0/private/AddOrder", body, form["nonce"], secret)
        assert form["cl_ord_id"].startswith("abc") and form["timeinforce"] == "IOC"
    nonces = [int(dict(urllib.parse.parse_qsl(s["body"].decode()))["nonce"]) for s in orders]
    assert nonces == sorted(set(nonces))


def test_a_kraken_secret_that_is_not_base64_fails_at_construction_without_echoing_it() -> None:
    bad = "secret-zzzz"  # no padding can make this base64
    creds = Credentials("kraken", {"api_key": Secret("key-" + "a" * 20), "api_secret": Secret(bad)}, "test")
    with pytest.raises(SecretsError) as info:
        KrakenTrader("kraken", [KRAKEN_BTC], MARKETS, creds, LiveClock())
    assert "zzzz" not in str(info.value) and "api_secret" in str(info.value)


# --- Coinbase --------------------------------------------------------------------------------------


def ec_key() -> tuple[str, ec.EllipticCurvePublicKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


def claims_of(seen: dict[str, Any], public: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    token = seen["headers"]["Authorization"].removeprefix("Bearer ")
    out: dict[str, Any] = jwt.decode(
        token, public, algorithms=["ES256"], options={"verify_exp": False, "verify_nbf": False}
    )
    return out


def ioc(cid: str) -> OrderRequest:
    return OrderRequest(cid, "coinbase", "BTC-USD", Side.BUY, D("0.01"), D("60000.00"), TimeInForce.IOC)


async def test_coinbase_order_jwt_is_minted_before_the_order_and_used_once(server: Server) -> None:
    pem, public = ec_key()
    clock = ManualClock(T0)
    signer = CoinbaseSigner(Secret(KEY_NAME), Secret(pem), clock)
    trader = CoinbaseTrader("coinbase", server.url, [COINBASE_BTC], signer, clock, rate_per_s=D(1000))
    await trader.start()  # mints the first order JWT
    try:
        await idle(clock, 15)  # the keeper looks at +10 s: a 10 s old JWT is kept
        assert (await trader.place_order(ioc("c1"))).status is OrderStatus.EXPIRED
        await clock.advance(1 * NS)
        assert (await trader.place_order(ioc("c2"))).status is OrderStatus.EXPIRED
        await idle(clock, 300)  # idle for minutes: the keeper keeps one fresh
        assert (await trader.place_order(ioc("c3"))).status is OrderStatus.EXPIRED
        now_s = clock.now_ns() // NS
    finally:
        await trader.close()
    assert clock.pending_sleepers == 0  # the keeper stopped with the trader

    creates = [s for s in server.seen if s["path"] == coinbase.ORDERS_PATH]
    assert len(creates) == 3
    claims = [claims_of(s, public) for s in creates]
    host = server.url.removeprefix("http://")
    assert all(c["uri"] == f"POST {host}{coinbase.ORDERS_PATH}" for c in claims)
    assert claims[0]["nbf"] == T0 // NS  # minted at start, 15 s before the order
    assert claims[1]["nbf"] == T0 // NS + 15  # minted once the first order had gone out
    assert now_s - coinbase.ORDER_JWT_MAX_AGE_S < claims[2]["nbf"] < now_s  # ahead of time, and fresh
    for c in claims:
        assert c["exp"] - c["nbf"] == coinbase.JWT_LIFETIME_S
    tokens = [s["headers"]["Authorization"] for s in server.seen]
    assert len(set(tokens)) == len(tokens)  # every request has its own JWT
    for s in server.seen:
        assert claims_of(s, public)["uri"] == f"{s['method']} {host}{s['path']}"
    # While idle, the connection was kept warm with the public server time, and only then.
    warm = [i for i, s in enumerate(server.seen) if s["path"] == coinbase.TIME_PATH]
    assert 28 <= len(warm) <= 32  # every KEEP_WARM_S of the 315 quiet seconds
    assert all(server.seen[i]["method"] == "GET" for i in warm)
    paths = [s["path"] for s in server.seen]
    first, second = [i for i, p in enumerate(paths) if p == coinbase.ORDERS_PATH][:2]
    assert paths[:first].count(coinbase.TIME_PATH) == 1  # quiet from start to +10 s
    assert coinbase.TIME_PATH not in paths[first:second]  # busy


async def test_kraken_keeps_its_connection_warm_only_while_quiet(server: Server) -> None:
    secret = base64.b64encode(bytes(range(64))).decode()
    creds = Credentials("kraken", {"api_key": Secret("key-" + "a" * 20), "api_secret": Secret(secret)}, "test")
    clock = ManualClock(T0)
    trader = KrakenTrader("kraken", [KRAKEN_BTC], MARKETS, creds, clock, rest_url=server.url)
    await trader.start()
    try:
        await idle(clock, 35)
        pings = [s for s in server.seen if s["path"] == "/0/public/Time"]
        assert len(pings) == 3 and all(s["method"] == "GET" and "API-Key" not in s["headers"] for s in pings)
        for _ in range(4):  # busy: a private request every 5 s, so no ping is needed
            req = OrderRequest(
                f"w{len(server.seen):09d}e01", "kraken", "BTC-USD", Side.BUY, D("0.01"), D("49500.0"), TimeInForce.IOC
            )
            await trader.place_order(req)
            await idle(clock, 5)
        assert len([s for s in server.seen if s["path"] == "/0/public/Time"]) == 3
    finally:
        await trader.close()
    assert clock.pending_sleepers == 0


async def test_a_stale_coinbase_order_jwt_is_not_used(server: Server) -> None:
    pem, public = ec_key()
    clock = ManualClock(T0)
    signer = CoinbaseSigner(Secret(KEY_NAME), Secret(pem), clock)
    trader = CoinbaseTrader("coinbase", server.url, [COINBASE_BTC], signer, clock, rate_per_s=D(1000))
    await trader.start()
    try:
        # The keeper cannot run (nobody advances the clock through its sleeps): the JWT only ages.
        clock.set(T0 + (coinbase.ORDER_JWT_MAX_AGE_S + 1) * NS)
        assert (await trader.place_order(ioc("c1"))).status is OrderStatus.EXPIRED
    finally:
        await trader.close()
    (create,) = [s for s in server.seen if s["path"] == coinbase.ORDERS_PATH]
    assert claims_of(create, public)["nbf"] == T0 // NS + coinbase.ORDER_JWT_MAX_AGE_S + 1  # a new one


# --- the figure's wire tap -------------------------------------------------------------------------


async def test_wire_tap_stamps_order_requests_by_client_order_id(server: Server) -> None:
    import aiohttp

    tap = WireTap()
    kraken_body = b"nonce=1&ordertype=limit&cl_ord_id=abc0000001e01&deadline=x"
    coinbase_body = orjson.dumps({"client_order_id": "abc0000001e02", "product_id": "BTC-USD"})
    with tap.installed():
        async with aiohttp.ClientSession() as session:
            for path, body in (
                ("/0/private/AddOrder", kraken_body),
                (coinbase.ORDERS_PATH, coinbase_body),
                ("/0/private/QueryOrders", b"nonce=2&txid=O-1"),
            ):
                async with session.post(server.url + path, data=body) as resp:
                    await resp.read()
        await asyncio.sleep(0)
    tap.collect()
    assert set(tap.sent) == {"abc0000001e01", "abc0000001e02"}
    assert tap.sent["abc0000001e01"] <= tap.returned["abc0000001e01"] < tap.sent["abc0000001e02"]
    assert tap.buffered == 0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
