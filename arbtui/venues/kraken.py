"""Kraken spot: the WebSocket v2 book feed and the REST trader, behind :class:`~arbtui.venues.live.LiveVenue`.

Everything Kraken-specific lives here (STYLE rule 7): the v2 ``book`` checksum, the ``instrument``
channel, ``API-Sign``, the error strings, the per-pair trading rate counter, Kraken's asset codes
(``XXBT``, ``ZUSD``) and pair names (``XBTUSD``).

Feed (:class:`KrakenFeed`)
    Subscribes the ``instrument`` channel (every pair's precisions) and the ``book`` channel at the
    configured depth for every listing's symbol. Every book frame, the snapshot included, is applied
    in full, truncated to the subscribed depth, and verified against Kraken's CRC32; a mismatch
    resubscribes that symbol on the same connection (unsubscribe + subscribe, which brings a fresh
    snapshot) and counts ``integrity_failures`` and ``resyncs``. A symbol whose resubscribe brings no
    snapshot within ``resync_timeout_s`` reconnects the whole feed.

    **Which precision the checksum uses**: the ``instrument`` channel's, when it has arrived. The
    checksum is Kraken's statement about *its* rendering of the book; computed at any other
    precision every frame would fail and the feed would resync forever. The config's listing
    precision keeps governing what arbtui *sends* (order prices and sizes), and a difference between
    the two is recorded in :attr:`KrakenFeed.precision_mismatches` and logged, because it means the
    config is wrong about the venue. Until the instrument snapshot arrives the config's precision
    is used.

Trader (:class:`KrakenTrader`)
    Private REST calls are form-encoded ``POST /0/private/<Method>`` with ``API-Key`` and
    ``API-Sign`` (HMAC-SHA512, https://docs.kraken.com/api/docs/guides/spot-rest-auth) and a
    strictly increasing nonce (microseconds, and always the last nonce + 1 at least, so fast calls
    never repeat one). An :class:`OrderRequest` maps
    to ``AddOrder`` as ``ordertype=limit``, ``type=buy|sell``, ``volume``/``price`` rendered at the
    listing's precision (:meth:`Listing.qty_to_wire` / :meth:`Listing.price_to_wire`, the one
    rendering path), ``timeinforce=IOC|GTC``, ``oflags=fciq`` (fees in the quote currency, which is
    what :class:`~arbtui.domain.orders.Fill` reports), ``cl_ord_id`` = our client order id, and a
    ``deadline`` a few seconds out (Kraken's matching engine rejects the order if it arrives later).

    **FOK**: Kraken spot's ``timeinforce`` is GTC, IOC or GTD; there is no fill-or-kill. An FOK
    request is refused locally (a REJECTED report, nothing sent) rather than silently sent as an
    IOC that could partially fill.

    **Names come from Kraken's public AssetPairs listing**, read at start (and again before the
    first order or fee lookup if that failed; until it is read no order is sent). It is keyed by
    the pair's internal name (``XXBTZUSD``); its ``altname`` (``XBTUSD``) is what AddOrder and
    TradeVolume are sent, its ``wsname`` (v1, ``XBT/USD``) ties it to the feed's v2 symbol
    (``BTC/USD``), and TradeVolume's reply keys ``fees`` / ``fees_maker`` by the internal name. Each
    listing is checked against Kraken's increments (:func:`check_listing`): more decimals than
    ``pair_decimals`` / ``lot_decimals``, or a tick off Kraken's ``tick_size``, refuses that
    listing's orders locally with the reason (Kraken would refuse them, and the detector would price
    on the wrong grid); a coarser grid, a minimum below ``ordermin`` or a pair not ``online`` is
    logged. Kraken's increments are not adopted: the config stays the one statement of the grid.

    Kraken's ``AddOrder`` reply carries only the order id, so the report comes from ``QueryOrders``
    (``trades=true``) and the fills from ``QueryTrades``; an IOC is polled until Kraken reports it
    final. Error strings (Kraken's documented list, :func:`classify_errors`) map to: a refusal
    (``EOrder:...``, ``EGeneral:Invalid arguments``, ``EGeneral:Permission denied``, ``EAPI:Invalid
    key/signature``, ``ESession:Invalid session``, ``ETrade:User Locked``, ``EService:Market in ...
    mode``, ``EService:Deadline elapsed``, ``EQuery:...``) -> a REJECTED report; rate limits (HTTP
    429, ``EAPI:`` / ``EOrder:Rate limit exceeded``, ``EGeneral:Too many requests``,
    ``EGeneral:Temporary lockout``) -> wait for budget and retry; an order still limited after the
    retries is REJECTED (Kraken rejects a rate-limited request: it was not placed), another call
    raises ``VenueError(retryable=True)``; ``EAPI:Invalid nonce`` -> retried with a fresh nonce (the
    request was not processed); transport failures, HTTP 5xx, ``EService:Unavailable/Busy`` and any
    string not on the list -> ``VenueError(retryable=True)`` and never a retry of an order (its
    outcome is unknown; the caller asks ``order_status``); ``EOrder:Unknown order`` ->
    :class:`UnknownOrder`. A reply that never comes is left to the caller's timeout; it is never
    turned into a rejection.

    On the order path nothing is prepared late that could be prepared early: the HMAC key is
    decoded once, the form is encoded without ``urlencode`` when no value needs escaping, and, live,
    the REST connection is used at least every ``keep_warm_s`` (public ``Time``, which needs no key,
    nonce or rate counter) and kept a minute when idle, so an order never waits for a handshake.

    Rate limits (https://docs.kraken.com/api/docs/guides/spot-ratelimits) are
    :class:`~arbtui.venues.ratelimit.RateBudget` counters that
    requests wait for: one trading counter per pair (``rate_tier``: AddOrder +1, CancelOrder by the
    order's age via :func:`~arbtui.venues.ratelimit.kraken_cancel_cost`) and the REST call counter for
    everything else (AddOrder and CancelOrder are excluded from it; QueryTrades costs 2).

Unverified against the real venue (no access from here; see ``docs/venues/kraken.md``): that every
pair's AssetPairs ``wsname`` is its v2 symbol with XBT/XDG renamed (:func:`match_pair` falls back to
the :func:`rest_pair` derivation), the asset-code mapping for assets outside
:data:`LEGACY_ASSETS`, the ``maker`` flag on ``QueryTrades`` entries, which status (``closed`` /
``canceled`` / ``expired``) Kraken gives an IOC whose remainder expired, whether ``ClosedOrders``
finds an order by ``cl_ord_id`` beyond its latest-50 window, the shape of instrument *updates*, and
an unsubscribe immediately followed by a subscribe (python-kraken-sdk waits 3 s in between).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

import aiohttp
import orjson

from arbtui.config import VenueConfig
from arbtui.domain.book import Level, OrderBook
from arbtui.domain.clock import Clock
from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.money import ZERO, to_decimal
from arbtui.domain.orders import Fill, Liquidity, OrderReport, OrderRequest, OrderStatus, TimeInForce
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.connection import FeedCounters, FeedLink, SupervisorConfig, Tap
from arbtui.venues.kraken_book import CHECKSUM_LEVELS, KrakenBook, levels_checksum
from arbtui.venues.live import LiveVenue, PaperTrader, PaperWithLiveFees
from arbtui.venues.ratelimit import KRAKEN_TIERS, BudgetView, RateBudget, kraken_cancel_cost
from arbtui.venues.secrets import CredentialError, Credentials, SecretsError, is_token, redact
from arbtui.venues.wire import MalformedFrame

log = logging.getLogger(__name__)

KIND = "kraken"
NS = 1_000_000_000
BOOK_DEPTHS = (10, 25, 100, 500, 1000)
MAX_RESYNCS_IN_A_ROW = 5  # checksum failures on one symbol without a verified frame before reconnecting

# Kraken's REST call counter (not the trading counter): max and decay per second by tier.
REST_TIERS: dict[str, tuple[float, float]] = {
    "starter": (15.0, 0.33),
    "intermediate": (20.0, 0.5),
    "pro": (20.0, 1.0),
}

# ------------------------------------------------------------------------------------------------
# Stable public helpers
# ------------------------------------------------------------------------------------------------


def _to_decimal(value: Decimal | str | float | int) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))  # a float's shortest repr is the number as written on the wire
    return to_decimal(value)


def book_checksum(
    asks: Iterable[tuple[Decimal | str | float, Decimal | str | float]],
    bids: Iterable[tuple[Decimal | str | float, Decimal | str | float]],
    price_precision: int,
    qty_precision: int,
) -> int:
    """Kraken's v2 book CRC32 (https://docs.kraken.com/api/docs/guides/spot-ws-book-v2) over the top
    10 of ``asks`` (best first = ascending)
    and the top 10 of ``bids`` (best first = descending). Values may be Decimal, str or float (a float
    is read through its shortest repr); each is rendered at the instrument's precision."""

    def top(levels: Iterable[tuple[Decimal | str | float, Decimal | str | float]]) -> list[Level]:
        out: list[Level] = []
        for price, qty in levels:
            if len(out) == CHECKSUM_LEVELS:
                break
            out.append((_to_decimal(price), _to_decimal(qty)))
        return out

    return levels_checksum(top(asks), top(bids), price_precision, qty_precision)


def api_sign(url_path: str, post_data: str | bytes, nonce: int | str, secret_b64: str) -> str:
    """Kraken's ``API-Sign`` header (https://docs.kraken.com/api/docs/guides/spot-rest-auth):
    ``base64(HMAC-SHA512(base64decode(secret), url_path + SHA256(nonce + post_data)))``.

    ``post_data`` is the exact request body (it contains ``nonce=...`` too)."""
    body = post_data.encode() if isinstance(post_data, str) else post_data
    digest = hashlib.sha256(str(nonce).encode() + body).digest()
    mac = hmac.new(base64.b64decode(secret_b64), url_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def check_credentials(credentials: Credentials) -> None:
    """Refuse, before anything connects, keys that cannot be Kraken's (:class:`CredentialError`
    naming the field, never the value): ``api_key`` goes as the ``API-Key`` header as it is, and
    ``api_secret`` is the base64 text of the private key (decoded to key the HMAC)."""
    key = credentials.get("api_key")
    if key is not None and not is_token(key.reveal()):
        raise CredentialError("api_key", "expected the API key as Kraken shows it (no spaces or line breaks)")
    secret = credentials.get("api_secret")
    if secret is not None:
        try:
            raw = base64.b64decode(secret.reveal().strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not raw:
            raise CredentialError("api_secret", "not base64 (expected the private key as Kraken shows it)")


# Kraken's REST names for assets whose v2/WebSocket name differs (v2 says BTC, REST says XBT).
_REST_ASSET_NAMES = {"BTC": "XBT", "DOGE": "XDG"}

# Kraken's legacy four-letter asset codes (X = crypto, Z = fiat), as Balance/BalanceEx report them.
LEGACY_ASSETS: dict[str, str] = {
    "XXBT": "BTC",
    "XBT": "BTC",
    "XXDG": "DOGE",
    "XDG": "DOGE",
    "XETH": "ETH",
    "XETC": "ETC",
    "XLTC": "LTC",
    "XXRP": "XRP",
    "XXLM": "XLM",
    "XXMR": "XMR",
    "XZEC": "ZEC",
    "XREP": "REP",
    "XMLN": "MLN",
    "XXTZ": "XTZ",
    "ZUSD": "USD",
    "ZEUR": "EUR",
    "ZGBP": "GBP",
    "ZCAD": "CAD",
    "ZJPY": "JPY",
    "ZAUD": "AUD",
    "ZCHF": "CHF",
}


def rest_pair(symbol: str) -> str:
    """The REST pair name (``altname``) for a v2 symbol: ``BTC/USD`` -> ``XBTUSD``, ``ETH/USD`` -> ``ETHUSD``.

    Kraken's REST API predates the v2 names and still calls bitcoin XBT and dogecoin XDG; the
    altname is base + quote without a separator. Unverified for every pair (AssetPairs is the
    authority); it holds for the pairs in the docs and client libraries consulted."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"a Kraken v2 symbol is BASE/QUOTE, got {symbol!r}")
    return _REST_ASSET_NAMES.get(base, base) + _REST_ASSET_NAMES.get(quote, quote)


# AssetPairs' ``wsname`` is the WebSocket v1 name (``XBT/USD``); v2, which the feed speaks, says BTC.
_V1_ASSET_NAMES = {v: k for k, v in _REST_ASSET_NAMES.items()}


@dataclass(frozen=True, slots=True)
class KrakenPair:
    """One entry of Kraken's public ``GET /0/public/AssetPairs`` listing, as far as arbtui reads it
    (https://docs.kraken.com/api/docs/rest-api/get-tradable-asset-pairs).

    The listing is keyed by the pair's internal name (``XXBTZUSD``), which is also how private
    replies such as TradeVolume's ``fees`` key the pair; ``altname`` (``XBTUSD``) is the REST name
    arbtui sends, ``wsname`` (``XBT/USD``) the WebSocket v1 name."""

    key: str
    altname: str
    wsname: str | None
    pair_decimals: int
    lot_decimals: int
    cost_decimals: int | None = None
    ordermin: Decimal | None = None
    costmin: Decimal | None = None
    tick_size: Decimal | None = None
    status: str | None = None

    @property
    def v2_symbol(self) -> str | None:
        """The WebSocket v2 symbol this pair goes by (``XBT/USD`` -> ``BTC/USD``)."""
        if self.wsname is None:
            return None
        base, sep, quote = self.wsname.partition("/")
        if not sep:
            return None
        return _V1_ASSET_NAMES.get(base, base) + "/" + _V1_ASSET_NAMES.get(quote, quote)


def _int_field(entry: Mapping[str, Any], name: str) -> int | None:
    value = entry.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decimal_field(entry: Mapping[str, Any], name: str) -> Decimal | None:
    value = entry.get(name)
    if value is None or isinstance(value, bool):
        return None
    try:
        out = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


def parse_asset_pairs(result: Any) -> dict[str, KrakenPair]:
    """AssetPairs' ``result`` (internal name -> entry) as :class:`KrakenPair` values by internal name.
    An entry without an ``altname`` or integer decimals is left out (it cannot be traded from here);
    so are dark-pool pairs (``.d``), which have no book."""
    if not isinstance(result, dict):
        raise ValueError("AssetPairs answered without a result object")
    out: dict[str, KrakenPair] = {}
    for key, entry in result.items():
        if not isinstance(key, str) or key.endswith(".d") or not isinstance(entry, dict):
            continue
        altname, wsname = entry.get("altname"), entry.get("wsname")
        pair_decimals, lot_decimals = _int_field(entry, "pair_decimals"), _int_field(entry, "lot_decimals")
        if not isinstance(altname, str) or pair_decimals is None or lot_decimals is None:
            continue
        status = entry.get("status")
        out[key] = KrakenPair(
            key=key,
            altname=altname,
            wsname=wsname if isinstance(wsname, str) else None,
            pair_decimals=pair_decimals,
            lot_decimals=lot_decimals,
            cost_decimals=_int_field(entry, "cost_decimals"),
            ordermin=_decimal_field(entry, "ordermin"),
            costmin=_decimal_field(entry, "costmin"),
            tick_size=_decimal_field(entry, "tick_size"),
            status=status if isinstance(status, str) else None,
        )
    return out


def match_pair(symbol: str, pairs: Mapping[str, KrakenPair]) -> KrakenPair | None:
    """The AssetPairs entry for a v2 symbol: the one whose ``wsname`` names it (``XBT/USD`` for
    ``BTC/USD``), else the one whose ``altname`` is :func:`rest_pair`'s derivation."""
    for pair in pairs.values():
        if pair.v2_symbol == symbol:
            return pair
    derived = rest_pair(symbol)
    return next((p for p in pairs.values() if p.altname == derived), None)


def check_listing(listing: Listing, pair: KrakenPair) -> tuple[list[str], list[str]]:
    """The config's listing against Kraken's: (problems that make Kraken refuse its orders, notes).

    A problem (the config renders more decimals than Kraken takes, or its tick is off Kraken's
    grid) refuses the listing's orders locally; a note (a coarser grid, a minimum below Kraken's,
    a pair not ``online``) is only logged: Kraken itself refuses what it will not take."""
    problems: list[str] = []
    notes: list[str] = []
    if listing.price_precision > pair.pair_decimals:
        problems.append(f"price precision {listing.price_precision} > Kraken's pair_decimals {pair.pair_decimals}")
    elif listing.price_precision < pair.pair_decimals:
        notes.append(f"price precision {listing.price_precision} < Kraken's pair_decimals {pair.pair_decimals}")
    if listing.qty_precision > pair.lot_decimals:
        problems.append(f"qty precision {listing.qty_precision} > Kraken's lot_decimals {pair.lot_decimals}")
    elif listing.qty_precision < pair.lot_decimals:
        notes.append(f"qty precision {listing.qty_precision} < Kraken's lot_decimals {pair.lot_decimals}")
    if pair.tick_size is not None and pair.tick_size > 0 and listing.tick_size != pair.tick_size:
        if listing.tick_size % pair.tick_size != 0:
            problems.append(f"tick {listing.tick_size} is not a multiple of Kraken's tick_size {pair.tick_size}")
        else:
            notes.append(f"tick {listing.tick_size} is coarser than Kraken's tick_size {pair.tick_size}")
    if pair.ordermin is not None and listing.min_size < pair.ordermin:
        notes.append(f"min size {listing.min_size} < Kraken's ordermin {pair.ordermin} (Kraken refuses smaller orders)")
    if pair.status is not None and pair.status != "online":
        notes.append(f"Kraken lists the pair as {pair.status}")
    return problems, notes


def asset_name(code: str, known: Iterable[str] = ()) -> str | None:
    """The config's asset name for a Kraken balance code (``XXBT`` -> ``BTC``, ``ZUSD`` -> ``USD``).

    None for a code with a suffix (``ETH.F``, ``DOT.S``, ``USD.M``, ``XBT.B``): earn, staking and
    holding balances, which are not counted as free to trade. A four-letter X/Z code not in
    :data:`LEGACY_ASSETS` is stripped of its prefix only when that names a known asset."""
    if "." in code:
        return None
    if code in LEGACY_ASSETS:
        return LEGACY_ASSETS[code]
    known_set = set(known)
    if code not in known_set and len(code) == 4 and code[0] in "XZ" and code[1:] in known_set:
        return code[1:]
    return code


def _rfc3339(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // NS, tz=UTC).replace(microsecond=(ns % NS) // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------------
# The book feed
# ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Symbol:
    listing: Listing
    precision: tuple[int, int]  # what the checksum is computed with (see the module docstring)
    market: str  # the listing's canonical market (read on every frame)
    book: KrakenBook | None = None
    awaiting_snapshot: bool = True
    resync_since_ns: int | None = None
    failures_in_a_row: int = 0  # checksum failures since the last verified frame


class KrakenFeed:
    """Kraken's v2 book feed (implements :class:`arbtui.venues.live.BookFeed`; see the module docstring)."""

    def __init__(
        self,
        venue: str,
        listings: Sequence[Listing],
        depth: int = 10,
        *,
        resync_timeout_s: float = 10.0,
    ) -> None:
        if depth not in BOOK_DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {BOOK_DEPTHS}, got {depth}")
        self.venue = venue
        self.depth = depth
        self.counters = FeedCounters()
        self._symbols: dict[str, _Symbol] = {}
        self._markets: dict[str, _Symbol] = {}
        for lst in listings:
            s = _Symbol(lst, (lst.price_precision, lst.qty_precision), lst.market)
            self._symbols[lst.symbol] = s
            self._markets[lst.market] = s
        self._on_change: Callable[[str], None] = _ignore
        self._link: FeedLink | None = None
        self._req_ids = itertools.count(1)
        self._resync_timeout_ns = int(resync_timeout_s * NS)
        self._resync_pending = False  # some symbol's resubscribe waits for its snapshot
        self._last_ts = 0
        self.precision_source: dict[str, str] = {sym: "config" for sym in self._symbols}
        self.precision_mismatches: dict[str, str] = {}
        self.pair_status: dict[str, str] = {}
        self.subscribe_errors: list[str] = []
        self.system_status: str | None = None
        self.heartbeats = 0

    # --- BookFeed ----------------------------------------------------------------------------
    def set_on_change(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change

    def book(self, market: str) -> OrderBook | None:
        s = self._markets.get(market)
        return s.book if s is not None else None

    def resync(self, market: str, reason: str) -> None:
        """Throw the market's book away and resubscribe it for a fresh snapshot."""
        s = self._markets.get(market)
        if s is not None:
            log.info("%s %s: resync (%s)", self.venue, s.listing.symbol, reason)
            self._resubscribe(s)

    # --- FeedHandler ---------------------------------------------------------------------------
    def on_open(self, link: FeedLink) -> Sequence[str]:
        self._link = link
        for s in self._symbols.values():
            s.book = None
            s.awaiting_snapshot = True
            s.resync_since_ns = None
        instrument = {"method": "subscribe", "params": {"channel": "instrument", "snapshot": True}}
        return [self._message(instrument), self._book_message("subscribe", list(self._symbols))]

    def on_close(self) -> None:
        self._link = None
        for s in self._symbols.values():
            s.book = None
            s.awaiting_snapshot = True
            s.resync_since_ns = None

    def on_frame(self, raw: str | bytes, ts_ns: int) -> None:
        """One frame from the socket (or a replay). The hot path is a ``book`` update: decoded by
        orjson, its levels parsed, validated and written with their checksum tokens into the
        symbol's :class:`KrakenBook` (:meth:`KrakenBook.apply_raw`), whose checksum is then compared
        with Kraken's; no Decimal is made here (the engine's reads make them). It is written out in
        this one method on purpose: at a few microseconds a frame, calls are a visible share."""
        self._last_ts = ts_ns
        market: str | None = None
        try:
            msg = _loads(raw)
            if type(msg) is not dict:
                raise MalformedFrame("not a JSON object")
            channel = msg.get("channel")
            if channel == "book":
                # A missing key is a KeyError, an unpacking of anything but one element a ValueError
                # or TypeError: all malformed (the except below), as the checks they replace were.
                (d,) = msg["data"]
                if type(d) is not dict:
                    raise MalformedFrame("book frame without a single data element")
                kind = msg["type"]
                checksum = d["checksum"]
                if type(checksum) is not int:
                    raise MalformedFrame("book frame without an integer checksum")
                symbol = d["symbol"]
                s = self._symbols.get(symbol)
                if s is None:
                    if type(symbol) is not str:
                        raise MalformedFrame("book frame without a symbol")
                    # a symbol this feed did not ask for (a late frame of an old subscription)
                elif kind == "update":
                    book = s.book
                    if book is not None and not s.awaiting_snapshot:
                        try:  # both sides are always there (a side left out reads as no levels)
                            bids, asks = d["bids"], d["asks"]
                        except KeyError:
                            bids, asks = d.get("bids"), d.get("asks")
                        if book.apply_raw(bids, asks, ts_ns) == checksum:
                            self.counters.book_updates += 1
                            market = s.market
                        else:
                            self._checksum_failed(s, symbol)
                    # else: updates before the (fresh) snapshot belong to a book we no longer trust
                elif kind == "snapshot":
                    market = self._on_snapshot(s, d, checksum, ts_ns)
                else:
                    raise MalformedFrame("book frame without a type")
            elif channel == "heartbeat":
                self.heartbeats += 1
            elif channel == "status":
                self._on_system_status(msg)
            elif channel == "instrument":
                self._on_instrument(msg)
            elif isinstance(msg.get("method"), str):
                self._on_reply(msg)
            elif not isinstance(channel, str):
                raise MalformedFrame("neither a channel nor a method reply")
            # other channels (ticker, trade, ...) are not subscribed here; a stray one is ignored
        except (orjson.JSONDecodeError, MalformedFrame, KeyError, TypeError, ValueError) as exc:
            self.counters.malformed += 1
            log.debug("%s: malformed frame skipped: %s", self.venue, exc)
        if market is not None:
            self._on_change(market)  # outside the try: a listener's error is not a malformed frame
        if self._resync_pending:
            self._check_resync_timeouts(ts_ns)

    # --- frames ------------------------------------------------------------------------------
    def _on_snapshot(self, s: _Symbol, d: dict[str, Any], checksum: int, ts_ns: int) -> str | None:
        """A (fresh) snapshot: a new book, installed only if it verifies."""
        book = KrakenBook(self.depth, *s.precision)
        if book.apply_raw(d.get("bids"), d.get("asks"), ts_ns) != checksum:
            self._checksum_failed(s, s.listing.symbol)
            return None
        s.book = book
        s.awaiting_snapshot = False
        s.resync_since_ns = None
        s.failures_in_a_row = 0
        self.counters.book_updates += 1
        return s.market

    def _checksum_failed(self, s: _Symbol, symbol: str) -> None:
        self.counters.integrity_failures += 1
        s.failures_in_a_row += 1
        if s.failures_in_a_row > MAX_RESYNCS_IN_A_ROW and self._link is not None:
            # Fresh snapshots keep failing: something is wrong with this connection (or the
            # precision); start over with the supervisor's backoff rather than loop at wire speed.
            s.failures_in_a_row = 0
            s.book = None
            self._link.reconnect(f"{symbol}: {MAX_RESYNCS_IN_A_ROW} resubscribes did not verify")
            return
        log.warning("%s %s: checksum mismatch; resubscribing", self.venue, symbol)
        self._resubscribe(s, force=True)  # a failed fresh snapshot needs another one too

    def _on_instrument(self, msg: dict[str, Any]) -> None:
        data = msg.get("data")
        if not isinstance(data, dict):
            raise MalformedFrame("instrument frame without a data object")
        pairs = data.get("pairs", [])
        if not isinstance(pairs, list):
            raise MalformedFrame("instrument pairs is not a list")
        for pair in pairs:
            if not isinstance(pair, dict):
                raise MalformedFrame("an instrument pair is not an object")
            symbol = pair.get("symbol")
            s = self._symbols.get(symbol) if isinstance(symbol, str) else None
            if s is None:
                continue
            pp, qp = pair.get("price_precision"), pair.get("qty_precision")
            if isinstance(pp, int) and isinstance(qp, int) and not isinstance(pp, bool) and not isinstance(qp, bool):
                if (pp, qp) != s.precision and s.book is not None:
                    log.info("%s %s: precision now %s/%s", self.venue, symbol, pp, qp)
                    s.book.retoken(pp, qp)
                s.precision = (pp, qp)
                self.precision_source[s.listing.symbol] = "instrument"
                configured = (s.listing.price_precision, s.listing.qty_precision)
                if configured != (pp, qp):
                    note = (
                        f"Kraken says price/qty precision {pp}/{qp}, the config says {configured[0]}/{configured[1]}; "
                        "checksums use Kraken's, orders are rendered with the config's"
                    )
                    if self.precision_mismatches.get(s.listing.symbol) != note:
                        log.warning("%s %s: %s", self.venue, symbol, note)
                    self.precision_mismatches[s.listing.symbol] = note
                else:
                    self.precision_mismatches.pop(s.listing.symbol, None)
            status = pair.get("status")
            if isinstance(status, str):
                self.pair_status[s.listing.symbol] = status

    def _on_system_status(self, msg: dict[str, Any]) -> None:
        data = msg.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            system = data[0].get("system")
            if isinstance(system, str):
                self.system_status = system

    def _on_reply(self, msg: dict[str, Any]) -> None:
        if msg.get("success") is False:
            error = str(msg.get("error", "unknown error"))
            text = f"{msg.get('method')} failed: {error}"
            self.subscribe_errors.append(text)
            del self.subscribe_errors[:-20]  # keep the latest few
            log.warning("%s: %s", self.venue, text)

    # --- resync ------------------------------------------------------------------------------
    def _resubscribe(self, s: _Symbol, *, force: bool = False) -> None:
        s.book = None
        if not force and s.awaiting_snapshot and s.resync_since_ns is not None:
            return  # a resubscribe is already under way; its snapshot will settle this one too
        s.awaiting_snapshot = True
        s.resync_since_ns = self._last_ts
        self._resync_pending = True
        self.counters.resyncs += 1
        if self._link is not None:
            self._link.send(self._book_message("unsubscribe", [s.listing.symbol]))
            self._link.send(self._book_message("subscribe", [s.listing.symbol]))

    def _check_resync_timeouts(self, now_ns: int) -> None:
        """Reconnect when a resubscribed symbol got no snapshot in time. Called after a frame only
        while some symbol waits (``_resync_pending``), so a quiet feed pays nothing per frame."""
        if self._link is None or self._resync_timeout_ns <= 0:
            return
        pending = False
        for s in self._symbols.values():
            if s.resync_since_ns is None:
                continue
            if now_ns - s.resync_since_ns > self._resync_timeout_ns:
                s.resync_since_ns = None
                self._link.reconnect(f"{s.listing.symbol}: no snapshot after resubscribing")
                return
            pending = True
        self._resync_pending = pending

    def _book_message(self, method: str, symbols: list[str]) -> str:
        params: dict[str, Any] = {"channel": "book", "symbol": symbols, "depth": self.depth}
        if method == "subscribe":
            params["snapshot"] = True
        return self._message({"method": method, "params": params})

    def _message(self, body: dict[str, Any]) -> str:
        body["req_id"] = next(self._req_ids)
        return orjson.dumps(body).decode()


def _ignore(_market: str) -> None:
    return None


_loads = orjson.loads


# ------------------------------------------------------------------------------------------------
# The REST trader
# ------------------------------------------------------------------------------------------------


class _Kind(Enum):
    REFUSED = "refused"  # the venue refused the request; nothing happened
    RATE = "rate"  # rate limited; nothing happened; wait and retry
    NONCE = "nonce"  # invalid nonce; nothing happened; retry with a fresh nonce
    SERVICE = "service"  # the venue could not take it; for an order, the outcome is unknown
    UNKNOWN_ORDER = "unknown_order"


# Kraken's error strings (``<severity><category>:<message>[:<extra>]``) by what they mean for the
# caller, from Kraken's lists: https://docs.kraken.com/api/docs/guides/spot-errors and the support
# article "API error messages" (https://support.kraken.com/hc/en-us/articles/360001491786), checked
# against ccxt's exceptions map (ts/src/kraken.ts) and python-kraken-sdk's
# (src/kraken/exceptions/__init__.py). Matched by prefix, so ``EGeneral:Invalid arguments:volume``
# is ``EGeneral:Invalid arguments``.
#
# Rate limits: Kraken rejects the request ("Exceeding the threshold rejects the order", the spot rate
# limits guide https://docs.kraken.com/api/docs/guides/spot-ratelimits): nothing happened; wait and
# retry. ``EGeneral:Too many requests`` is the per-IP limit (public endpoints, and what ccxt maps to
# DDoSProtection); ``EGeneral:Temporary lockout`` follows too many failed calls (about 15 minutes).
_RATE_ERRORS = (
    "EAPI:Rate limit exceeded",
    "EOrder:Rate limit exceeded",
    "EOrder:Domain rate limit exceeded",
    "EGeneral:Too many requests",
    "EGeneral:Temporary lockout",
)
# The venue could not take the request: for an order, its outcome is unknown (asked by status query).
_SERVICE_ERRORS = (
    "EService:Unavailable",
    "EService:Busy",
    "EService:Timeout",
    "EGeneral:Internal error",
    "EDatabase:Internal error",
)
# Errors that say the venue refused the request and nothing happened. Anything not listed (a new or
# unexpected string) is treated as a service error: for an order its outcome is unknown and is asked
# with a status query, never assumed refused (a wrong "refused" would leave a filled leg unhedged).
_REFUSALS = (
    "EOrder:",  # every other order error: funds, minimums, tick size, limits, margin, invalid order/price
    "EGeneral:Invalid arguments",
    "EGeneral:Permission denied",
    "EGeneral:Unknown method",
    "EAPI:Invalid key",
    "EAPI:Invalid signature",
    "EAPI:Bad request",
    "EAPI:Feature disabled",
    "EAPI:Invalid arguments",
    "EAuth:",  # EAuth:Failed: the account or its permissions could not be authenticated
    "ESession:Invalid session",  # an authentication refusal (ccxt: AuthenticationError)
    "ETrade:",  # ETrade:User Locked, ETrade:Locked: the account may not trade (ccxt: AccountSuspended)
    "EService:Market in ",  # cancel_only / post_only / limit_only mode: the order was refused
    "EService:Deadline elapsed",  # the matching engine refused the order after its deadline
    "EQuery:",
    "EFunding:",
)


def classify_errors(errors: Sequence[str]) -> _Kind:
    """What a Kraken ``error`` array means for the caller (see the module docstring)."""
    refused = False
    for e in errors:
        if e.startswith("EOrder:Unknown order"):
            return _Kind.UNKNOWN_ORDER
        if e.startswith(_RATE_ERRORS):
            return _Kind.RATE
        if e.startswith("EAPI:Invalid nonce"):
            return _Kind.NONCE
        if e.startswith(_SERVICE_ERRORS):
            return _Kind.SERVICE
        if e.startswith(_REFUSALS):
            refused = True
    return _Kind.REFUSED if refused or not errors else _Kind.SERVICE


@dataclass(slots=True)
class _Reply:
    http_status: int
    errors: list[str]
    result: Any


@dataclass(slots=True)
class _Placed:
    """An order this trader sent (or tried to): what it asked for and what it learnt since."""

    request: OrderRequest
    listing: Listing
    sent_ns: int
    txid: str | None = None
    fills: dict[str, Fill] = field(default_factory=dict)  # Kraken trade id -> fill (they never change)


class KrakenTrader:
    """Order entry over Kraken's private REST API (implements :class:`arbtui.venues.live.Trader`)."""

    def __init__(
        self,
        venue: str,
        listings: Sequence[Listing],
        markets: Mapping[str, Market],
        credentials: Credentials,
        clock: Clock,
        *,
        rest_url: str = "https://api.kraken.com",
        rate_tier: str = "starter",
        deadline_s: float = 5.0,
        http_timeout_s: float = 30.0,
        status_polls: int = 6,
        status_poll_s: float = 0.05,
        rate_retries: int = 3,
        keep_warm_s: float | None = 10.0,
    ) -> None:
        if rate_tier not in KRAKEN_TIERS:
            raise ValueError(f"rate_tier must be one of {', '.join(KRAKEN_TIERS)}, got {rate_tier!r}")
        self._venue = venue
        self._listings = {lst.market: lst for lst in listings}
        self._by_symbol = {lst.symbol: lst for lst in listings}
        self._markets = markets
        self._key = credentials.require("api_key")
        self._secret = credentials.require("api_secret")
        try:
            # The HMAC keyed once (copied per request): decoding and keying for every request is
            # work on the order path that can be done before any confirm.
            self._mac = hmac.new(base64.b64decode(self._secret.reveal()), digestmod=hashlib.sha512)
        except (binascii.Error, ValueError):
            raise SecretsError(f"{venue}: api_secret is not base64") from None
        self._clock = clock
        self._url = rest_url.rstrip("/")
        self._deadline_ns = int(deadline_s * NS)
        self._http_timeout_s = http_timeout_s
        self._status_polls = max(1, status_polls)
        self._status_poll_ns = int(status_poll_s * NS)
        self._rate_retries = rate_retries
        self._session: aiohttp.ClientSession | None = None
        self._nonce = 0
        self._placed: dict[str, _Placed] = {}
        trade_limit, trade_decay = KRAKEN_TIERS[rate_tier]
        rest_limit, rest_decay = REST_TIERS[rate_tier]
        self.rest_budget = RateBudget(f"{venue} REST calls", rest_limit, rest_decay, clock)
        self.trading_budgets = {
            lst.symbol: RateBudget(f"{venue} {lst.symbol} trading", trade_limit, trade_decay, clock) for lst in listings
        }
        self._assets = sorted({a for m in markets.values() for a in (m.base, m.quote)})
        # REST names, derived until Kraken's AssetPairs listing is read (start), then Kraken's own.
        self._pairs = {lst.symbol: rest_pair(lst.symbol) for lst in listings}  # raises early on a bad symbol
        self.asset_pairs: dict[str, KrakenPair] = {}  # v2 symbol -> its AssetPairs entry, once read
        self.listing_problems: dict[str, str] = {}  # v2 symbol -> why its orders are refused locally
        self.listing_notes: dict[str, str] = {}  # v2 symbol -> differences that are only logged
        self._keep_warm_ns = int(keep_warm_s * NS) if keep_warm_s else None
        self._last_reply_ns = 0
        self._warmer: asyncio.Task[None] | None = None
        self.requests_sent = 0

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is None or self._session.closed:
            # Idle connections are kept a minute (aiohttp's default is 15 s), and _keep_warm uses
            # one every keep_warm_s of quiet: an order never waits for a TCP and TLS handshake.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._http_timeout_s),
                connector=aiohttp.TCPConnector(keepalive_timeout=60),
            )
        if not self.asset_pairs:
            try:
                await self.load_asset_pairs()
            except VenueError as exc:
                # Not fatal here (the feed and the console still start); read again before the first
                # order or fee lookup, and until then no order is sent.
                log.warning("%s: Kraken's pair listing (AssetPairs) not read yet: %s", self._venue, exc)
        if self._keep_warm_ns and self._warmer is None:
            self._warmer = asyncio.get_running_loop().create_task(self._keep_warm(), name=f"{self._venue}-keep-warm")
            self._warmer.add_done_callback(_log_task_failure)

    async def load_asset_pairs(self) -> None:
        """Read Kraken's public AssetPairs listing and take every name from it: the REST ``altname``
        sent in AddOrder and TradeVolume, the internal name TradeVolume keys its reply by, and the
        ``wsname`` that ties it to the feed's v2 symbol. Each listing's increments are checked
        against Kraken's (:func:`check_listing`): a listing Kraken would refuse orders for is refused
        locally (:attr:`listing_problems`, logged as an error); other differences are logged.
        Raises :class:`VenueError` (retryable) when the listing cannot be read."""
        session = self._session
        if session is None or session.closed:
            raise VenueError(self._venue, "the REST client is not started", retryable=True)
        try:
            async with session.get(self._url + "/0/public/AssetPairs") as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VenueError(
                self._venue, f"AssetPairs: {type(exc).__name__}: {redact(str(exc))}", retryable=True
            ) from None
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise VenueError(
                self._venue, f"AssetPairs: HTTP {status}, not JSON: {_excerpt(raw)}", retryable=True
            ) from None
        errors = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(errors, list) or status != 200 or errors:
            text = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else "not a Kraken reply"
            raise VenueError(self._venue, f"AssetPairs: HTTP {status}: {redact(text)}", retryable=True)
        try:
            pairs = parse_asset_pairs(payload.get("result"))
        except ValueError as exc:
            raise VenueError(self._venue, f"AssetPairs: {exc}", retryable=True) from None
        found: dict[str, KrakenPair] = {}
        problems: dict[str, str] = {}
        notes: dict[str, str] = {}
        for lst in self._listings.values():
            pair = match_pair(lst.symbol, pairs)
            if pair is None:
                problems[lst.symbol] = f"Kraken's AssetPairs lists no pair for {lst.symbol}; nothing is sent for it"
                log.error("%s %s: %s", self._venue, lst.symbol, problems[lst.symbol])
                continue
            found[lst.symbol] = pair
            self._pairs[lst.symbol] = pair.altname
            bad, other = check_listing(lst, pair)
            if bad:
                problems[lst.symbol] = (
                    f"the config's listing of {lst.symbol} disagrees with Kraken's {pair.key}: "
                    + "; ".join(bad)
                    + " (orders refused locally; fix [listings] for this venue)"
                )
                log.error("%s %s: %s", self._venue, lst.symbol, problems[lst.symbol])
            if other:
                notes[lst.symbol] = "; ".join(other)
                log.warning("%s %s: %s", self._venue, lst.symbol, notes[lst.symbol])
        self.asset_pairs = found
        self.listing_problems = problems
        self.listing_notes = notes

    async def close(self) -> None:
        warmer, self._warmer = self._warmer, None
        if warmer is not None:
            warmer.cancel()
            await asyncio.gather(warmer, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _keep_warm(self) -> None:
        """A public ``Time`` request whenever the REST connection has been quiet for keep_warm_s
        (no key, no nonce, no private rate counter), so a confirm finds the connection open."""
        assert self._keep_warm_ns is not None
        while True:
            await self._clock.sleep(self._keep_warm_ns)
            session = self._session
            if session is None or self._clock.now_ns() - self._last_reply_ns < self._keep_warm_ns:
                continue
            try:
                async with session.get(self._url + "/0/public/Time") as resp:
                    await resp.read()
                self._last_reply_ns = self._clock.now_ns()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("%s: keep-warm request failed: %s", self._venue, exc)

    def on_book(self, market: str, book: OrderBook) -> None:
        return None  # the venue fills live orders; nothing to do with our copy of the book

    def budgets(self) -> list[BudgetView]:
        return [self.rest_budget.view(), *(b.view() for b in self.trading_budgets.values())]

    @property
    def arrival_deadline_s(self) -> float:
        """How long after being sent an order can still reach Kraken's matching engine: every AddOrder
        carries ``deadline`` = send time + this, and Kraken refuses it after that. The engine's late-fill
        watch of a leg Kraken said it never received is bounded by it (plus clock skew)."""
        return self._deadline_ns / NS  # float ok: a duration, not money

    # --- orders ------------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> OrderReport:
        lst = self._listings.get(request.market)
        if lst is None:
            return self._rejected(request, f"unknown market {request.market} on {self._venue}")
        if request.time_in_force is TimeInForce.FOK:
            return self._rejected(
                request, "Kraken spot has no fill-or-kill (timeinforce is GTC, IOC or GTD); nothing was sent"
            )
        try:
            price = lst.price_to_wire(request.limit_price)
            volume = lst.qty_to_wire(request.quantity)
        except ValueError as exc:
            return self._rejected(request, str(exc))
        known = self._placed.get(request.client_order_id)
        if known is not None:
            # Sent before (a retry): sending it again could trade twice once the first has closed.
            return await self.order_status(request.client_order_id)
        if not self.asset_pairs:
            try:
                await self.load_asset_pairs()
            except VenueError as exc:
                return self._rejected(request, f"Kraken's pair names could not be read; nothing was sent: {exc}")
        problem = self.listing_problems.get(lst.symbol)
        if problem is not None:
            return self._rejected(request, problem)
        now = self._clock.now_ns()
        placed = self._placed[request.client_order_id] = _Placed(request, lst, now)
        params = [
            ("ordertype", "limit"),
            ("type", request.side.value),
            ("volume", volume),
            ("pair", self._pairs[lst.symbol]),
            ("price", price),
            ("timeinforce", "GTC" if request.time_in_force is TimeInForce.GTC else "IOC"),
            ("oflags", "fciq"),
            ("cl_ord_id", request.client_order_id),
            ("deadline", _rfc3339(now + self._deadline_ns)),
        ]
        budget = self.trading_budgets[lst.symbol]
        reply = await self._send_order(params, budget)
        if reply.errors:
            kind = classify_errors(reply.errors)
            if kind is _Kind.REFUSED:
                del self._placed[request.client_order_id]
                return self._rejected(request, redact("; ".join(reply.errors)))
            if kind is _Kind.RATE:
                # Still limited after waiting for the counter to decay: Kraken rejects a rate-limited
                # request, so the order was not placed (spot rate limits guide). A refusal, not an
                # unknown outcome.
                del self._placed[request.client_order_id]
                return self._rejected(request, f"rate limited, not placed: {redact('; '.join(reply.errors))}")
            # SERVICE / UNKNOWN_ORDER / NONCE after retries: the order's fate is not known.
            raise VenueError(self._venue, redact("; ".join(reply.errors)), retryable=True)
        txid = _txid(reply.result)
        if txid is None:
            raise VenueError(self._venue, "AddOrder answered without an order id; ask order_status", retryable=True)
        placed.txid = txid
        try:
            return await self._settled_report(placed)
        except VenueError as exc:
            raise VenueError(
                self._venue, f"order accepted as {txid}, its outcome not read yet: {exc}", retryable=True
            ) from None

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        placed = self._placed.get(client_order_id)
        budget: RateBudget | None = None
        if placed is not None:
            budget = self.trading_budgets[placed.listing.symbol]
            await budget.acquire(kraken_cancel_cost((self._clock.now_ns() - placed.sent_ns) / NS))
        try:
            await self._call("CancelOrder", [("cl_ord_id", client_order_id)], rest_cost=0, budget=budget)
        except UnknownOrder:
            pass  # already closed, or never received: the status query below says which
        return await self.order_status(client_order_id)

    async def order_status(self, client_order_id: str) -> OrderReport:
        placed = self._placed.get(client_order_id)
        info: dict[str, Any] | None = None
        txid = placed.txid if placed is not None else None
        if txid is not None:
            result = await self._call("QueryOrders", [("txid", txid), ("trades", "true")])
            if isinstance(result, dict) and isinstance(result.get(txid), dict):
                info = result[txid]
        if info is None:
            found = await self._find_by_client_id(client_order_id)
            if found is None:
                raise UnknownOrder(self._venue, f"no order with cl_ord_id {client_order_id}")
            txid, info = found
            if placed is not None:
                placed.txid = txid
        assert txid is not None
        return await self._report(client_order_id, txid, info, placed)

    async def balances(self) -> Mapping[str, Decimal]:
        """Free balances (``balance - hold_trade`` from BalanceEx), under the config's asset names."""
        result = await self._call("BalanceEx", [])
        if not isinstance(result, dict):
            raise VenueError(self._venue, "BalanceEx answered without a result object", retryable=True)
        free: dict[str, Decimal] = {}
        for code, entry in result.items():
            name = asset_name(str(code), self._assets)
            if name is None:
                continue
            try:
                if isinstance(entry, dict):
                    amount = Decimal(str(entry["balance"])) - Decimal(str(entry.get("hold_trade", "0")))
                else:
                    amount = Decimal(str(entry))  # the plain Balance shape
            except (KeyError, InvalidOperation):
                raise VenueError(self._venue, f"BalanceEx: unreadable entry for {code}", retryable=True) from None
            free[name] = free.get(name, ZERO) + amount
        return free

    async def live_fees(self) -> Mapping[str, FeeSchedule]:
        """The account's maker/taker rates per market from TradeVolume (Kraken gives percentages).

        The request names each pair by its altname (``XBTUSD``); Kraken keys ``fees`` and
        ``fees_maker`` by the pair's internal name (``XXBTZUSD``), so the reply is read by the
        AssetPairs key (an entry under the altname is accepted too). A listed pair the reply leaves
        out keeps the configured rates, and is logged."""
        if not self.asset_pairs:
            await self.load_asset_pairs()
        pairs = {
            lst.symbol: (self.asset_pairs[lst.symbol], lst.market)
            for lst in self._listings.values()
            if lst.symbol in self.asset_pairs
        }
        if not pairs:
            return {}
        names = ",".join(pair.altname for pair, _ in pairs.values())
        result = await self._call("TradeVolume", [("pair", names), ("fee-info", "true")])
        if not isinstance(result, dict):
            raise VenueError(self._venue, "TradeVolume answered without a result object", retryable=True)
        taker = result.get("fees")
        maker = result.get("fees_maker")
        taker = taker if isinstance(taker, dict) else {}
        maker = maker if isinstance(maker, dict) else {}
        out: dict[str, FeeSchedule] = {}
        for symbol, (pair, market) in pairs.items():
            t = _percent(taker.get(pair.key, taker.get(pair.altname)))
            if t is None:
                log.warning(
                    "%s %s: TradeVolume gave no fee for %s (keys: %s); keeping the configured fees",
                    self._venue,
                    symbol,
                    pair.key,
                    ", ".join(map(str, taker)) or "none",
                )
                continue
            m = _percent(maker.get(pair.key, maker.get(pair.altname)))
            out[market] = FeeSchedule(m if m is not None else t, t, FeeModel.NOTIONAL)
        return out

    # --- internals: orders ---------------------------------------------------------------------
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
            reason=reason,
        )

    async def _send_order(self, params: list[tuple[str, str]], budget: RateBudget) -> _Reply:
        """AddOrder, retried only when Kraken certainly did not take it (rate limit, stale nonce)."""
        nonce_retries = 2
        rate_retries = self._rate_retries
        while True:
            await budget.acquire(1)  # Kraken charges the fixed +1 on receipt, even for a refusal
            reply = await self._post("AddOrder", params)
            kind = classify_errors(reply.errors) if reply.errors else None
            if reply.http_status == 429 or kind is _Kind.RATE:
                if rate_retries <= 0:
                    return reply if reply.errors else _Reply(429, ["EAPI:Rate limit exceeded"], None)
                rate_retries -= 1
                budget.observe_remaining(0)  # Kraken's counter is fuller than ours: wait for it to decay
                continue
            if kind is _Kind.NONCE and nonce_retries > 0:
                nonce_retries -= 1
                continue
            return reply

    async def _settled_report(self, placed: _Placed) -> OrderReport:
        """The order's report once Kraken has matched it (an IOC: once final)."""
        assert placed.txid is not None
        report: OrderReport | None = None
        for attempt in range(self._status_polls):
            if attempt:
                await self._clock.sleep(self._status_poll_ns << (attempt - 1))
            result = await self._call("QueryOrders", [("txid", placed.txid), ("trades", "true")])
            info = result.get(placed.txid) if isinstance(result, dict) else None
            if not isinstance(info, dict):
                continue  # not visible yet
            report = await self._report(placed.request.client_order_id, placed.txid, info, placed)
            if report.status.is_final:
                return report
            if placed.request.time_in_force is TimeInForce.GTC and info.get("status") != "pending":
                return report  # resting (maybe partly filled): that is its answer
        raise VenueError(
            self._venue,
            f"order {placed.txid} not final after {self._status_polls} queries"
            + (f" (last: {report.status.value})" if report is not None else ""),
            retryable=True,
        )

    async def _find_by_client_id(self, client_order_id: str) -> tuple[str, dict[str, Any]] | None:
        for method, key in (("OpenOrders", "open"), ("ClosedOrders", "closed")):
            result = await self._call(method, [("cl_ord_id", client_order_id), ("trades", "true")])
            orders = result.get(key) if isinstance(result, dict) else None
            if not isinstance(orders, dict):
                continue
            for txid, info in orders.items():
                # Only an order that names our id is ours: an entry without cl_ord_id (the filter not
                # honoured, another tool's order) must never lend its fills to our leg.
                if isinstance(info, dict) and info.get("cl_ord_id") == client_order_id:
                    return str(txid), info
        return None

    async def _report(
        self, client_order_id: str, txid: str, info: Mapping[str, Any], placed: _Placed | None
    ) -> OrderReport:
        try:
            vol = Decimal(str(info["vol"]))
            vol_exec = Decimal(str(info["vol_exec"]))
            fee = Decimal(str(info.get("fee", "0")))
            cost = Decimal(str(info.get("cost", "0")))
            status_text = str(info["status"])
        except (KeyError, InvalidOperation):
            raise VenueError(self._venue, f"order {txid}: unreadable order info", retryable=True) from None
        trade_ids = [str(t) for t in info.get("trades") or []]
        fills = await self._fills(client_order_id, trade_ids, placed)
        filled = sum((f.quantity for f in fills), ZERO)
        if vol_exec and filled != vol_exec:
            # The order says more (or less) was executed than its trades show: not consistent yet.
            raise VenueError(
                self._venue, f"order {txid}: executed {vol_exec} but its trades add up to {filled}", retryable=True
            )
        tif = placed.request.time_in_force if placed is not None else None
        reason = info.get("reason")
        status = _order_status(status_text, vol, vol_exec, tif, reason if isinstance(reason, str) else None)
        if status is None:
            raise VenueError(self._venue, f"order {txid}: unknown status {status_text!r}", retryable=True)
        notional = sum((f.price * f.quantity for f in fills), ZERO)
        if not fills and vol_exec:
            notional = cost
        return OrderReport(
            client_order_id=client_order_id,
            venue=self._venue,
            venue_order_id=txid,
            status=status,
            quantity=vol,
            filled_quantity=vol_exec,
            average_price=notional / vol_exec if vol_exec else None,
            fee=fee,
            ts_ns=self._clock.now_ns(),
            reason=redact(reason) if isinstance(reason, str) and reason else None,
            fills=tuple(fills),
        )

    async def _fills(self, client_order_id: str, trade_ids: list[str], placed: _Placed | None) -> list[Fill]:
        """The order's fills in Kraken's order, each trade fetched once (QueryTrades) and kept."""
        cache = placed.fills if placed is not None else {}
        missing = [t for t in trade_ids if t not in cache]
        if missing:
            result = await self._call("QueryTrades", [("txid", ",".join(missing))], rest_cost=2)
            if not isinstance(result, dict):
                raise VenueError(self._venue, "QueryTrades answered without a result object", retryable=True)
            for tid in missing:
                trade = result.get(tid)
                if not isinstance(trade, dict):
                    raise VenueError(self._venue, f"trade {tid} not returned yet", retryable=True)
                cache[tid] = self._fill(client_order_id, trade)
        return [cache[t] for t in trade_ids]

    def _fill(self, client_order_id: str, trade: Mapping[str, Any]) -> Fill:
        try:
            qty = Decimal(str(trade["vol"]))
            price = Decimal(str(trade["price"]))
            fee = Decimal(str(trade.get("fee", "0")))
            at = trade.get("time")
            ts = int(Decimal(repr(at)) * NS) if isinstance(at, float) else int(Decimal(str(at)) * NS)
        except (KeyError, InvalidOperation, TypeError):
            raise VenueError(self._venue, "unreadable trade entry", retryable=True) from None
        # Kraken's ``maker`` flag (unverified on QueryTrades); without it a fill is counted as taker.
        liquidity = Liquidity.MAKER if trade.get("maker") is True else Liquidity.TAKER
        return Fill(client_order_id, qty, price, fee, liquidity, ts)

    # --- internals: HTTP -----------------------------------------------------------------------
    def _next_nonce(self) -> int:
        self._nonce = max(self._nonce + 1, self._clock.now_ns() // 1000)
        return self._nonce

    async def _call(
        self, method: str, params: list[tuple[str, str]], *, rest_cost: float = 1.0, budget: RateBudget | None = None
    ) -> Any:
        """A private call that is safe to repeat: retried on rate limits and stale nonces.

        ``budget`` is the counter a rate limit refers to: the REST call counter, unless the call is a
        trading call (CancelOrder), which counts on its pair's trading counter instead."""
        nonce_retries = 2
        rate_retries = self._rate_retries
        limited = budget or self.rest_budget
        while True:
            if rest_cost:
                await self.rest_budget.acquire(rest_cost)
            reply = await self._post(method, params)
            kind = classify_errors(reply.errors) if reply.errors else None
            if reply.http_status == 429 or kind is _Kind.RATE:
                if rate_retries <= 0:
                    text = "; ".join(reply.errors) or "HTTP 429"
                    raise VenueError(self._venue, f"{method}: rate limited: {redact(text)}", retryable=True)
                rate_retries -= 1
                limited.observe_remaining(0)  # Kraken's counter is fuller than ours: wait for it to decay
                if not rest_cost or limited is not self.rest_budget:
                    await limited.acquire(1)
                continue
            if kind is _Kind.NONCE and nonce_retries > 0:
                nonce_retries -= 1
                continue
            if kind is None:
                return reply.result
            text = redact("; ".join(reply.errors))
            if kind is _Kind.UNKNOWN_ORDER:
                raise UnknownOrder(self._venue, f"{method}: {text}")
            raise VenueError(self._venue, f"{method}: {text}", retryable=kind is not _Kind.REFUSED)

    async def _post(self, method: str, params: list[tuple[str, str]]) -> _Reply:
        session = self._session
        if session is None or session.closed:
            raise VenueError(self._venue, "the REST client is not started", retryable=True)
        path = f"/0/private/{method}"
        nonce = str(self._next_nonce())
        body = _form([("nonce", nonce), *params])
        mac = self._mac.copy()  # api_sign, with the key decoded once
        mac.update(path.encode() + hashlib.sha256(nonce.encode() + body).digest())
        headers = {
            "API-Key": self._key.reveal(),
            "API-Sign": base64.b64encode(mac.digest()).decode(),
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        }
        self.requests_sent += 1
        try:
            async with session.post(self._url + path, data=body, headers=headers) as resp:
                status = resp.status
                raw = await resp.read()
            self._last_reply_ns = self._clock.now_ns()
        except TimeoutError:
            raise VenueError(
                self._venue, f"{method}: no reply within {self._http_timeout_s:g} s", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            raise VenueError(
                self._venue, f"{method}: transport error: {type(exc).__name__}: {redact(str(exc))}", retryable=True
            ) from None
        if status >= 500:
            raise VenueError(self._venue, f"{method}: HTTP {status} {_excerpt(raw)}", retryable=True)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if status == 429:
                return _Reply(status, [], None)
            raise VenueError(
                self._venue, f"{method}: HTTP {status}, not JSON: {_excerpt(raw)}", retryable=status == 429
            ) from None
        errors = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
            raise VenueError(self._venue, f"{method}: HTTP {status}, not a Kraken reply", retryable=True)
        if status != 200 and status != 429 and not errors:
            raise VenueError(self._venue, f"{method}: HTTP {status}", retryable=False)
        return _Reply(status, list(errors), payload.get("result"))


_FORM_SAFE = re.compile(r"[A-Za-z0-9_.\-]*")  # what urlencode leaves as it is


def _form(params: list[tuple[str, str]]) -> bytes:
    """``urllib.parse.urlencode(params)``, encoded; a value made only of characters it would leave
    alone is not passed through it (an order's ten fields cost ~60 us there, ~5 us here)."""
    safe = _FORM_SAFE.fullmatch
    return "&".join(
        f"{k}={v}" if safe(k) and safe(v) else urllib.parse.urlencode(((k, v),)) for k, v in params
    ).encode()


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


def _excerpt(raw: bytes) -> str:
    return redact(raw[:200].decode("utf-8", "replace")).strip()


def _txid(result: Any) -> str | None:
    if isinstance(result, dict):
        txids = result.get("txid")
        if isinstance(txids, list) and txids and isinstance(txids[0], str):
            return txids[0]
    return None


def _percent(entry: Any) -> Decimal | None:
    if not isinstance(entry, dict) or "fee" not in entry:
        return None
    try:
        return Decimal(str(entry["fee"])) / 100
    except InvalidOperation:
        return None


def _order_status(
    status: str, vol: Decimal, vol_exec: Decimal, tif: TimeInForce | None, reason: str | None
) -> OrderStatus | None:
    """Kraken's order status (pending, open, closed, canceled, expired) as an :class:`OrderStatus`."""
    if status in ("pending", "open"):
        return OrderStatus.PARTIALLY_FILLED if vol_exec > 0 else OrderStatus.OPEN
    if status == "closed":
        if vol_exec >= vol:
            return OrderStatus.FILLED
        return OrderStatus.EXPIRED if tif is not TimeInForce.GTC else OrderStatus.CANCELLED
    if status == "canceled":
        user = reason is not None and "user" in reason.lower()
        return OrderStatus.EXPIRED if tif is TimeInForce.IOC and not user else OrderStatus.CANCELLED
    if status == "expired":
        return OrderStatus.EXPIRED
    return None


# ------------------------------------------------------------------------------------------------
# Paper trading with the account's fees
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# The builder's entry point
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
    """A Kraken :class:`LiveVenue`: live trading through :class:`KrakenTrader` when ``live``, else paper
    trading against the live books with ``[paper]`` balances. With complete credentials and
    ``live_fees`` the account's fee rates replace the configured ones in both modes."""
    real = vc.real
    if real is None:
        raise ValueError(f"venue {vc.name}: a kraken venue needs its real-venue settings")
    feed = KrakenFeed(vc.name, listings, real.depth)
    supervisor = SupervisorConfig(url=real.ws_url, stale_after_s=float(real.stale_after_s))  # float ok: a timeout
    keys = credentials is not None and credentials.complete(KIND)
    rest: KrakenTrader | None = None
    if keys:
        assert credentials is not None
        rest = KrakenTrader(
            vc.name,
            listings,
            markets,
            credentials,
            clock,
            rest_url=real.rest_url,
            rate_tier=real.rate_tier,
            keep_warm_s=10.0 if live else None,  # paper mode only reads fees over it
        )
    venue_ref: list[LiveVenue] = []

    def fees(market: str) -> FeeSchedule:
        return venue_ref[0].fees(market) if venue_ref else vc.fees

    trader: KrakenTrader | PaperTrader | PaperWithLiveFees
    if live:
        if rest is None:
            raise VenueError(vc.name, "live trading needs api_key and api_secret (ARBTUI_KRAKEN_API_KEY/_SECRET)")
        trader = rest
    else:
        paper = PaperTrader(
            vc.name, listings, markets, feed.book, fees, real.paper_balances, clock, real.paper_latency_ms
        )
        trader = PaperWithLiveFees(paper, rest) if rest is not None and real.live_fees else paper
    venue = LiveVenue(
        vc.name,
        KIND,
        listings,
        feed,
        supervisor,
        trader,
        vc.fees,
        clock,
        mode="live" if live else "paper",
        use_live_fees=keys and real.live_fees,
        tap=tap,
    )
    venue_ref.append(venue)
    return venue


def make_feed(vc: VenueConfig, listings: Sequence[Listing], clock: Clock) -> KrakenFeed:
    """The book feed alone, without keys or a socket: replay drives it with recorded frames."""
    depth = vc.real.depth if vc.real is not None else 10
    return KrakenFeed(vc.name, list(listings), depth)
