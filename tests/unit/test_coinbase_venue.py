"""Coinbase connector without the loopback venue: JWTs decoded and checked, request bodies against the
shapes coinbase-advanced-py asserts, replies mapped to reports and errors, the feed driven by hand.

Vectors, copied here with their source:

- Request bodies asserted verbatim in ``coinbase/coinbase-advanced-py:tests/rest/test_orders.py``:
  ``{"client_order_id": "client_order_id_1", "product_id": "product_id_1", "side": "BUY",
  "order_configuration": {"sor_limit_ioc": {"base_size": "1", "limit_price": "100"}}}`` and
  ``{"order_ids": ["order_id_1", "order_id_2"]}``.
- JWT claims as ``coinbase-advanced-py:tests/test_jwt_generator.py`` checks them (``coinbase/jwt_generator.py``): header
  ``alg``/``kid``, claims ``sub`` = key name, ``iss`` = "cdp", ``uri`` = "POST
  api.coinbase.com/api/v3/brokerage/orders"; the test key name ``organizations/test-organization/
  apiKeys/test-api-key`` (``tests/constants.py``). The keys themselves are generated here.
- The refusal ``{"success": false, "error_response": {"error": "INSUFFICIENT_FUND", "message":
  "Insufficient balance in source account"}}`` and the cancel result ``{"success": true,
  "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": "0000-00000"}`` (the shapes of the
  Create Order and Cancel Orders replies in docs.cdp.coinbase.com/advanced-trade/reference; the values
  illustrative).
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jwt
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from arbtui.config import RealVenueConfig, SimVenueConfig, VenueConfig
from arbtui.domain.clock import LiveClock, ManualClock
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.orders import Liquidity, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.coinbase import (
    CoinbaseFeed,
    CoinbaseSigner,
    CoinbaseTrader,
    PaperWithLiveFees,
    build_venue,
    load_private_key,
    order_body,
    order_status_of,
    report_from_order,
    rfc3339_ns,
)
from arbtui.venues.connection import NullLink
from arbtui.venues.live import PaperTrader
from arbtui.venues.secrets import Credentials, Secret, SecretsError

D = Decimal
KEY_NAME = "organizations/test-organization/apiKeys/test-api-key"  # coinbase-advanced-py tests/constants.py
T0 = 1_700_000_000 * 1_000_000_000
BTC = Listing("coinbase", "BTC-USD", "BTC-USD", D("0.01"), D("0.00000001"), D("0.00000001"), 2, 8)
WHOLE = Listing("coinbase", "X", "product_id_1", D("1"), D("1"), D("1"), 0, 0)  # renders "1" and "100"


def ec_pem() -> tuple[str, ec.EllipticCurvePublicKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def signer_for(private_key: str, clock: ManualClock | None = None) -> CoinbaseSigner:
    return CoinbaseSigner(Secret(KEY_NAME), Secret(private_key), clock or ManualClock(T0))


def decode(token: str, public: Any, alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, public, algorithms=[alg], options={"verify_exp": False, "verify_nbf": False})
    return header, claims


# --- JWT -------------------------------------------------------------------------------------------


def test_es256_jwt_has_the_claims_coinbase_checks() -> None:
    pem, public = ec_pem()
    signer = signer_for(pem)
    header, claims = decode(signer.token("POST", "api.coinbase.com", "/api/v3/brokerage/orders"), public, "ES256")
    assert header["alg"] == "ES256" and header["kid"] == KEY_NAME and header["typ"] == "JWT"
    assert len(header["nonce"]) == 64 and int(header["nonce"], 16) >= 0  # secrets.token_hex(): 32 random bytes
    assert claims == {
        "sub": KEY_NAME,
        "iss": "cdp",
        "nbf": T0 // 1_000_000_000,
        "exp": T0 // 1_000_000_000 + 120,
        "uri": "POST api.coinbase.com/api/v3/brokerage/orders",
    }


@pytest.mark.parametrize("form", ["pkcs8-pem", "seed32", "seed64"])
def test_eddsa_jwt_from_every_ed25519_key_form(form: str) -> None:
    key = ed_key()
    if form == "pkcs8-pem":
        text = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    elif form == "seed32":
        text = base64.b64encode(key.private_bytes_raw()).decode()
    else:
        text = base64.b64encode(key.private_bytes_raw() + key.public_key().public_bytes_raw()).decode()
    signer = signer_for(text)
    assert signer.alg == "EdDSA"
    header, claims = decode(
        signer.token("GET", "127.0.0.1:8443", "/api/v3/brokerage/accounts"), key.public_key(), "EdDSA"
    )
    assert header["alg"] == "EdDSA" and header["kid"] == KEY_NAME
    assert claims["sub"] == KEY_NAME and claims["iss"] == "cdp"
    assert claims["uri"] == "GET 127.0.0.1:8443/api/v3/brokerage/accounts"  # the host of the REST URL, with its port


def test_websocket_jwt_has_no_uri_and_every_token_is_fresh() -> None:
    pem, public = ec_pem()
    clock = ManualClock(T0)
    signer = signer_for(pem, clock)
    first = signer.token()
    _, claims = decode(first, public, "ES256")
    assert "uri" not in claims and claims["sub"] == KEY_NAME
    second = signer.token()
    assert jwt.get_unverified_header(first)["nonce"] != jwt.get_unverified_header(second)["nonce"]
    clock.set(T0 + 30 * 1_000_000_000)
    _, later = decode(signer.token(), public, "ES256")
    assert later["nbf"] == claims["nbf"] + 30  # the injected clock, not the wall clock


def test_a_pem_with_escaped_newlines_from_an_environment_variable_loads() -> None:
    pem, _ = ec_pem()
    assert load_private_key(pem.replace("\n", "\\n"))[1] == "ES256"


def test_bad_keys_are_refused_without_echoing_them() -> None:
    other_curve = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        .decode()
    )
    wrong_pub = base64.b64encode(ed_key().private_bytes_raw() + ed_key().public_key().public_bytes_raw()).decode()
    for bad in (other_curve, wrong_pub, "not-a-key-but-secret-looking-zzzz", base64.b64encode(b"x" * 20).decode()):
        with pytest.raises(SecretsError) as info:
            load_private_key(bad)
        assert bad not in str(info.value) and "zzzz" not in str(info.value)
    pem, _ = ec_pem()
    signer = signer_for(pem)
    assert pem not in repr(signer) and KEY_NAME not in repr(signer)


def test_signer_from_credentials_needs_both_fields_and_names_the_venue() -> None:
    clock = ManualClock(T0)
    assert CoinbaseSigner.from_credentials(None, clock) is None
    partial = Credentials("cb", {"key_name": Secret(KEY_NAME)}, "environment")
    assert CoinbaseSigner.from_credentials(partial, clock) is None
    broken = Credentials("cb", {"key_name": Secret(KEY_NAME), "private_key": Secret("garbage-key-value")}, "env")
    with pytest.raises(SecretsError, match="^cb: coinbase private_key"):
        CoinbaseSigner.from_credentials(broken, clock)


# --- request bodies --------------------------------------------------------------------------------


def request(tif: TimeInForce, qty: str = "1", price: str = "100", cid: str = "client_order_id_1") -> OrderRequest:
    return OrderRequest(cid, "coinbase", "X", Side.BUY, D(qty), D(price), tif)


def test_ioc_body_is_the_coinbase_advanced_py_vector() -> None:
    assert order_body(request(TimeInForce.IOC), WHOLE) == {
        "client_order_id": "client_order_id_1",
        "product_id": "product_id_1",
        "side": "BUY",
        "order_configuration": {"sor_limit_ioc": {"base_size": "1", "limit_price": "100"}},
    }


def test_gtc_and_fok_bodies() -> None:
    # The library's GTC vector has post_only true; arbitrage legs never ask for post-only, so it is false.
    assert order_body(request(TimeInForce.GTC), WHOLE)["order_configuration"] == {
        "limit_limit_gtc": {"base_size": "1", "limit_price": "100", "post_only": False}
    }
    assert order_body(request(TimeInForce.FOK), WHOLE)["order_configuration"] == {
        "limit_limit_fok": {"base_size": "1", "limit_price": "100"}
    }


def test_values_are_rendered_at_the_listing_precision_and_never_rounded() -> None:
    req = OrderRequest("c", "coinbase", "BTC-USD", Side.SELL, D("0.5"), D("60000.1"), TimeInForce.IOC)
    body = order_body(req, BTC)
    assert body["side"] == "SELL"
    assert body["order_configuration"]["sor_limit_ioc"] == {"base_size": "0.50000000", "limit_price": "60000.10"}
    with pytest.raises(ValueError, match="decimal places"):
        order_body(OrderRequest("c", "coinbase", "BTC-USD", Side.BUY, D("1"), D("60000.001")), BTC)


# --- statuses and reports --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "tif", "filled", "ours"),
    [
        ("FILLED", TimeInForce.IOC, D(1), OrderStatus.FILLED),
        ("CANCELLED", TimeInForce.IOC, D("0.4"), OrderStatus.EXPIRED),  # an IOC remainder, whatever its name
        ("EXPIRED", TimeInForce.FOK, D(0), OrderStatus.EXPIRED),
        ("CANCELLED", TimeInForce.GTC, D("0.4"), OrderStatus.CANCELLED),
        ("OPEN", TimeInForce.GTC, D(0), OrderStatus.OPEN),
        ("OPEN", TimeInForce.GTC, D("0.4"), OrderStatus.PARTIALLY_FILLED),
        ("PENDING", TimeInForce.IOC, D(0), OrderStatus.OPEN),  # not final yet: read again
        ("CANCEL_QUEUED", TimeInForce.GTC, D(0), OrderStatus.OPEN),  # may still fill
        ("FAILED", TimeInForce.IOC, D(0), OrderStatus.REJECTED),
    ],
)
def test_order_statuses(wire: str, tif: TimeInForce, filled: Decimal, ours: OrderStatus) -> None:
    assert order_status_of(wire, tif, filled) is ours


def order_wire(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "order_id": "0000-000000-000000",
        "product_id": "BTC-USD",
        "order_configuration": {"sor_limit_ioc": {"base_size": "0.50000000", "limit_price": "60000.00"}},
        "side": "BUY",
        "client_order_id": "cid-1",
        "status": "CANCELLED",
        "time_in_force": "IMMEDIATE_OR_CANCEL",
        "filled_size": "0.2",
        "average_filled_price": "59999.50",
        "total_fees": "7.19994",
        "reject_reason": "REJECT_REASON_UNSPECIFIED",
        "reject_message": "",
        "cancel_message": "",
    }
    order.update(changes)
    return order


def test_report_from_an_order_this_process_did_not_send() -> None:
    report = report_from_order(order_wire(), "coinbase", None, (), 5)
    assert report.client_order_id == "cid-1" and report.venue_order_id == "0000-000000-000000"
    assert report.status is OrderStatus.EXPIRED and report.reason == "IOC remainder expired"
    assert report.quantity == D("0.5") and report.filled_quantity == D("0.2") and report.remaining == D("0.3")
    assert report.average_price == D("59999.50") and report.fee == D("7.19994")
    nothing = report_from_order(
        order_wire(filled_size="0", average_filled_price="0", total_fees="0"), "cb", None, (), 5
    )
    assert nothing.average_price is None and nothing.filled_quantity == 0
    failed = report_from_order(
        order_wire(status="FAILED", filled_size="0", reject_message="Insufficient funds"), "cb", None, (), 5
    )
    assert failed.status is OrderStatus.REJECTED and failed.reason == "Insufficient funds"
    with pytest.raises(ValueError):
        report_from_order(order_wire(filled_size=0.2), "cb", None, (), 5)  # a JSON number is not a size


def test_rfc3339_times_keep_nanoseconds() -> None:
    assert rfc3339_ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert rfc3339_ns("2024-10-08T09:10:34.970831Z") == 1728378634_970831000
    assert rfc3339_ns("2024-10-08T09:10:34+00:00") == 1728378634_000000000
    assert rfc3339_ns("yesterday") is None and rfc3339_ns(None) is None


# --- the trader against a recording server -----------------------------------------------------------


@dataclass
class Recorder:
    """A 127.0.0.1 HTTP server that records each request and answers from a script (any JWT accepted)."""

    answers: dict[tuple[str, str], list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    served: set[tuple[str, str]] = field(default_factory=set)  # whose last (sticky) answer was served

    def answer(self, method: str, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue an answer; the last one of a path repeats until a new one is queued."""
        queue = self.answers.setdefault((method, path), [])
        if (method, path) in self.served:
            queue.clear()
            self.served.discard((method, path))
        queue.append((status, body, headers or {}))

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": list(request.query.items()),
                "body": orjson.loads(raw) if raw else None,
                "auth": request.headers.get("Authorization", ""),
                "host": request.host,
            }
        )
        queue = self.answers.get((request.method, request.path))
        if not queue:
            return web.json_response({"error": "NOT_FOUND", "message": "no scripted answer"}, status=404)
        if len(queue) > 1:
            status, body, headers = queue.pop(0)
        else:
            status, body, headers = queue[0]
            self.served.add((request.method, request.path))
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    rec.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield rec
    await runner.cleanup()
    sock.close()


ORDERS = "/api/v3/brokerage/orders"
ORDER = "/api/v3/brokerage/orders/historical/0000-00000"
FILLS = "/api/v3/brokerage/orders/historical/fills"


@pytest.fixture
async def trader(recorder: Recorder) -> AsyncIterator[tuple[CoinbaseTrader, ec.EllipticCurvePublicKey]]:
    pem, public = ec_pem()
    clock = LiveClock()  # real sockets: the rate budget and the polls wait on the wall clock
    t = CoinbaseTrader("coinbase", recorder.url, [BTC], CoinbaseSigner(Secret(KEY_NAME), Secret(pem), clock), clock)
    t.poll_base_s = 0.001
    await t.start()
    yield t, public
    await t.close()


def ioc(cid: str = "leg-1", qty: str = "0.5") -> OrderRequest:
    return OrderRequest(cid, "coinbase", "BTC-USD", Side.BUY, D(qty), D("60000.00"), TimeInForce.IOC)


async def test_place_sends_the_body_and_a_jwt_for_the_rest_host_then_reads_order_and_fills(
    recorder: Recorder, trader: tuple[CoinbaseTrader, Any]
) -> None:
    t, public = trader
    recorder.answer("POST", ORDERS, 200, {"success": True, "success_response": {"order_id": "0000-00000"}})
    recorder.answer("GET", ORDER, 200, {"order": order_wire(order_id="0000-00000", status="PENDING", filled_size="0")})
    recorder.answer("GET", ORDER, 200, {"order": order_wire(order_id="0000-00000", client_order_id="leg-1")})
    fill = {
        "trade_id": "t1",
        "order_id": "0000-00000",
        "trade_time": "2024-10-08T09:10:34.970831Z",
        "price": "59999.50",
        "size": "0.2",
        "commission": "7.19994",
        "liquidity_indicator": "TAKER",
    }
    recorder.answer("GET", FILLS, 200, {"fills": [fill], "cursor": ""})
    report = await t.place_order(ioc())
    post = recorder.seen[0]
    assert post["body"] == {
        "client_order_id": "leg-1",
        "product_id": "BTC-USD",
        "side": "BUY",
        "order_configuration": {"sor_limit_ioc": {"base_size": "0.50000000", "limit_price": "60000.00"}},
    }
    _, claims = decode(post["auth"].removeprefix("Bearer "), public, "ES256")
    assert claims["uri"] == f"POST {post['host']}{ORDERS}" and post["host"].startswith("127.0.0.1:")
    tokens = {s["auth"] for s in recorder.seen}
    assert len(tokens) == len(recorder.seen) == 4  # a fresh JWT per request; PENDING was read again
    assert [s["path"] for s in recorder.seen] == [ORDERS, ORDER, ORDER, FILLS]
    assert recorder.seen[3]["query"][0] == ("order_ids", "0000-00000")
    assert report.status is OrderStatus.EXPIRED and report.filled_quantity == D("0.2")
    assert report.client_order_id == "leg-1" and report.venue_order_id == "0000-00000"
    assert report.fills[0].liquidity is Liquidity.TAKER and report.fills[0].ts_ns == 1728378634_970831000
    assert report.fills[0].fee == D("7.19994")


async def test_a_refusal_is_a_rejected_report_in_the_venues_words(
    recorder: Recorder, trader: tuple[CoinbaseTrader, Any]
) -> None:
    t, _ = trader
    refusal = {
        "success": False,
        "error_response": {"error": "INSUFFICIENT_FUND", "message": "Insufficient balance in source account"},
    }
    recorder.answer("POST", ORDERS, 200, refusal)
    report = await t.place_order(ioc())
    assert report.status is OrderStatus.REJECTED and report.filled_quantity == 0
    assert report.reason == "INSUFFICIENT_FUND: Insufficient balance in source account"
    recorder.answer("POST", ORDERS, 400, {"error": "INVALID_ARGUMENT", "message": "bad size"})
    assert (await t.place_order(ioc("leg-2"))).status is OrderStatus.REJECTED
    recorder.answer("POST", ORDERS, 401, "Unauthorized")
    unauthorized = await t.place_order(ioc("leg-3"))
    assert unauthorized.status is OrderStatus.REJECTED and "Unauthorized" in (unauthorized.reason or "")


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_overload_and_server_errors_are_retryable_never_rejections(
    recorder: Recorder, trader: tuple[CoinbaseTrader, Any], status: int
) -> None:
    t, _ = trader
    recorder.answer("POST", ORDERS, status, {"error": "x", "message": "busy"})
    with pytest.raises(VenueError) as info:
        await t.place_order(ioc())
    assert info.value.retryable and not isinstance(info.value, UnknownOrder)


async def test_secrets_in_venue_messages_are_redacted(recorder: Recorder, trader: tuple[CoinbaseTrader, Any]) -> None:
    t, _ = trader
    leaked = Secret("super-secret-api-value-123")  # registers the value with redact()
    recorder.answer(
        "POST",
        ORDERS,
        200,
        {"success": False, "error_response": {"error": "INVALID_REQUEST", "message": f"bad key {leaked.reveal()}"}},
    )
    report = await t.place_order(ioc())
    assert leaked.reveal() not in (report.reason or "") and "***" in (report.reason or "")


async def test_cancel_trusts_success_not_failure_reason(recorder: Recorder, trader: tuple[CoinbaseTrader, Any]) -> None:
    t, _ = trader
    recorder.answer("POST", ORDERS, 200, {"success": True, "success_response": {"order_id": "0000-00000"}})
    gtc_open = order_wire(order_id="0000-00000", status="OPEN", filled_size="0", time_in_force="GOOD_UNTIL_CANCELLED")
    recorder.answer("GET", ORDER, 200, {"order": gtc_open})
    req = OrderRequest("gtc-1", "coinbase", "BTC-USD", Side.BUY, D("0.5"), D("59000"), TimeInForce.GTC)
    assert (await t.place_order(req)).status is OrderStatus.OPEN
    recorder.answer("GET", ORDER, 200, {"order": dict(gtc_open, status="CANCELLED")})
    recorder.answer(
        "POST",
        "/api/v3/brokerage/orders/batch_cancel",
        200,
        {"results": [{"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": "0000-00000"}]},
    )
    report = await t.cancel_order("gtc-1")
    assert recorder.seen[-2]["body"] == {"order_ids": ["0000-00000"]}  # the library's batch_cancel shape
    assert report.status is OrderStatus.CANCELLED


async def test_unknown_orders(recorder: Recorder, trader: tuple[CoinbaseTrader, Any]) -> None:
    t, _ = trader
    recorder.answer("GET", "/api/v3/brokerage/orders/historical/batch", 200, {"orders": [], "has_next": False})
    with pytest.raises(UnknownOrder):
        await t.order_status("never-sent")
    with pytest.raises(UnknownOrder):
        await t.cancel_order("never-sent")


async def test_rate_limit_headers_lower_the_budget(recorder: Recorder, trader: tuple[CoinbaseTrader, Any]) -> None:
    t, _ = trader
    summary = {"fee_tier": {"maker_fee_rate": "0.0040", "taker_fee_rate": "0.0060"}}
    recorder.answer(
        "GET",
        "/api/v3/brokerage/transaction_summary",
        200,
        summary,
        {"x-ratelimit-limit": "30", "x-ratelimit-remaining": "0"},
    )
    fees = await t.live_fees()
    assert fees["BTC-USD"] == FeeSchedule(D("0.0040"), D("0.0060"))
    (view,) = t.budgets()
    assert view.used >= view.limit - 0.01  # the venue said nothing is left: the next request waits
    assert recorder.seen[0]["query"] == [("product_type", "SPOT")]


# --- the feed, driven by hand -----------------------------------------------------------------------


def l2(seq: int, kind: str, levels: list[tuple[str, str, str]], product: str = "BTC-USD") -> bytes:
    updates = [
        {"side": s, "event_time": "2024-10-08T09:10:34.970831Z", "price_level": p, "new_quantity": q}
        for s, p, q in levels
    ]
    return orjson.dumps(
        {
            "channel": "l2_data",
            "client_id": "",
            "timestamp": "2024-10-08T09:10:36.04370306Z",
            "sequence_num": seq,
            "events": [{"type": kind, "product_id": product, "updates": updates}],
        }
    )


def heartbeat(seq: int, counter: int) -> bytes:
    return orjson.dumps(
        {
            "channel": "heartbeats",
            "client_id": "",
            "timestamp": "2023-06-23T20:31:26.122969572Z",
            "sequence_num": seq,
            "events": [{"current_time": "x", "heartbeat_counter": str(counter)}],
        }
    )


def test_feed_subscribes_once_per_channel_with_a_jwt_without_uri() -> None:
    pem, public = ec_pem()
    feed = CoinbaseFeed("coinbase", [BTC], ManualClock(T0), signer_for(pem))
    level2, beats = (orjson.loads(m) for m in feed.on_open(NullLink()))
    assert {k: level2[k] for k in ("type", "product_ids", "channel")} == {
        "type": "subscribe",
        "product_ids": ["BTC-USD"],
        "channel": "level2",
    }
    assert {k: beats[k] for k in ("type", "channel")} == {"type": "subscribe", "channel": "heartbeats"}
    assert "product_ids" not in beats
    for msg in (level2, beats):
        _, claims = decode(msg["jwt"], public, "ES256")
        assert "uri" not in claims and claims["iss"] == "cdp"
    assert level2["jwt"] != beats["jwt"]
    unsigned = CoinbaseFeed("coinbase", [BTC], ManualClock(T0))
    assert all("jwt" not in orjson.loads(m) for m in unsigned.on_open(NullLink()))


S = 1_000_000_000


def test_feed_books_by_canonical_market_and_resubscribes_after_a_gap() -> None:
    listing = Listing("coinbase", "BTC-USD-canonical", "BTC-USD", D("0.01"), D("0.00000001"), D("0.00000001"), 2, 8)
    clock = ManualClock(T0)
    feed = CoinbaseFeed("coinbase", [listing], clock)
    changed: list[str] = []
    feed.set_on_change(changed.append)
    link = NullLink()
    feed.on_open(link)

    def at(seconds: float, raw: bytes) -> None:
        clock.set(T0 + int(seconds * S))
        feed.on_frame(raw, clock.now_ns())

    at(1, orjson.dumps({"channel": "subscriptions", "sequence_num": 0, "events": []}))
    at(2, l2(1, "snapshot", [("bid", "100.00", "1"), ("offer", "101.00", "2")]))
    at(3, heartbeat(2, 7))
    at(4, l2(3, "update", [("offer", "100.50", "0.5"), ("bid", "100.00", "0")]))
    book = feed.book("BTC-USD-canonical")
    assert book is not None and book.best_ask() == (D("100.50"), D("0.5")) and book.best_bid() is None
    assert changed == ["BTC-USD-canonical"] * 2 and feed.counters.book_updates == 2 and feed.heartbeats == 1
    at(5, l2(5, "update", [("bid", "99.00", "1")]))  # 4 never came
    assert feed.book("BTC-USD-canonical") is None
    assert feed.counters.integrity_failures == 1 and feed.counters.resyncs == 1
    unsub, sub = (orjson.loads(m) for m in link.sent)
    assert (unsub["type"], unsub["channel"], unsub["product_ids"]) == ("unsubscribe", "level2", ["BTC-USD"])
    assert (sub["type"], sub["channel"], sub["product_ids"]) == ("subscribe", "level2", ["BTC-USD"])
    at(6, l2(6, "snapshot", [("bid", "99.00", "3")]))
    book = feed.book("BTC-USD-canonical")
    assert book is not None and book.best_bid() == (D("99.00"), D("3"))
    at(7, l2(6, "update", [("bid", "98.00", "1")]))  # a repeated number is a break too
    assert feed.counters.integrity_failures == 2 and feed.book("BTC-USD-canonical") is None
    assert feed.counters.resyncs == 2


def test_resubscriptions_after_breaks_are_spaced() -> None:
    """If every frame looked like a break (a misread numbering), the venue must not be flooded."""
    clock = ManualClock(T0)
    feed = CoinbaseFeed("coinbase", [BTC], clock, resubscribe_min_s=1.0)
    link = NullLink()
    feed.on_open(link)

    def at(seconds: float, raw: bytes) -> None:
        clock.set(T0 + int(seconds * S))
        feed.on_frame(raw, clock.now_ns())

    at(2.0, l2(0, "snapshot", [("bid", "1.00", "1")]))
    at(2.1, heartbeat(2, 1))  # break: resubscribed at once
    at(2.3, heartbeat(5, 2))  # break again 0.2 s later: waits
    at(2.5, heartbeat(9, 3))
    assert feed.counters.integrity_failures == 3 and feed.counters.resyncs == 1 and len(link.sent) == 2
    at(3.2, heartbeat(10, 4))  # no break, but one is still due and the spacing allows it now
    assert feed.counters.resyncs == 2 and len(link.sent) == 4
    at(3.3, l2(11, "snapshot", [("bid", "1.00", "2")]))
    at(9.0, heartbeat(12, 5))
    assert feed.counters.resyncs == 2 and feed.book("BTC-USD") is not None


def test_feed_counts_garbage_and_error_frames_and_never_raises() -> None:
    feed = CoinbaseFeed("coinbase", [BTC], ManualClock(T0))
    feed.on_open(NullLink())
    for raw in (b"{", b"[]", b'{"channel": "l2_data"}', "\x00", b'{"channel":"l2_data","sequence_num":0,"events":5}'):
        feed.on_frame(raw, 1)
    assert feed.counters.malformed == 5
    feed.on_frame(orjson.dumps({"type": "error", "message": "Failed to subscribe", "reason": "bad product"}), 2)
    assert feed.errors == 1 and feed.last_error == "Failed to subscribe: bad product"
    assert feed.counters.malformed == 5 and feed.counters.integrity_failures == 0


def test_a_snapshot_that_never_comes_is_asked_for_again() -> None:
    clock = ManualClock(T0)
    feed = CoinbaseFeed("coinbase", [BTC], clock, snapshot_timeout_s=2)
    link = NullLink()
    feed.on_open(link)
    feed.on_frame(heartbeat(0, 1), T0 + 1_000_000_000)
    assert link.sent == []
    feed.on_frame(heartbeat(1, 2), T0 + 3_000_000_000)
    assert [orjson.loads(m)["type"] for m in link.sent] == ["unsubscribe", "subscribe"]


def test_resync_of_one_market_discards_only_its_book() -> None:
    eth = Listing("coinbase", "ETH-USD", "ETH-USD", D("0.01"), D("0.00000001"), D("0.00000001"), 2, 8)
    clock = ManualClock(T0)
    feed = CoinbaseFeed("coinbase", [BTC, eth], clock)
    link = NullLink()
    feed.on_open(link)
    clock.set(T0 + 2 * S)
    feed.on_frame(l2(0, "snapshot", [("bid", "1.00", "1")]), clock.now_ns())
    feed.on_frame(l2(1, "snapshot", [("bid", "2.00", "1")], "ETH-USD"), clock.now_ns())
    feed.resync("BTC-USD", "crossed book")
    assert feed.book("BTC-USD") is None and feed.book("ETH-USD") is not None
    assert [orjson.loads(m)["product_ids"] for m in link.sent] == [["BTC-USD"], ["BTC-USD"]]
    feed.on_frame(l2(2, "snapshot", [("bid", "1.00", "1")]), clock.now_ns())
    feed.resync("BTC-USD", "crossed again")  # at once: spaced, asked for by the next frame a second later
    assert len(link.sent) == 2
    clock.set(T0 + 3 * S)
    feed.on_frame(heartbeat(3, 1), clock.now_ns())
    assert len(link.sent) == 4 and feed.counters.resyncs == 2


# --- build_venue ------------------------------------------------------------------------------------


def venue_config(**real: Any) -> VenueConfig:
    rc = RealVenueConfig("ws://127.0.0.1:9", "http://127.0.0.1:9", paper_balances={"USD": D(1000)}, **real)
    return VenueConfig("coinbase", "coinbase", FeeSchedule(D("0.004"), D("0.006")), SimVenueConfig(), real=rc)


def test_build_venue_picks_the_trader_by_mode_and_keys() -> None:
    pem, _ = ec_pem()
    creds = Credentials("coinbase", {"key_name": Secret(KEY_NAME), "private_key": Secret(pem)}, "environment")
    markets = {"BTC-USD": Market("BTC-USD", "BTC", "USD")}
    clock = ManualClock(T0)
    paper = build_venue(venue_config(), [BTC], markets, clock, None, live=False, tap=None)
    assert isinstance(paper.trader, PaperTrader) and paper.mode == "paper"
    paper_fees = build_venue(venue_config(), [BTC], markets, clock, creds, live=False, tap=None)
    assert isinstance(paper_fees.trader, PaperWithLiveFees)
    no_fees = build_venue(venue_config(live_fees=False), [BTC], markets, clock, creds, live=False, tap=None)
    assert isinstance(no_fees.trader, PaperTrader)
    live = build_venue(venue_config(), [BTC], markets, clock, creds, live=True, tap=None)
    assert isinstance(live.trader, CoinbaseTrader) and live.mode == "live"
    with pytest.raises(SecretsError):
        build_venue(venue_config(), [BTC], markets, clock, None, live=True, tap=None)
    assert paper.fees("BTC-USD") == FeeSchedule(D("0.004"), D("0.006"))


async def test_an_unstarted_trader_fails_retryably() -> None:
    pem, _ = ec_pem()
    t = CoinbaseTrader("coinbase", "http://127.0.0.1:9", [BTC], signer_for(pem), ManualClock(T0))
    with pytest.raises(VenueError) as info:
        await t.balances()
    assert info.value.retryable
    await asyncio.sleep(0)
