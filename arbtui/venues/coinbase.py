"""Coinbase Advanced Trade: the ``level2`` book feed, the REST trader, JWT auth, and ``build_venue``.

Everything Coinbase-specific lives here (and the level2 parser in :mod:`arbtui.venues.coinbase_book`).
Sources are docs.cdp.coinbase.com and the official client ``coinbase/coinbase-advanced-py``; what could
not be checked against the real venue is listed in ``docs/venues/coinbase.md`` and marked *unverified*
below.

Feed (:class:`CoinbaseFeed`)
    One subscribe message per channel (``level2`` with every product, then ``heartbeats``), sent as
    soon as the socket opens (Coinbase closes a socket that has not subscribed within 5 s). With
    credentials each carries a fresh JWT *without* ``uri`` (a JWT lives 2 minutes, so one per
    message). ``level2`` frames arrive on channel ``l2_data``; ``"offer"`` is the ask side; sizes
    are absolute; a snapshot replaces the book. The envelope ``sequence_num`` counts every message
    of the connection, so anything but ``previous + 1`` discards every book and resubscribes
    (``unsubscribe`` then ``subscribe``: whether a second ``subscribe`` on a live subscription
    yields a new snapshot is unverified, so the feed never relies on it). A product still waiting
    for its snapshot after ``snapshot_timeout_s`` is resubscribed again. Resubscriptions after breaks
    are spaced by at least ``resubscribe_min_s``, so a misread numbering cannot flood the venue.

Trader (:class:`CoinbaseTrader`)
    ``POST /api/v3/brokerage/orders`` with ``sor_limit_ioc`` (IOC), ``limit_limit_gtc`` (GTC) or
    ``limit_limit_fok`` (FOK); ``client_order_id`` is ours; ``base_size`` and ``limit_price`` are
    strings at the listing's precision. The create reply only says whether the order was accepted,
    so the trader then reads the order (``GET /orders/historical/{order_id}``; an IOC/FOK is read
    until it is final, a few times with backoff) and its fills (``GET /orders/historical/fills``).
    Cancel is ``POST /orders/batch_cancel`` with one id, trusting ``success`` and never
    ``failure_reason`` (``UNKNOWN_CANCEL_FAILURE_REASON`` is the enum default and shows on
    successful cancels too).

    Lookup by client order id: Advanced Trade has no current endpoint keyed by client order id (the
    ``client_order_id`` query parameter of Get Order is documented as *deprecated*, and it still
    needs the order id in the path). The trader therefore remembers the order id from each create
    reply, and when a reply was lost it relies on the documented List Orders endpoint
    (``GET /orders/historical/batch`` with ``product_ids``, ``start_date``, ``limit`` and ``cursor``)
    and the ``client_order_id`` field of each order it returns. An order not found there is
    :class:`~arbtui.venues.base.UnknownOrder`; how quickly a new order appears in that list is
    unverified (the engine asks again with backoff).

Errors
    A refusal (``success: false`` with ``error_response``, or a 4xx answer to a create) is a
    REJECTED report carrying the venue's words (passed through :func:`redact`). Transport errors,
    timeouts, 5xx and 429 raise ``VenueError(retryable=True)``: the order's fate is then asked with
    ``order_status``, never assumed. 401/403 outside a create raise a non-retryable ``VenueError``.

Rate limits
    Each private request takes one unit of a :class:`~arbtui.venues.ratelimit.RateBudget` of
    ``rate_per_s`` per second (conservative: Coinbase's published private limit is higher). The
    ``x-ratelimit-limit`` / ``x-ratelimit-remaining`` response headers (coinbase-advanced-py's names;
    their exact semantics are unverified) lower the local budget when the venue says less is left; a
    429 empties it.

Auth (:class:`CoinbaseSigner`)
    As coinbase-advanced-py's ``coinbase/jwt_generator.py``: header ``{alg, kid: key name, nonce: random
    hex, typ: "JWT"}``, claims ``{sub: key name, iss: "cdp", nbf: now, exp: now + 120, uri: "<METHOD>
    <host><path>"}`` (no ``uri`` for the WebSocket), ES256 for an EC P-256 PEM, EdDSA for an Ed25519
    PEM or the base64 of a 32-byte seed (or 64-byte seed + public key). ``host`` is the REST URL's host:
    ``api.coinbase.com`` live, ``127.0.0.1:PORT`` against the loopback server. A fresh token for every
    request; the one for the next order create is minted ahead (at start, after each order has gone out,
    and again while it waits once it is ORDER_JWT_REFRESH_S old), so no signing sits between confirm and
    the wire.

Warm connection
    Live, the trader's REST connection is used at least every KEEP_WARM_S (``GET /time``, the public
    server time, when nothing else went out), and idle connections are kept a minute: an order
    after a quiet spell does not wait for a TCP and TLS handshake.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from arbtui.config import VenueConfig
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import Clock
from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.orders import Fill, Liquidity, OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.coinbase_book import CoinbaseBooks
from arbtui.venues.connection import FeedCounters, FeedLink, SupervisorConfig, Tap
from arbtui.venues.live import LiveVenue, PaperTrader, PaperWithLiveFees, Trader
from arbtui.venues.ratelimit import BudgetView, RateBudget
from arbtui.venues.secrets import CredentialError, Credentials, Secret, SecretsError, is_token, redact
from arbtui.venues.wire import MalformedFrame, decimal_string

log = logging.getLogger(__name__)

NS = 1_000_000_000
ZERO = Decimal(0)
JWT_LIFETIME_S = 120
# The order-create JWT is minted ahead of time (it is on the path from confirm to the wire): used at
# most ORDER_JWT_MAX_AGE_S after its nbf (it stays valid for JWT_LIFETIME_S), replaced once it is
# ORDER_JWT_REFRESH_S old, and every token is still used for one request only.
ORDER_JWT_MAX_AGE_S = 60
ORDER_JWT_REFRESH_S = 20
KEEP_WARM_S = 10  # a quiet REST connection is used (GET /time) this often, so an order finds it open
ISSUER = "cdp"

API = "/api/v3/brokerage"
ORDERS_PATH = f"{API}/orders"
BATCH_CANCEL_PATH = f"{API}/orders/batch_cancel"
LIST_ORDERS_PATH = f"{API}/orders/historical/batch"
FILLS_PATH = f"{API}/orders/historical/fills"
ORDER_PATH = f"{API}/orders/historical/"  # + order id
ACCOUNTS_PATH = f"{API}/accounts"
FEES_PATH = f"{API}/transaction_summary"
TIME_PATH = f"{API}/time"  # public "Get Server Time": keeps the connection warm

#: The ``order_configuration`` key for each time in force (coinbase-advanced-py, tests/rest/test_orders.py:
#: limit IOC is ``sor_limit_ioc``).
ORDER_CONFIGURATION: dict[TimeInForce, str] = {
    TimeInForce.IOC: "sor_limit_ioc",
    TimeInForce.GTC: "limit_limit_gtc",
    TimeInForce.FOK: "limit_limit_fok",
}
_TIF_OF_CONFIGURATION = {v: k for k, v in ORDER_CONFIGURATION.items()}
_TIF_OF_WIRE = {
    "IMMEDIATE_OR_CANCEL": TimeInForce.IOC,
    "FILL_OR_KILL": TimeInForce.FOK,
    "GOOD_UNTIL_CANCELLED": TimeInForce.GTC,
}
# Order statuses of Advanced Trade (orders_types.py): PENDING, OPEN, FILLED, CANCELLED, EXPIRED, FAILED,
# UNKNOWN_ORDER_STATUS, QUEUED, CANCEL_QUEUED (and EDIT_QUEUED). Anything not final stays live to us.
_FINAL_WIRE = frozenset({"FILLED", "CANCELLED", "EXPIRED", "FAILED"})
_NO_REASON = frozenset({"", "REJECT_REASON_UNSPECIFIED", "UNKNOWN_FAILURE_REASON"})


# ------------------------------------------------------------------------------------------------
# JWT
# ------------------------------------------------------------------------------------------------

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def load_private_key(text: str) -> tuple[PrivateKey, str]:
    """The signing key and its JWT algorithm from a Coinbase ``private_key`` credential.

    Accepts an EC P-256 PEM (SEC1 or PKCS8; ES256), an Ed25519 PKCS8 PEM (EdDSA), or the base64 of a
    32-byte Ed25519 seed or a 64-byte seed + public key (EdDSA). A PEM pasted into an environment
    variable with literal ``\\n`` is accepted. Errors never include the key.
    """
    text = text.strip()
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_private_key(text.replace("\\n", "\n").encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise SecretsError("coinbase private_key: not a readable unencrypted PEM private key") from None
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise SecretsError(f"coinbase private_key: EC key on {key.curve.name}, expected P-256 (secp256r1)")
            return key, "ES256"
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key, "EdDSA"
        raise SecretsError("coinbase private_key: expected an EC P-256 or an Ed25519 key")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretsError("coinbase private_key: neither a PEM key nor base64 of an Ed25519 key") from None
    if len(raw) not in (32, 64):
        raise SecretsError(f"coinbase private_key: base64 of {len(raw)} bytes, expected an Ed25519 seed (32 or 64)")
    seed = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and seed.public_key().public_bytes_raw() != raw[32:]:
        raise SecretsError("coinbase private_key: the 64-byte Ed25519 key's public half does not match its seed")
    return seed, "EdDSA"


def check_credentials(credentials: Credentials) -> None:
    """Refuse, before anything connects, keys that cannot be Coinbase's (:class:`CredentialError`
    naming the field, never the value): ``key_name`` is a JWT claim as it is, and ``private_key``
    must be a key :func:`load_private_key` reads (a PEM EC P-256 or Ed25519 key, or Ed25519 base64)."""
    name = credentials.get("key_name")
    if name is not None and not is_token(name.reveal()):
        raise CredentialError("key_name", 'expected the key name, e.g. "organizations/.../apiKeys/..." (one line)')
    key = credentials.get("private_key")
    if key is not None:
        try:
            load_private_key(key.reveal())
        except SecretsError as exc:
            raise CredentialError("private_key", str(exc).removeprefix("coinbase private_key: ")) from None


class CoinbaseSigner:
    """Builds a fresh Coinbase JWT per request (see the module docstring, "Auth").

    The key is parsed from its :class:`Secret` once, by the constructor (a bad key fails early), and
    kept as the ``cryptography`` key object, never as text: parsing the PEM again for every
    signature cost ~50 us on the order path.
    """

    __slots__ = ("_key_name", "_key", "_clock", "alg")

    def __init__(self, key_name: Secret, private_key: Secret, clock: Clock) -> None:
        self._key_name = key_name
        self._key, self.alg = load_private_key(private_key.reveal())
        self._clock = clock

    @classmethod
    def from_credentials(cls, credentials: Credentials | None, clock: Clock) -> CoinbaseSigner | None:
        """A signer if ``credentials`` has ``key_name`` and ``private_key``, else None."""
        if credentials is None or not credentials.complete("coinbase"):
            return None
        try:
            return cls(credentials.require("key_name"), credentials.require("private_key"), clock)
        except SecretsError as exc:
            raise SecretsError(f"{credentials.venue}: {exc}") from None

    def token(self, method: str | None = None, host: str | None = None, path: str | None = None) -> str:
        """A JWT for ``"<method> <host><path>"`` (REST), or without ``uri`` (WebSocket) when ``method`` is None."""
        name = self._key_name.reveal()
        now = self._clock.now_ns() // NS
        claims: dict[str, Any] = {"sub": name, "iss": ISSUER, "nbf": now, "exp": now + JWT_LIFETIME_S}
        if method is not None:
            claims["uri"] = f"{method} {host}{path}"
        headers = {"kid": name, "nonce": secrets.token_hex(), "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)

    def __repr__(self) -> str:
        return f"CoinbaseSigner(alg={self.alg!r}, key='***')"


# ------------------------------------------------------------------------------------------------
# Feed
# ------------------------------------------------------------------------------------------------


class CoinbaseFeed:
    """Coinbase ``level2`` + ``heartbeats`` over one WebSocket. Implements :class:`arbtui.venues.live.BookFeed`.

    Books are keyed by canonical market (``Listing.market``); the venue's product ids stay inside.
    Extra counters: ``heartbeats``, ``heartbeat_gaps`` (a skipped ``heartbeat_counter``), ``errors``
    (the venue's error frames, last one in ``last_error``).
    """

    def __init__(
        self,
        venue: str,
        listings: Sequence[Listing],
        clock: Clock,
        signer: CoinbaseSigner | None = None,
        *,
        snapshot_timeout_s: float = 10.0,
        resubscribe_min_s: float = 1.0,
    ) -> None:
        self.venue = venue
        self.counters = FeedCounters()
        self.heartbeats = 0
        self.heartbeat_gaps = 0
        self.errors = 0
        self.last_error: str | None = None
        self._clock = clock
        self._signer = signer
        self._market_of = {lst.symbol: lst.market for lst in listings}
        self._symbol_of = {lst.market: lst.symbol for lst in listings}
        self._products = sorted(self._market_of)
        self._books = CoinbaseBooks(products=set(self._products))
        self._link: FeedLink | None = None
        self._on_change: Callable[[str], None] = _ignore
        self._last_heartbeat: int | None = None
        self._snapshot_timeout_ns = int(snapshot_timeout_s * NS)
        self._asked_ns = 0  # when the products still waiting for a snapshot were last (re)subscribed
        self._resubscribe_min_ns = int(resubscribe_min_s * NS)
        self._break_pending = False  # a sequence break whose resubscription is still due

    # --- BookFeed ------------------------------------------------------------------------------
    def set_on_change(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change

    def book(self, market: str) -> OrderBook | None:
        symbol = self._symbol_of.get(market)
        return self._books.books.get(symbol) if symbol is not None else None

    def resync(self, market: str, reason: str) -> None:
        symbol = self._symbol_of.get(market)
        if symbol is None:
            return
        log.info("%s: resyncing %s: %s", self.venue, market, reason)
        self._books.discard(symbol)
        if self._clock.now_ns() - self._asked_ns >= self._resubscribe_min_ns:
            self._resubscribe([symbol])
        else:
            self._break_pending = True  # the next frame resubscribes it, once the spacing allows

    def on_open(self, link: FeedLink) -> list[str]:
        self._link = link
        self._books.reset_connection()
        self._last_heartbeat = None
        self._break_pending = False
        self._asked_ns = self._clock.now_ns()
        return [
            self.subscribe_message("subscribe", "level2", self._products),
            self.subscribe_message("subscribe", "heartbeats", None),
        ]

    def on_close(self) -> None:
        self._link = None
        self._books.reset_connection()

    def on_frame(self, raw: str | bytes, ts_ns: int) -> None:
        try:
            self._on_frame(raw, ts_ns)
        except Exception as exc:  # noqa: BLE001 - a frame must never take the feed down
            self.counters.malformed += 1
            log.warning("%s: frame handling failed: %s: %s", self.venue, type(exc).__name__, redact(str(exc)))

    # --- internals -----------------------------------------------------------------------------
    def subscribe_message(self, kind: str, channel: str, products: Sequence[str] | None) -> str:
        """One (un)subscribe message; with a signer it carries a fresh JWT without ``uri``."""
        msg: dict[str, Any] = {"type": kind}
        if products is not None:
            msg["product_ids"] = list(products)
        msg["channel"] = channel
        if self._signer is not None:
            msg["jwt"] = self._signer.token()
        return orjson.dumps(msg).decode()

    def _resubscribe(self, products: Sequence[str]) -> None:
        self.counters.resyncs += 1
        self._asked_ns = self._clock.now_ns()
        if self._link is None:
            return  # the next connection subscribes to everything anyway
        self._link.send(self.subscribe_message("unsubscribe", "level2", products))
        self._link.send(self.subscribe_message("subscribe", "level2", products))

    def _on_frame(self, raw: str | bytes, ts_ns: int) -> None:
        books = self._books
        changed = books.on_raw(raw, ts_ns)
        env = books.last
        if env is None:
            self.counters.malformed += 1
            return
        if books.gap:
            self.counters.integrity_failures += 1
            if not self._break_pending:  # one line per resubscription, not one per frame
                log.warning("%s: sequence_num break at %s: books discarded", self.venue, env.sequence)
            self._break_pending = True
        if env.channel == "heartbeats":
            self.heartbeats += 1
            counter = env.heartbeat_counter
            if counter is not None:
                if self._last_heartbeat is not None and counter != self._last_heartbeat + 1:
                    self.heartbeat_gaps += 1
                self._last_heartbeat = counter
        elif env.channel == "error":
            self.errors += 1
            self.last_error = redact(env.error or "error")
            log.warning("%s: venue error frame: %s", self.venue, self.last_error)
        for product in changed:
            self.counters.book_updates += 1
            self._on_change(self._market_of[product])
        if not books.needs_resync:
            self._break_pending = False
            return
        since = ts_ns - self._asked_ns
        # After a break, resubscribe at once, but at most once per ``resubscribe_min_s``: if the venue's
        # numbering is not what this module assumes, every frame would look like a break, and the feed
        # must then sit without books (counted, logged) rather than flood the venue. A snapshot asked
        # for that never came (lost with a dropped frame, or refused) is asked for again.
        if (self._break_pending and since >= self._resubscribe_min_ns) or since > self._snapshot_timeout_ns:
            self._break_pending = False
            self._resubscribe(sorted(books.needs_resync))


def _ignore(_market: str) -> None:
    return None


# ------------------------------------------------------------------------------------------------
# Wire helpers
# ------------------------------------------------------------------------------------------------


def order_body(request: OrderRequest, listing: Listing) -> dict[str, Any]:
    """The ``POST /orders`` body for ``request`` (the shapes coinbase-advanced-py's
    tests/rest/test_orders.py asserts). Raises ValueError for a value the listing's precision cannot
    carry (never rounded on its way out)."""
    config: dict[str, Any] = {
        "base_size": listing.qty_to_wire(request.quantity),
        "limit_price": listing.price_to_wire(request.limit_price),
    }
    if request.time_in_force is TimeInForce.GTC:
        config["post_only"] = False
    return {
        "client_order_id": request.client_order_id,
        "product_id": listing.symbol,
        "side": "BUY" if request.side is Side.BUY else "SELL",
        "order_configuration": {ORDER_CONFIGURATION[request.time_in_force]: config},
    }


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def rfc3339_ns(text: object) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time with up to 9 fractional digits (None if unreadable)."""
    if not isinstance(text, str):
        return None
    m = _RFC3339.match(text.strip())
    if m is None:
        return None
    day, clock, frac, zone = m.groups()
    try:
        base = datetime.fromisoformat(f"{day}T{clock}{'+00:00' if zone in (None, 'Z') else zone}")
    except ValueError:
        return None
    return int(base.timestamp()) * NS + int((frac or "0")[:9].ljust(9, "0"))


def rfc3339(ts_ns: int) -> str:
    seconds = ts_ns // NS
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dec(value: Any, what: str) -> Decimal:
    try:
        return decimal_string(value, what)
    except MalformedFrame as exc:
        raise ValueError(str(exc)) from None


def _dec_or_zero(value: Any, what: str) -> Decimal:
    return ZERO if value in (None, "") else _dec(value, what)


def order_status_of(wire_status: str, tif: TimeInForce, filled: Decimal) -> OrderStatus:
    """Our status for a Coinbase order status (IOC/FOK remainders are EXPIRED whatever the venue calls them)."""
    if wire_status == "FILLED":
        return OrderStatus.FILLED
    if wire_status in ("CANCELLED", "EXPIRED"):
        if tif is not TimeInForce.GTC:
            return OrderStatus.EXPIRED
        return OrderStatus.CANCELLED if wire_status == "CANCELLED" else OrderStatus.EXPIRED
    if wire_status == "FAILED":
        return OrderStatus.REJECTED if filled == 0 else OrderStatus.CANCELLED
    return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN


def report_from_order(
    order: Mapping[str, Any], venue: str, request: OrderRequest | None, fills: Sequence[Fill], ts_ns: int
) -> OrderReport:
    """An :class:`OrderReport` from a ``GET /orders/historical/{id}`` ``order`` object. Raises ValueError
    if a field it needs is missing or unreadable."""
    cfg = order.get("order_configuration")
    cfg_name, cfg_body = next(iter(cfg.items())) if isinstance(cfg, dict) and cfg else ("", {})
    if request is not None:
        tif, quantity, cid = request.time_in_force, request.quantity, request.client_order_id
    else:
        wire_tif = order.get("time_in_force")
        tif = _TIF_OF_CONFIGURATION.get(cfg_name) or _TIF_OF_WIRE.get(str(wire_tif), TimeInForce.GTC)
        quantity = _dec(cfg_body.get("base_size") if isinstance(cfg_body, dict) else None, "base_size")
        cid = str(order.get("client_order_id", ""))
    wire_status = order.get("status")
    if not isinstance(wire_status, str):
        raise ValueError("order without a status")
    order_id = order.get("order_id")
    filled = _dec_or_zero(order.get("filled_size"), "filled_size")
    avg = _dec_or_zero(order.get("average_filled_price"), "average_filled_price")
    fee = _dec_or_zero(order.get("total_fees"), "total_fees")
    status = order_status_of(wire_status, tif, filled)
    reason: str | None = None
    if status is OrderStatus.REJECTED:
        reason = _first_text(order, "reject_message", "reject_reason") or "rejected"
    elif status is OrderStatus.EXPIRED:
        default = "FOK could not fill" if tif is TimeInForce.FOK else "IOC remainder expired"
        reason = _first_text(order, "cancel_message") or default
    elif status is OrderStatus.CANCELLED:
        reason = _first_text(order, "cancel_message") or "cancelled"
    return OrderReport(
        client_order_id=cid,
        venue=venue,
        venue_order_id=order_id if isinstance(order_id, str) and order_id else None,
        status=status,
        quantity=quantity,
        filled_quantity=filled,
        average_price=avg if filled > 0 and avg > 0 else None,
        fee=fee,
        ts_ns=ts_ns,
        reason=redact(reason) if reason else None,
        fills=tuple(fills),
    )


def _first_text(obj: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value not in _NO_REASON:
            return value
    return None


def fill_from_wire(fill: Mapping[str, Any], client_order_id: str, now_ns: int) -> Fill:
    liquidity = Liquidity.MAKER if fill.get("liquidity_indicator") == "MAKER" else Liquidity.TAKER
    return Fill(
        client_order_id,
        _dec(fill.get("size"), "size"),
        _dec(fill.get("price"), "price"),
        _dec_or_zero(fill.get("commission"), "commission"),
        liquidity,
        rfc3339_ns(fill.get("trade_time")) or now_ns,
    )


def refusal_reason(payload: Any, status: int) -> str:
    """The venue's words for a refusal: ``error_response`` of a create, or an error body."""
    if isinstance(payload, dict):
        er = payload.get("error_response")
        src = er if isinstance(er, dict) else payload
        parts = [
            str(src[k])
            for k in ("error", "message", "error_details", "new_order_failure_reason", "preview_failure_reason")
            if isinstance(src.get(k), str) and src[k] and src[k] not in _NO_REASON
        ]
        seen: list[str] = []
        for p in parts:
            if p not in seen:
                seen.append(p)
        if seen:
            return redact(": ".join(seen))[:300]
    if isinstance(payload, str) and payload.strip():
        return redact(f"HTTP {status}: {payload.strip()}")[:300]
    return f"HTTP {status}"


# ------------------------------------------------------------------------------------------------
# Trader
# ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Placed:
    request: OrderRequest | None  # None for an order found by lookup that this process did not send
    order_id: str | None  # None until the create reply (or a lookup) says it
    sent_ns: int


class CoinbaseTrader:
    """Order entry over Advanced Trade REST (module docstring). Implements :class:`arbtui.venues.live.Trader`."""

    accounts_page_size = 250
    orders_page_size = 100
    lookup_pages = 10  # List Orders pages searched for a client order id
    lookup_window_s = 300  # how far before sending an order the lookup starts
    final_polls = 6  # reads of an IOC/FOK (or a cancelled order) until it is final
    poll_base_s = 0.02

    def __init__(
        self,
        venue: str,
        rest_url: str,
        listings: Sequence[Listing],
        signer: CoinbaseSigner,
        clock: Clock,
        *,
        rate_per_s: Decimal = Decimal(5),
        request_timeout_s: float = 10.0,
        keep_warm: bool = True,
    ) -> None:
        self._venue = venue
        self._base = rest_url.rstrip("/")
        self._host = urlsplit(self._base).netloc
        self._listings = {lst.market: lst for lst in listings}
        self._by_symbol = {lst.symbol: lst for lst in listings}
        self._signer = signer
        self._clock = clock
        rate = float(rate_per_s)  # float ok: a request budget, not money
        self._budget = RateBudget(f"{venue} private REST", rate, rate, clock)
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._orders: dict[str, _Placed] = {}
        self._order_jwt: tuple[str, int] | None = None  # (a JWT for POST /orders, minted at) not used yet
        self._order_jwt_keeper: asyncio.Task[None] | None = None
        self._keep_warm = keep_warm
        self._last_reply_ns = 0
        self.requests = 0

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is None:
            # Idle connections are kept a minute (aiohttp's default is 15 s) and used every
            # KEEP_WARM_S of quiet (_keep_ready): an order never waits for a TCP and TLS handshake.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(keepalive_timeout=60)
            )
        if self._order_jwt_keeper is None:
            self._order_jwt = self._mint_order_jwt()
            self._order_jwt_keeper = asyncio.get_running_loop().create_task(
                self._keep_ready(), name=f"{self._venue}-keep-ready"
            )
            self._order_jwt_keeper.add_done_callback(_log_keeper_failure)

    async def close(self) -> None:
        keeper, self._order_jwt_keeper = self._order_jwt_keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def on_book(self, market: str, book: OrderBook) -> None:
        return None  # live orders are filled by the venue

    def budgets(self) -> list[BudgetView]:
        return [self._budget.view()]

    # --- orders --------------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> OrderReport:
        cid = request.client_order_id
        if cid in self._orders:
            # Never send one client order id twice: a repeat asks what became of the first (whether
            # Coinbase de-duplicates client order ids is unverified). Not found means never received.
            try:
                return await self.order_status(cid)
            except UnknownOrder:
                pass
        listing = self._listings.get(request.market)
        if listing is None:
            return self._rejected(request, f"no {self._venue} listing for {request.market}")
        try:
            body = order_body(request, listing)
        except ValueError as exc:
            return self._rejected(request, str(exc))
        placed = self._orders[cid] = _Placed(request, None, self._clock.now_ns())
        try:
            status, payload = await self._call("POST", ORDERS_PATH, body=body, token=self._take_order_jwt())
        finally:
            if self._order_jwt is None:
                self._order_jwt = self._mint_order_jwt()  # for the next order, now that this one is out
        if status != 200:
            if 400 <= status < 500 and status != 408:
                return self._rejected(request, refusal_reason(payload, status))
            raise VenueError(self._venue, f"create order: unexpected HTTP {status}", retryable=True)
        if not isinstance(payload, dict):
            raise VenueError(self._venue, "create order: unreadable reply", retryable=True)
        if payload.get("success") is not True:
            return self._rejected(request, refusal_reason(payload, status))
        sr = payload.get("success_response")
        order_id = sr.get("order_id") if isinstance(sr, dict) else payload.get("order_id")
        if not isinstance(order_id, str) or not order_id:
            raise VenueError(self._venue, "create order: accepted without an order_id", retryable=True)
        placed.order_id = order_id
        return await self._report(cid, placed, wait_final=request.time_in_force is not TimeInForce.GTC)

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        placed = await self._resolve(client_order_id)
        assert placed.order_id is not None
        status, payload = await self._call("POST", BATCH_CANCEL_PATH, body={"order_ids": [placed.order_id]})
        self._expect_ok(status, payload, "cancel")
        results = payload.get("results") if isinstance(payload, dict) else None
        entry: Any = None
        if isinstance(results, list):
            entry = next((r for r in results if isinstance(r, dict) and r.get("order_id") == placed.order_id), None)
            if entry is None and len(results) == 1:
                entry = results[0]
        if not isinstance(entry, dict):
            raise VenueError(self._venue, "cancel: reply without a result for the order", retryable=True)
        accepted = entry.get("success") is True  # never failure_reason: it is set on successes too
        if not accepted:
            log.info("%s: cancel of %s refused: %s", self._venue, client_order_id, entry.get("failure_reason"))
        return await self._report(client_order_id, placed, wait_final=accepted)

    async def order_status(self, client_order_id: str) -> OrderReport:
        placed = await self._resolve(client_order_id)
        return await self._report(client_order_id, placed, wait_final=False)

    async def balances(self) -> Mapping[str, Decimal]:
        free: dict[str, Decimal] = {}
        cursor: str | None = None
        for _ in range(100):
            params = [("limit", str(self.accounts_page_size))]
            if cursor:
                params.append(("cursor", cursor))
            status, payload = await self._call("GET", ACCOUNTS_PATH, params=params)
            self._expect_ok(status, payload, "accounts")
            accounts = payload.get("accounts")
            if not isinstance(accounts, list):
                raise VenueError(self._venue, "accounts: reply without accounts", retryable=True)
            try:
                for account in accounts:
                    currency = account["currency"]
                    value = _dec(account["available_balance"]["value"], "available_balance")
                    free[currency] = free.get(currency, ZERO) + value
            except (KeyError, TypeError, ValueError) as exc:
                raise VenueError(self._venue, f"accounts: unreadable account ({exc})", retryable=True) from None
            cursor = payload.get("cursor") if isinstance(payload.get("cursor"), str) else None
            if payload.get("has_next") is not True or not cursor:
                break
        return free

    async def live_fees(self) -> Mapping[str, FeeSchedule]:
        status, payload = await self._call("GET", FEES_PATH, params=[("product_type", "SPOT")])
        self._expect_ok(status, payload, "transaction_summary")
        tier = payload.get("fee_tier")
        try:
            maker = _dec(tier["maker_fee_rate"], "maker_fee_rate")
            taker = _dec(tier["taker_fee_rate"], "taker_fee_rate")
        except (KeyError, TypeError, ValueError) as exc:
            raise VenueError(self._venue, f"transaction_summary: no fee tier ({exc})", retryable=True) from None
        if not (maker < 1 and taker < 1):
            raise VenueError(self._venue, f"transaction_summary: impossible fee rates {maker} / {taker}")
        schedule = FeeSchedule(maker, taker, FeeModel.NOTIONAL)
        return {market: schedule for market in self._listings}

    # --- internals -----------------------------------------------------------------------------
    def _rejected(self, request: OrderRequest, reason: str) -> OrderReport:
        return OrderReport(
            client_order_id=request.client_order_id,
            venue=self._venue,
            venue_order_id=None,
            status=OrderStatus.REJECTED,
            quantity=request.quantity,
            filled_quantity=ZERO,
            average_price=None,
            fee=ZERO,
            ts_ns=self._clock.now_ns(),
            reason=redact(reason),
        )

    async def _resolve(self, client_order_id: str) -> _Placed:
        placed = self._orders.get(client_order_id)
        if placed is not None and placed.order_id is not None:
            return placed
        order_id = await self._find_order_id(client_order_id, placed)
        if order_id is None:
            raise UnknownOrder(self._venue, f"no order with client order id {client_order_id}")
        if placed is None:
            placed = self._orders[client_order_id] = _Placed(None, order_id, 0)
        placed.order_id = order_id
        return placed

    async def _find_order_id(self, client_order_id: str, placed: _Placed | None) -> str | None:
        """Search List Orders for ``client_order_id`` (the order's reply was lost, or it is not ours)."""
        base: list[tuple[str, str]] = [("limit", str(self.orders_page_size))]
        if placed is not None and placed.request is not None:
            listing = self._listings.get(placed.request.market)
            if listing is not None:
                base.append(("product_ids", listing.symbol))
            base.append(("start_date", rfc3339(placed.sent_ns - self.lookup_window_s * NS)))
        cursor: str | None = None
        for _ in range(self.lookup_pages):
            params = base + ([("cursor", cursor)] if cursor else [])
            status, payload = await self._call("GET", LIST_ORDERS_PATH, params=params)
            self._expect_ok(status, payload, "list orders")
            orders = payload.get("orders")
            if not isinstance(orders, list):
                raise VenueError(self._venue, "list orders: reply without orders", retryable=True)
            for order in orders:
                if isinstance(order, dict) and order.get("client_order_id") == client_order_id:
                    order_id = order.get("order_id")
                    if isinstance(order_id, str) and order_id:
                        return order_id
            cursor = payload.get("cursor") if isinstance(payload.get("cursor"), str) else None
            if payload.get("has_next") is not True or not cursor:
                return None
        return None

    async def _report(self, client_order_id: str, placed: _Placed, *, wait_final: bool) -> OrderReport:
        assert placed.order_id is not None
        polls = self.final_polls if wait_final else 1
        order: Mapping[str, Any] = {}
        report: OrderReport | None = None
        for attempt in range(polls):
            order = await self._get_order(placed.order_id)
            report = self._build(order, placed, client_order_id, ())
            if report.status.is_final or attempt == polls - 1:
                break
            await self._clock.sleep(int(self.poll_base_s * (2**attempt) * NS))
        assert report is not None
        if report.filled_quantity > 0:
            fills = await self._fills(placed.order_id, client_order_id)
            report = dataclasses.replace(report, fills=tuple(fills))
        return report

    def _build(
        self, order: Mapping[str, Any], placed: _Placed, client_order_id: str, fills: Sequence[Fill]
    ) -> OrderReport:
        try:
            report = report_from_order(order, self._venue, placed.request, fills, self._clock.now_ns())
        except (ValueError, TypeError, AttributeError) as exc:
            raise VenueError(self._venue, f"unreadable order {placed.order_id}: {exc}", retryable=True) from None
        if report.client_order_id != client_order_id:
            report = dataclasses.replace(report, client_order_id=client_order_id)
        return report

    async def _get_order(self, order_id: str) -> Mapping[str, Any]:
        status, payload = await self._call("GET", ORDER_PATH + order_id)
        if status == 404:
            raise UnknownOrder(self._venue, f"no order {order_id}: {refusal_reason(payload, status)}")
        self._expect_ok(status, payload, "get order")
        order = payload.get("order")
        if not isinstance(order, dict):
            raise VenueError(self._venue, "get order: reply without an order", retryable=True)
        return order

    async def _fills(self, order_id: str, client_order_id: str) -> list[Fill]:
        out: list[tuple[int, str, Fill]] = []
        cursor: str | None = None
        now = self._clock.now_ns()
        for _ in range(20):
            params = [("order_ids", order_id), ("limit", "100")] + ([("cursor", cursor)] if cursor else [])
            status, payload = await self._call("GET", FILLS_PATH, params=params)
            self._expect_ok(status, payload, "fills")
            fills = payload.get("fills")
            if not isinstance(fills, list):
                raise VenueError(self._venue, "fills: reply without fills", retryable=True)
            try:
                for f in fills:
                    if f.get("order_id") not in (None, order_id):
                        continue
                    fill = fill_from_wire(f, client_order_id, now)
                    out.append((fill.ts_ns, str(f.get("trade_id", "")), fill))
            except (ValueError, TypeError, AttributeError) as exc:
                raise VenueError(self._venue, f"fills: unreadable fill ({exc})", retryable=True) from None
            cursor = payload.get("cursor") if isinstance(payload.get("cursor"), str) else None
            if not cursor:
                break
        out.sort(key=lambda t: (t[0], t[1]))  # a stable order: reports only ever append fills
        return [f for _, _, f in out]

    def _expect_ok(self, status: int, payload: Any, what: str) -> None:
        if status in (401, 403):
            raise VenueError(self._venue, f"{what}: authentication refused ({refusal_reason(payload, status)})")
        if status != 200:
            raise VenueError(
                self._venue, f"{what}: HTTP {status}: {refusal_reason(payload, status)}", retryable=status == 408
            )
        if not isinstance(payload, dict):
            raise VenueError(self._venue, f"{what}: unreadable reply", retryable=True)

    def _mint_order_jwt(self) -> tuple[str, int]:
        return self._signer.token("POST", self._host, ORDERS_PATH), self._clock.now_ns()

    def _take_order_jwt(self) -> str:
        """The pre-minted order JWT if it is fresh enough (each is used once), else a new one."""
        spare, self._order_jwt = self._order_jwt, None
        if spare is not None and self._clock.now_ns() - spare[1] < ORDER_JWT_MAX_AGE_S * NS:
            return spare[0]
        return self._signer.token("POST", self._host, ORDERS_PATH)

    async def _keep_ready(self) -> None:
        """While no order is sent (opportunities can be minutes apart), keep a fresh order JWT and
        a warm connection: the public server time, asked whenever the REST client was quiet for
        KEEP_WARM_S (signed anyway: a JWT is harmless there, and the loopback checks every one)."""
        while True:
            await self._clock.sleep(KEEP_WARM_S * NS)
            spare = self._order_jwt
            if spare is None or self._clock.now_ns() - spare[1] >= ORDER_JWT_REFRESH_S * NS:
                self._order_jwt = self._mint_order_jwt()
            session = self._session
            if not self._keep_warm or session is None or self._clock.now_ns() - self._last_reply_ns < KEEP_WARM_S * NS:
                continue
            token = self._signer.token("GET", self._host, TIME_PATH)
            try:
                async with session.get(self._base + TIME_PATH, headers={"Authorization": f"Bearer {token}"}) as resp:
                    await resp.read()
                self._last_reply_ns = self._clock.now_ns()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("%s: keep-warm request failed: %s", self._venue, exc)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        """One signed request: (status, parsed JSON or text). 429, 5xx and transport errors raise retryable.

        ``token``: a JWT minted ahead for exactly this request (else one is minted here)."""
        session = self._session
        if session is None:
            raise VenueError(self._venue, "the REST client is not started", retryable=True)
        await self._budget.acquire()
        headers = {
            "Authorization": f"Bearer {token or self._signer.token(method, self._host, path)}",
            "Accept": "application/json",
        }
        data: bytes | None = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        self.requests += 1
        try:
            async with session.request(
                method, self._base + path, params=list(params) if params else None, data=data, headers=headers
            ) as resp:
                status = resp.status
                raw = await resp.read()
                self._observe_limits(resp.headers)
            self._last_reply_ns = self._clock.now_ns()
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = redact(str(exc)) or type(exc).__name__
            raise VenueError(self._venue, f"{method} {path}: no reply ({detail})", retryable=True) from None
        payload: Any
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = raw.decode("utf-8", "replace")[:300]
        if status == 429:
            self._budget.observe_remaining(0)
            raise VenueError(self._venue, f"{method} {path}: rate limited (HTTP 429)", retryable=True)
        if status >= 500:
            raise VenueError(
                self._venue, f"{method} {path}: HTTP {status}: {refusal_reason(payload, status)}", retryable=True
            )
        return status, payload

    def _observe_limits(self, headers: Mapping[str, str]) -> None:
        remaining = _header_number(headers.get("x-ratelimit-remaining"))
        if remaining is None:
            return
        self._budget.observe_remaining(remaining, _header_number(headers.get("x-ratelimit-limit")))


def _log_keeper_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


def _header_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # float ok: a request count
    except ValueError:
        return None
    return number if number >= 0 else None


# ------------------------------------------------------------------------------------------------
# Builder
# ------------------------------------------------------------------------------------------------


def build_venue(
    vc: VenueConfig,
    listings: list[Listing],
    markets: dict[str, Market],
    clock: Clock,
    credentials: Credentials | None,
    *,
    live: bool,
    tap: Tap | None,
) -> LiveVenue:
    """A Coinbase venue: the level2 feed plus a paper trader (default) or the REST trader (``live``).

    With complete credentials and ``live_fees`` on, the account's fee rates replace the configured
    ones, in paper mode too. The feed subscribes with a JWT whenever credentials are present.
    """
    real = vc.real
    if real is None:
        raise ValueError(f"venue {vc.name} is not a real venue")
    signer = CoinbaseSigner.from_credentials(credentials, clock)
    stale_s = float(real.stale_after_s)  # float ok: a duration
    feed = CoinbaseFeed(vc.name, listings, clock, signer, snapshot_timeout_s=stale_s)
    supervisor = SupervisorConfig(url=real.ws_url, stale_after_s=stale_s)
    holder: list[LiveVenue] = []

    def fees(market: str) -> FeeSchedule:
        return holder[0].fees(market) if holder else vc.fees

    trader: Trader
    if live:
        if signer is None:
            raise SecretsError(f"{vc.name}: live trading on Coinbase needs key_name and private_key")
        trader = CoinbaseTrader(vc.name, real.rest_url, listings, signer, clock, rate_per_s=real.rate_per_s)
    else:
        paper = PaperTrader(
            vc.name, listings, markets, feed.book, fees, real.paper_balances, clock, real.paper_latency_ms
        )
        if signer is not None and real.live_fees:
            rest = CoinbaseTrader(  # only reads fees: no connection to keep warm
                vc.name, real.rest_url, listings, signer, clock, rate_per_s=real.rate_per_s, keep_warm=False
            )
            trader = PaperWithLiveFees(paper, rest)
        else:
            trader = paper
    venue = LiveVenue(
        vc.name,
        vc.kind,
        listings,
        feed,
        supervisor,
        trader,
        vc.fees,
        clock,
        mode="live" if live else "paper",
        use_live_fees=real.live_fees and signer is not None,
        tap=tap,
    )
    holder.append(venue)
    return venue


def make_feed(vc: VenueConfig, listings: Sequence[Listing], clock: Clock) -> CoinbaseFeed:
    """The level2 feed alone, without keys or a socket: replay drives it with recorded frames."""
    stale_s = float(vc.real.stale_after_s) if vc.real is not None else 10.0  # float ok: a duration
    return CoinbaseFeed(vc.name, list(listings), clock, None, snapshot_timeout_s=stale_s)
