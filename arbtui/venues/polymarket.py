"""Polymarket CLOB: the market-channel book feed, the REST trader, and ``build_venue``.

Wire facts (docs.polymarket.com, and Polymarket's official clients py-clob-client, py-clob-client-v2 and
python-order-utils):

- **Market data**: ``wss://ws-subscriptions-clob.polymarket.com/ws/market``; subscribe with the listings'
  token ids (``{"assets_ids": [...], "type": "market"}``); frames are parsed by
  :mod:`arbtui.venues.polymarket_book` (``book`` snapshots, ``price_change`` with its ``best_bid`` /
  ``best_ask`` cross-check, ``tick_size_change``, arrays of events). The text ``PING`` keep-alive goes
  every 10 s (``SupervisorConfig.keepalive_s``); the answer ``PONG`` is not an error. A book whose top
  disagrees with the venue's is discarded and that asset alone is resubscribed
  (``{"operation": "subscribe", "assets_ids": [token]}``); if no snapshot comes within
  ``resync_timeout_s`` the whole connection is reconnected (which always brings fresh snapshots).
- **Private REST** is authenticated with the L2 headers ``POLY_ADDRESS``, ``POLY_SIGNATURE``,
  ``POLY_TIMESTAMP``, ``POLY_API_KEY``, ``POLY_PASSPHRASE``; the signature is :func:`l2_signature` over
  ``timestamp + METHOD + path + body``, the body being the exact bytes sent (compact JSON) and the path
  without its query string.
- **Orders** are EIP-712 signed by Polymarket's own packages (never hand-written here), in the version
  ``GET /version`` names: V1 CTF Exchange orders by ``py_order_utils`` (:func:`sign_order_v1`), V2
  orders by ``py-clob-client-v2``'s ``ExchangeOrderBuilderV2`` (:func:`sign_order_v2`: domain version
  "2", the V2 exchange contracts, no taker/nonce/feeRateBps, a signed millisecond ``timestamp``, zero
  ``metadata`` and ``builder``; ``expiration`` sent but not signed; the body adds ``deferExec``). The
  exchange contract is chosen by version, ``chain_id`` and the neg-risk flag. A refusal containing
  ``order_version_mismatch`` re-reads ``GET /version`` and, if the version changed, signs the order
  again in the new version and sends it once more (as Polymarket's clients do); any other version is
  refused locally. Amounts are 6-decimal integers from :func:`order_amounts` (py-clob-client's
  rounding rules), at the market's *current* tick (``tick_size_change`` events win over
  ``GET /tick-size``, which wins over the config).
- **No client order ids.** Polymarket's order id is the order's EIP-712 hash. The salt is a
  deterministic function of arbtui's client order id (:func:`order_salt`), so the hash, hence the venue's
  order id, is known *before* the order is sent: after a lost reply ``order_status`` asks
  ``GET /data/order/<hash>``. The hash (with the V2 ``timestamp`` it covers) is written to the
  :class:`OrderHashBook` before the POST: a later process finds the order through it, and a resend of
  the same request signs the same order (same hash), which the venue can only accept once.
- **Results**: an insert error comes as HTTP 200 with ``errorMsg`` set (``success`` true or false, and
  an empty ``orderID``: the docs' "Insert Error Messages") or as a 4xx ``{"error": ...}``. With nothing
  matched it is classified by :func:`classify_insert_error` over :data:`INSERT_ERRORS`, the documented
  list: a refusal is REJECTED with the venue's words as the reason ("not enough balance / allowance"
  is a funds refusal, which the engine follows with a balance refresh); an FOK/FAK the book could not
  match is EXPIRED (the venue killed it); ``ORDER_DELAYED`` is not final (asked until it is, as the
  ``delayed`` status); a duplicate (the venue has this very hash) or a system error after the order was
  taken (``EXECUTION_ERROR``, ``DELAYING_ORDER_ERROR``) is asked of the venue, and unknown if it does
  not show the order. An undocumented ``errorMsg`` with an empty ``orderID`` is REJECTED. The insert
  status ``delayed`` is not final (asked), ``unmatched`` kills an FAK/FOK's remainder (nothing more
  fills) and leaves a GTC resting. 429, 5xx and transport failures raise
  ``VenueError(retryable=True)``; a timeout is the caller's and never a rejection. Every
  venue-provided text passes through :func:`~arbtui.venues.secrets.redact`.

Unverified against the real venue (the loopback server implements these choices):

- whether a dynamic ``{"operation": "subscribe"}`` for an already subscribed asset re-sends its
  ``book`` (hence the reconnect fallback);
- which insert errors the real CLOB answers as HTTP 200 (``errorMsg``, the docs' shape) and which as a
  400 ``{"error": ...}`` (reported for "not enough balance / allowance"), and whether a refusal carries
  an ``orderID`` (both shapes are handled alike; the FOK/FAK kill texts are py-clob-client's and the
  docs'); ``unmatched`` for an FAK read as "not matched, killed" (the docs: "order marketable, but
  failure delaying, placement successful");
- V2 as a whole: signed and checked here only with ``py-clob-client-v2`` 1.2.1 and its published
  vector; which version the real ``GET /version`` answers, the exact refusal for an order of the wrong
  version (taken to be an ``{"error": "...order_version_mismatch..."}``), whether the V2 order id is
  the V2 EIP-712 hash, whether the venue bounds the signed ``timestamp``, and V2 fees (no fee field is
  signed; ``GET /fee-rate`` is still read as the taker rate);
- ``GET /data/order/<id>`` sizes are read as decimal shares (recorded responses show ``"100.0000"``;
  an older doc page says 6-decimal fixed point) and statuses with or without the ``ORDER_STATUS_``
  prefix; an unknown id is taken to answer 404 or an empty body (py-clob-client's ``get`` raises on
  any status but 200, and its ``get_order`` is reported to return nothing for such an order,
  Polymarket/py-clob-client#217). That report concerns a *matched* FAK, found afterwards only
  through the trades: so before an order the lookup does not show is called unknown, its trades are
  looked for (``GET /data/trades?asset_id=..&after=..``, the trades of which it is the taker or a
  maker); trades found mean it executed (a late arrival, or a lookup that omits matched orders);
- ``makingAmount`` / ``takingAmount`` in the order reply are read as decimal amounts (USDC and
  shares), and a trade's ``price`` as the taker's execution price; fills after the reply are rebuilt
  from ``GET /data/trades?id=`` totals (falling back to the order's limit price, the worst case);
- ``GET /fee-rate`` ``base_fee`` (basis points) is taken as the taker rate of the probability fee
  model (``shares * rate * p * (1 - p)``, docs.polymarket.com/trading/fees), makers paying nothing;
  fees are accounted in USDC;
- ``GET /balance-allowance`` balances are 6-decimal integers; open orders' reservations are
  subtracted locally to give free balances;
- Polymarket's request rate limits (not checked against Polymarket's published limits): the budget is
  ``rate_per_s`` requests per second with a one-second burst, deliberately conservative.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from arbtui.config import RealVenueConfig, VenueConfig
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_S, Clock
from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.money import ZERO
from arbtui.domain.orders import Fill, Liquidity, OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.connection import FeedCounters, FeedLink, SupervisorConfig, Tap
from arbtui.venues.live import LiveVenue, PaperTrader, PaperWithLiveFees
from arbtui.venues.polymarket_book import PolymarketBooks
from arbtui.venues.ratelimit import BudgetView, RateBudget
from arbtui.venues.secrets import REQUIRED, CredentialError, Credentials, Secret, is_token, redact

log = logging.getLogger(__name__)

KIND = "polymarket"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
UNITS = Decimal(10) ** 6  # USDC and outcome tokens both have 6 decimals on chain
KEEPALIVE_S = 10.0  # the market channel wants a text PING every 10 s
SUPPORTED_ORDER_VERSIONS = (1, 2)
ORDER_VERSION_MISMATCH = "order_version_mismatch"  # py-clob-client-v2 constants.ORDER_VERSION_MISMATCH_ERROR
BYTES32_ZERO = "0x" + "00" * 32
POLY_1271 = 3  # V2 signature type for smart-contract (deposit) wallets: not supported here

# The V1 CTF Exchange contracts (py-clob-client config.py; py-clob-client-v2 config.py for Amoy's
# neg-risk exchange, which older py-clob-client gave as 0xd91E80cF...).
EXCHANGES: dict[tuple[int, bool], str] = {
    (137, False): "0x4bFb41d5B3570DeFd03C39a9A4D8dE6Bd8B8982E",
    (137, True): "0xC5d563A36AE78145C45a50134d48A1215220f80a",
    (80002, False): "0xdFE02Eb6733538f8Ea35D585af8DE5958AD99E40",
    (80002, True): "0xC5d563A36AE78145C45a50134d48A1215220f80a",
}
# The V2 CTF Exchange contracts, the same on Polygon and Amoy (py-clob-client-v2 1.2.1 config.py
# exchange_v2 / neg_risk_exchange_v2; a test checks this table against the package).
EXCHANGES_V2: dict[tuple[int, bool], str] = {
    (137, False): "0xE111180000d2663C0091e4f400237545B87B996B",
    (137, True): "0xe2222d279d744050d28e00520010520000310F59",
    (80002, False): "0xE111180000d2663C0091e4f400237545B87B996B",
    (80002, True): "0xe2222d279d744050d28e00520010520000310F59",
}

# tick -> decimals of (price, size, amount): py-clob-client order_builder/builder.py ROUNDING_CONFIG.
ROUNDING: dict[Decimal, tuple[int, int, int]] = {
    Decimal("0.1"): (1, 2, 3),
    Decimal("0.01"): (2, 2, 4),
    Decimal("0.001"): (3, 2, 5),
    Decimal("0.0001"): (4, 2, 6),
}

_ORDER_TYPE = {TimeInForce.IOC: "FAK", TimeInForce.FOK: "FOK", TimeInForce.GTC: "GTC"}
# The venue's words for an FOK / FAK that found nothing (enough) to match (py-clob-client, clob-client #68).
_KILLED = ("fully filled or killed", "no orders found to match", "partially filled or killed")


class InsertOutcome(enum.Enum):
    """What an order insert error (``POST /order`` ``errorMsg`` or ``error``) says about the order."""

    REFUSED = "refused"  # not placed: REJECTED
    FUNDS = "funds"  # not placed for lack of balance or allowance: REJECTED, a funds refusal
    KILLED = "killed"  # an FOK/FAK that could not match: EXPIRED with nothing filled
    DELAYED = "delayed"  # taken, but held in the market's matching delay: not final, ask the venue
    DUPLICATE = "duplicate"  # the venue already has this very order (same hash): ask the venue
    UNCERTAIN = "uncertain"  # a system error after the order was taken: ask the venue


@dataclass(frozen=True)
class InsertError:
    code: str
    message: str  # the documented errorMsg text
    success: bool  # the documented value of ``success`` alongside it
    outcome: InsertOutcome


# The order insert errors of the CLOB's order placement docs ("Insert Error Messages",
# https://docs.polymarket.com/developers/CLOB/orders/create-order): code, errorMsg, success, outcome.
INSERT_ERRORS: tuple[InsertError, ...] = (
    InsertError(
        "INVALID_ORDER_MIN_TICK_SIZE",
        "order is invalid. Price breaks minimum tick size rules",
        True,
        InsertOutcome.REFUSED,
    ),
    InsertError("INVALID_ORDER_MIN_SIZE", "order is invalid. Size lower than the minimum", True, InsertOutcome.REFUSED),
    InsertError(
        "INVALID_ORDER_DUPLICATED",
        "order is invalid. Duplicated. Same order has already been placed, can't be placed again",
        True,
        InsertOutcome.DUPLICATE,
    ),
    InsertError("INVALID_ORDER_NOT_ENOUGH_BALANCE", "not enough balance / allowance", True, InsertOutcome.FUNDS),
    InsertError("INVALID_ORDER_EXPIRATION", "invalid expiration", True, InsertOutcome.REFUSED),
    InsertError("INVALID_ORDER_ERROR", "could not insert order", True, InsertOutcome.REFUSED),
    InsertError(
        "INVALID_POST_ONLY_ORDER_TYPE",
        "invalid post-only order: only GTC and GTD order types are allowed",
        True,
        InsertOutcome.REFUSED,
    ),
    InsertError("INVALID_POST_ONLY_ORDER", "invalid post-only order: order crosses book", True, InsertOutcome.REFUSED),
    InsertError("EXECUTION_ERROR", "could not run the execution", True, InsertOutcome.UNCERTAIN),
    InsertError("ORDER_DELAYED", "order match delayed due to market conditions", False, InsertOutcome.DELAYED),
    InsertError("DELAYING_ORDER_ERROR", "error delaying the order", True, InsertOutcome.UNCERTAIN),
    InsertError(
        "FOK_ORDER_NOT_FILLED_ERROR",
        "order couldn't be fully filled, FOK orders are fully filled/killed",
        True,
        InsertOutcome.KILLED,
    ),
    InsertError("MARKET_NOT_READY", "the market is not yet ready to process new orders", False, InsertOutcome.REFUSED),
)


def classify_insert_error(text: str) -> InsertError | None:
    """The documented insert error ``text`` (an ``errorMsg`` or ``error``) is, by code or by message
    (case-insensitive); the FOK/FAK kill texts of py-clob-client count as FOK_ORDER_NOT_FILLED_ERROR."""
    lower = text.lower()
    # Longest code first: INVALID_POST_ONLY_ORDER_TYPE before INVALID_POST_ONLY_ORDER, and so on.
    for err in sorted(INSERT_ERRORS, key=lambda e: -len(e.code)):
        if err.code.lower() in lower:
            return err
    for err in INSERT_ERRORS:
        if err.message.lower() in lower:
            return err
    by_code = {e.code: e for e in INSERT_ERRORS}
    if any(k in lower for k in _KILLED) or "couldn't be fully filled" in lower:
        return by_code["FOK_ORDER_NOT_FILLED_ERROR"]
    if "not enough balance" in lower:
        return by_code["INVALID_ORDER_NOT_ENOUGH_BALANCE"]
    return None


# GET /data/trades pagination (py-clob-client constants.END_CURSOR; the first cursor is "MA==").
END_CURSOR = "LTE="
TRADES_PAGES = 10  # pages of an order's token's trades read before an unlisted order is called unknown
TRADES_LOOKBACK_S = 60  # its trades are looked for from this long before it was sent (clock skew)
_ACTIVE = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


# ------------------------------------------------------------------------------------------------
# Stable public functions: authentication, amounts, order signing
# ------------------------------------------------------------------------------------------------


def l2_signature(secret: str, timestamp: str | int, method: str, request_path: str, body: str | None = None) -> str:
    """The ``POLY_SIGNATURE`` header (py-clob-client, py_clob_client/signing/hmac.py): url-safe base64 of
    HMAC-SHA256, keyed by the url-safe-base64-decoded API secret, over
    ``timestamp + method + request_path + body``.

    ``body`` must be the exact text sent; ``request_path`` is the path without the query string.
    """
    key = base64.urlsafe_b64decode(secret)
    message = f"{timestamp}{method}{request_path}{body or ''}"
    return base64.urlsafe_b64encode(hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")


def _side_of(side: Side | str) -> Side:
    if isinstance(side, Side):
        return side
    upper = side.upper()
    if upper not in ("BUY", "SELL"):
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    return Side.BUY if upper == "BUY" else Side.SELL


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _round(value: Decimal, places: int, rounding: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=rounding)


def price_valid(price: Decimal, tick_size: Decimal) -> bool:
    """A price Polymarket accepts at ``tick_size``: on the tick, and ``tick <= price <= 1 - tick``."""
    return tick_size <= price <= 1 - tick_size and price % tick_size == 0


def order_amounts(side: Side | str, price: Decimal, size: Decimal, tick_size: Decimal) -> tuple[int, int]:
    """(makerAmount, takerAmount) in 6-decimal units for a limit order (py-clob-client ``get_order_amounts``).

    The size is rounded down to the tick's size decimals (2). A BUY gives USDC (``shares * price``)
    for shares; a SELL gives shares for USDC. A product with more decimals than the tick's amount
    precision is rounded up at ``amount + 4`` decimals, then down to ``amount`` (in exact Decimal
    arithmetic on-tick prices never need it; the rule is kept as the reference client has it).
    A price off ``tick_size`` (or outside ``[tick, 1 - tick]``) raises ValueError rather than being
    silently rounded.
    """
    rounding = ROUNDING.get(tick_size)
    if rounding is None:
        raise ValueError(f"tick size {tick_size} is not one of Polymarket's {', '.join(map(str, ROUNDING))}")
    _price_places, size_places, amount_places = rounding
    if not price_valid(price, tick_size):
        raise ValueError(f"price {price} is not a valid price at tick {tick_size}")
    shares = _round(size, size_places, ROUND_FLOOR)
    if shares <= 0:
        raise ValueError(f"size {size} rounds down to nothing at {size_places} decimals")
    notional = shares * price
    if _places(notional) > amount_places:
        notional = _round(notional, amount_places + 4, ROUND_CEILING)
        if _places(notional) > amount_places:
            notional = _round(notional, amount_places, ROUND_FLOOR)
    shares_units, notional_units = shares * UNITS, notional * UNITS
    assert shares_units == shares_units.to_integral_value() and notional_units == notional_units.to_integral_value()
    if _side_of(side) is Side.BUY:
        return int(notional_units), int(shares_units)
    return int(shares_units), int(notional_units)


def order_salt(client_order_id: str) -> int:
    """The order's salt, derived from arbtui's client order id (so the order hash is known before sending).

    48 bits of SHA-256: unique enough for one account's orders, and below 2**53 so that every JSON
    reader (the venue's included) keeps it exact.
    """
    digest = hashlib.sha256(f"arbtui-polymarket-salt:{client_order_id}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def exchange_address(chain_id: int, neg_risk: bool, version: int = 1) -> str:
    """The CTF Exchange that verifies ``version`` orders on ``chain_id`` (the neg-risk exchange for
    neg-risk markets)."""
    table = {1: EXCHANGES, 2: EXCHANGES_V2}.get(version)
    if table is None:
        raise ValueError(f"no Polymarket exchange known for V{version} orders")
    try:
        return table[(chain_id, neg_risk)]
    except KeyError:
        raise ValueError(f"no Polymarket exchange known for chain {chain_id}") from None


@dataclass(frozen=True, slots=True)
class SignedOrder:
    """A signed order: ``order`` is the wire dict (V1: ``py_order_utils`` ``SignedOrder.dict()``; V2:
    ``py-clob-client-v2`` ``order_to_json_v2(...)["order"]``), ``order_hash`` its EIP-712 digest, which
    is the venue's order id, ``version`` the order version it was signed for."""

    order: dict[str, Any]
    order_hash: str
    version: int = 1

    def body(self, owner: str, order_type: str) -> dict[str, Any]:
        """The ``POST /order`` body (py-clob-client, ``client.py::post_order`` and
        ``utilities.py::order_to_json``; V2 adds ``deferExec``, in ``order_to_json_v2``'s order)."""
        if self.version == 1:
            return {"order": self.order, "owner": owner, "orderType": order_type, "postOnly": False}
        return {"order": self.order, "owner": owner, "orderType": order_type, "deferExec": False, "postOnly": False}


def sign_order_v1(
    private_key: str,
    *,
    chain_id: int,
    neg_risk: bool,
    salt: int,
    token_id: str,
    maker_amount: int,
    taker_amount: int,
    side: Side | str,
    fee_rate_bps: int,
    signature_type: int = 0,
    maker: str | None = None,
    nonce: int = 0,
    expiration: int = 0,
) -> SignedOrder:
    """Build and sign a V1 order with ``py_order_utils`` (the key is used here and not kept).

    ``maker`` is the funder (a proxy or safe for signature types 1 and 2); it defaults to the signer.
    """
    # Imported here: eth_account takes over a second to import, and paper trading never signs.
    from py_order_utils.builders import OrderBuilder
    from py_order_utils.builders.exception import ValidationException
    from py_order_utils.model import BUY, SELL, OrderData
    from py_order_utils.model import SignedOrder as LibSignedOrder
    from py_order_utils.signer import Signer

    signer = Signer(private_key)
    builder = OrderBuilder(exchange_address(chain_id, neg_risk), chain_id, signer, salt_generator=lambda: salt)
    data = OrderData(
        maker=maker or signer.address(),
        taker=ZERO_ADDRESS,
        tokenId=str(token_id),
        makerAmount=str(maker_amount),
        takerAmount=str(taker_amount),
        side=BUY if _side_of(side) is Side.BUY else SELL,
        feeRateBps=str(fee_rate_bps),
        nonce=str(nonce),
        signer=signer.address(),
        expiration=str(expiration),
        signatureType=signature_type,
    )
    try:
        order = builder.build_order(data)
    except ValidationException as exc:
        raise ValueError(f"py_order_utils refused the order: {exc}") from None
    order_hash = str(builder._create_struct_hash(order))  # the library's EIP-712 digest = the venue's order id
    signature = str(builder.build_order_signature(order))
    return SignedOrder(dict(LibSignedOrder(order, signature).dict()), order_hash, 1)


def sign_order_v2(
    private_key: str,
    *,
    chain_id: int,
    neg_risk: bool,
    salt: int,
    token_id: str,
    maker_amount: int,
    taker_amount: int,
    side: Side | str,
    timestamp_ms: int,
    signature_type: int = 0,
    maker: str | None = None,
    expiration: int = 0,
    metadata: str = BYTES32_ZERO,
    builder_code: str = BYTES32_ZERO,
) -> SignedOrder:
    """Build and sign a V2 order with ``py-clob-client-v2``'s ``ExchangeOrderBuilderV2`` (the key is used
    here and not kept).

    ``timestamp_ms`` is signed (the order hash depends on it); ``expiration`` is sent but not signed.
    ``maker`` is the funder (a proxy or safe for signature types 1 and 2); it defaults to the signer.
    Signature type 3 (POLY_1271, smart-contract wallets) is refused: its signature is not an ECDSA
    signature by the key, and nothing here could check it.
    """
    if signature_type == POLY_1271:
        raise ValueError("signature type 3 (POLY_1271) is not supported by arbtui")
    # Imported here: eth_account takes over a second to import, and paper trading never signs.
    from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
    from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2, SignedOrderV2, order_to_json_v2
    from py_clob_client_v2.order_utils.model.side import Side as LibSide
    from py_clob_client_v2.order_utils.model.signature_type_v2 import SignatureTypeV2
    from py_clob_client_v2.signer import Signer

    signer = Signer(private_key, chain_id)
    builder = ExchangeOrderBuilderV2(
        exchange_address(chain_id, neg_risk, 2), chain_id, signer, generate_salt=lambda: str(salt)
    )
    data = OrderDataV2(
        maker=maker or signer.address(),
        tokenId=str(token_id),
        makerAmount=str(maker_amount),
        takerAmount=str(taker_amount),
        side=LibSide.BUY if _side_of(side) is Side.BUY else LibSide.SELL,
        signer=signer.address(),
        signatureType=SignatureTypeV2(signature_type),
        timestamp=str(timestamp_ms),
        metadata=metadata,
        builder=builder_code,
        expiration=str(expiration),
    )
    try:
        order = builder.build_order(data)
    except ValueError as exc:
        raise ValueError(f"py-clob-client-v2 refused the order: {exc}") from None
    typed_data = builder.build_order_typed_data(order)
    order_hash = str(builder.build_order_hash(typed_data))  # the library's EIP-712 digest = the venue's order id
    signature = str(builder.build_order_signature(typed_data))
    signed = SignedOrderV2(**{**asdict(order), "signature": signature})
    return SignedOrder(dict(order_to_json_v2(signed, "", "")["order"]), order_hash, 2)


def order_hash_v1(order: Mapping[str, Any], chain_id: int, neg_risk: bool) -> str:
    """The EIP-712 digest of a V1 order given as its wire dict (``"side"`` is ``"BUY"``/``"SELL"``)."""
    from py_order_utils.builders.base_builder import BaseBuilder
    from py_order_utils.model import BUY, SELL, Order

    struct = Order(
        salt=int(order["salt"]),
        maker=str(order["maker"]),
        signer=str(order["signer"]),
        taker=str(order["taker"]),
        tokenId=int(order["tokenId"]),
        makerAmount=int(order["makerAmount"]),
        takerAmount=int(order["takerAmount"]),
        expiration=int(order["expiration"]),
        nonce=int(order["nonce"]),
        feeRateBps=int(order["feeRateBps"]),
        side=BUY if order["side"] == "BUY" else SELL,
        signatureType=int(order["signatureType"]),
    )
    builder = BaseBuilder(exchange_address(chain_id, neg_risk), chain_id, None, None)
    return str(builder._create_struct_hash(struct))


def recover_order_signer(order_hash: str, signature: str) -> str:
    """The address whose key produced ``signature`` over ``order_hash`` (checksummed)."""
    from eth_account import Account

    digest = bytes.fromhex(order_hash.removeprefix("0x"))
    return str(Account._recover_hash(digest, signature=bytes.fromhex(signature.removeprefix("0x"))))


# The order of secp256k1's group: a private key is an integer in [1, N - 1].
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def check_credentials(credentials: Credentials) -> None:
    """Refuse, before anything connects, keys that cannot be Polymarket's (:class:`CredentialError`
    naming the field, never the value): ``private_key`` is the wallet's secp256k1 key as 64 hex digits
    (``0x`` optional), ``api_secret`` url-safe base64 (it keys the L2 HMAC), and ``api_key`` and
    ``api_passphrase`` go as headers as they are."""
    key = credentials.get("private_key")
    if key is not None:
        text = key.reveal().strip().removeprefix("0x")
        hint = " (that is the length of an address, not of a key)" if len(text) == 40 else ""
        if len(text) != 64:
            raise CredentialError(
                "private_key", f"expected 64 hex digits (32 bytes, 0x optional), got {len(text)} characters{hint}"
            )
        try:
            value = int(text, 16)
        except ValueError:
            raise CredentialError("private_key", "expected 64 hex digits (32 bytes, 0x optional): not hex") from None
        if not 0 < value < SECP256K1_N:
            raise CredentialError("private_key", "not a valid secp256k1 private key (out of range)")
    secret = credentials.get("api_secret")
    if secret is not None:
        try:
            raw = base64.b64decode(secret.reveal().strip(), altchars=b"-_", validate=True)
        except (ValueError, TypeError):
            raw = b""
        if not raw:
            raise CredentialError("api_secret", "not url-safe base64 (expected the secret the CLOB API returned)")
    for name in ("api_key", "api_passphrase"):
        value_ = credentials.get(name)
        if value_ is not None and not is_token(value_.reveal()):
            raise CredentialError(name, "expected one line without spaces, as the CLOB API returned it")


def address_of(private_key: str) -> str:
    """The address of a private key (``POLY_ADDRESS``)."""
    from eth_account import Account

    return str(Account.from_key(private_key).address)


def fee_schedule_from_bps(base_fee_bps: int) -> FeeSchedule:
    """The account's fee schedule from ``GET /fee-rate``'s ``base_fee`` (see the module docstring)."""
    return FeeSchedule(ZERO, Decimal(base_fee_bps) / Decimal(10_000), FeeModel.PROBABILITY)


# ------------------------------------------------------------------------------------------------
# Market data
# ------------------------------------------------------------------------------------------------


class PolymarketFeed:
    """The market channel for every listing (implements :class:`arbtui.venues.live.BookFeed`).

    Books are keyed by canonical market (``Listing.market``); the venue keys them by token id
    (``Listing.symbol``). ``tick(market)`` is the latest ``tick_size_change`` seen, if any.
    """

    def __init__(self, listings: Sequence[Listing], clock: Clock, *, resync_timeout_s: float = 10.0) -> None:
        self.counters = FeedCounters()
        self._clock = clock
        self._market_of = {lst.symbol: lst.market for lst in listings}
        self._token_of = {lst.market: lst.symbol for lst in listings}
        self._books = PolymarketBooks(assets=set(self._market_of))
        self._on_change: Callable[[str], None] = _ignore
        self._link: FeedLink | None = None
        self._pending: dict[str, int] = {}  # token -> when its fresh snapshot was asked for
        self._resync_timeout_ns = int(resync_timeout_s * NS_PER_S)
        self._malformed_seen = 0
        self._integrity_seen = 0

    # --- BookFeed ----------------------------------------------------------------------------
    def set_on_change(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change

    def book(self, market: str) -> OrderBook | None:
        token = self._token_of.get(market)
        return None if token is None else self._books.books.get(token)

    def tick(self, market: str) -> Decimal | None:
        token = self._token_of.get(market)
        return None if token is None else self._books.ticks.get(token)

    def resync(self, market: str, reason: str) -> None:
        token = self._token_of.get(market)
        if token is None:
            return
        log.info("polymarket: resync %s (%s)", market, reason)
        self._books.books.pop(token, None)
        self._books.needs_resync.add(token)
        self._ask_snapshot(token)

    def on_open(self, link: FeedLink) -> Sequence[str]:
        self._link = link
        self._books.books.clear()
        self._books.needs_resync.clear()
        self._pending.clear()
        message = {"assets_ids": sorted(self._market_of), "type": "market"}
        return [orjson.dumps(message).decode()]

    def on_frame(self, raw: str | bytes, ts_ns: int) -> None:
        try:
            changed = self._books.on_raw(raw, ts_ns)
        except Exception:  # noqa: BLE001 - the parser already counts what it knows; never raise out
            log.exception("polymarket: frame handling failed")
            self.counters.malformed += 1
            return
        books = self._books
        c = self.counters
        if books.malformed != self._malformed_seen:
            c.malformed += books.malformed - self._malformed_seen
            self._malformed_seen = books.malformed
        if books.integrity_failures != self._integrity_seen:
            c.integrity_failures += books.integrity_failures - self._integrity_seen
            self._integrity_seen = books.integrity_failures
            for token in books.needs_resync:
                if token not in self._pending:  # a best_bid/best_ask disagreement just found
                    self._ask_snapshot(token)
        for token in changed:
            self._pending.pop(token, None)
            c.book_updates += 1
            self._on_change(self._market_of[token])
        if self._pending and self._link is not None:
            oldest = min(self._pending.values())
            if ts_ns - oldest > self._resync_timeout_ns:
                self._pending.clear()
                self._link.reconnect("no book snapshot after resubscribing")

    def on_close(self) -> None:
        self._link = None
        self._books.books.clear()
        self._pending.clear()

    # --- internals ---------------------------------------------------------------------------
    def _ask_snapshot(self, token: str) -> None:
        self.counters.resyncs += 1
        self._pending[token] = self._clock.now_ns()
        if self._link is not None:
            self._link.send(orjson.dumps({"operation": "subscribe", "assets_ids": [token]}).decode())


def _ignore(_market: str) -> None:
    return None


# ------------------------------------------------------------------------------------------------
# Trading
# ------------------------------------------------------------------------------------------------


class OrderHashBook:
    """Client order id -> order hash, written before each order is sent and read back after a restart.

    Polymarket has no client order ids; the order hash (the venue's order id) is known before sending
    (the salt is derived from our client order id). Keeping it here lets a new process ask the venue
    about an order an earlier process sent but never heard back about. One JSON line per order,
    flushed to the OS before the POST (it survives the process, not the machine). A client order id
    that is in neither memory nor this file was never sent by arbtui from this data directory:
    :class:`UnknownOrder`.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line cut by a crash: its order was never sent
                if isinstance(entry, dict) and isinstance(entry.get("cid"), str):
                    self._entries[entry["cid"]] = entry

    def remember(
        self, request: OrderRequest, token: str, order_hash: str, *, version: int = 1, timestamp_ms: int | None = None
    ) -> None:
        """Write down ``order_hash`` for ``request`` (a later line for the same client order id wins: the
        order signed again after a version change). ``timestamp_ms`` is the signed V2 timestamp."""
        entry: dict[str, Any] = {
            "cid": request.client_order_id,
            "hash": order_hash,
            "token": token,
            "market": request.market,
            "side": request.side.value,
            "quantity": str(request.quantity),
            "limit_price": str(request.limit_price),
            "tif": request.time_in_force.value,
            "version": version,
        }
        if timestamp_ms is not None:
            entry["ts_ms"] = timestamp_ms
        self._entries[request.client_order_id] = entry
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as fh:
                fh.write(orjson.dumps(entry) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())  # on disk before the POST: a machine crash must not lose a sent order

    def signed_timestamp(self, client_order_id: str, version: int) -> int | None:
        """The timestamp a ``version`` order for ``client_order_id`` was signed with (V2), if one was: signing
        it again with the same one gives the same order hash."""
        e = self._entries.get(client_order_id)
        if e is None or e.get("version", 1) != version:
            return None
        ts = e.get("ts_ms")
        return ts if isinstance(ts, int) and not isinstance(ts, bool) else None

    def adopt_venue_id(self, client_order_id: str, venue_id: str) -> None:
        """The venue named the order differently from the signed hash: status queries must use its id."""
        entry = self._entries.get(client_order_id)
        if entry is None or entry.get("hash") == venue_id:
            return
        entry = {**entry, "hash": venue_id}
        self._entries[client_order_id] = entry
        if self.path is not None:
            with self.path.open("ab") as fh:
                fh.write(orjson.dumps(entry) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())

    def recall(self, venue: str, client_order_id: str) -> _Order | None:
        e = self._entries.get(client_order_id)
        if e is None:
            return None
        request = OrderRequest(
            client_order_id,
            venue,
            str(e["market"]),
            Side(e["side"]),
            Decimal(str(e["quantity"])),
            Decimal(str(e["limit_price"])),
            TimeInForce(e["tif"]),
        )
        return _Order(request, str(e["token"]), order_id=str(e["hash"]), sent=True)


def default_hash_book_path(venue: str) -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "arbtui" / f"polymarket-order-hashes-{venue}.jsonl"


@dataclass
class _Order:
    request: OrderRequest
    token: str
    order_id: str | None = None  # the order hash, known before sending
    sent: bool = False
    status: OrderStatus = OrderStatus.OPEN
    reason: str | None = None
    fills: list[Fill] = field(default_factory=list)
    # what the fills add up to, per liquidity: (quantity, notional)
    taker: tuple[Decimal, Decimal] = (ZERO, ZERO)
    maker: tuple[Decimal, Decimal] = (ZERO, ZERO)
    fee: Decimal = ZERO
    sent_s: int | None = None  # when this process sent it (unix seconds); None when recalled after a restart

    @property
    def filled(self) -> Decimal:
        return self.taker[0] + self.maker[0]

    @property
    def notional(self) -> Decimal:
        return self.taker[1] + self.maker[1]


class PolymarketTrader:
    """Order entry over Polymarket's REST API (implements :class:`arbtui.venues.live.Trader`).

    ``fees(market)`` is the schedule fills are charged with (the venue's, once known); ``ticks(market)``
    the feed's latest ``tick_size_change`` (None before one).
    """

    def __init__(
        self,
        venue: str,
        listings: Sequence[Listing],
        markets: Mapping[str, Market],
        real: RealVenueConfig,
        credentials: Credentials | None,
        clock: Clock,
        fees: Callable[[str], FeeSchedule],
        ticks: Callable[[str], Decimal | None] | None = None,
        *,
        request_timeout_s: float = 30.0,
        hash_book: OrderHashBook | None = None,
    ) -> None:
        self._venue = venue
        self._hash_book = hash_book if hash_book is not None else OrderHashBook(None)
        self._listings = {lst.market: lst for lst in listings}
        self._markets = markets
        self._real = real
        self._rest = real.rest_url.rstrip("/")
        self._clock = clock
        self._fees = fees
        self._ticks = ticks
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._key = credentials.get("private_key") if credentials else None
        self._api_key = credentials.get("api_key") if credentials else None
        self._api_secret = credentials.get("api_secret") if credentials else None
        self._passphrase = credentials.get("api_passphrase") if credentials else None
        self._address: str | None = None
        rate = float(real.rate_per_s)  # float ok: a request budget, not money
        self._budget = RateBudget(f"{venue}:rest", rate, rate, clock)
        self._session: aiohttp.ClientSession | None = None
        self._orders: dict[str, _Order] = {}
        self._fee_bps: dict[str, int] = {}  # token -> base_fee
        self._rest_ticks: dict[str, Decimal] = {}  # token -> GET /tick-size
        self.order_version: int | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        if self._key is not None:
            self._address = address_of(self._key.reveal())
        try:  # read here so the first order does not wait for them; retried at the first order otherwise
            await self._read_version()
            for lst in self._listings.values():
                await self._read_tick(lst.symbol)
                await self._read_fee_bps(lst.symbol)
        except VenueError as exc:
            log.warning("%s: could not read the venue's parameters yet: %s", self._venue, exc)
        if self._key is not None:  # loaded now (slow) rather than at the first order
            _load_signer(self.order_version or 1)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def on_book(self, market: str, book: OrderBook) -> None:
        return None

    def budgets(self) -> list[BudgetView]:
        return [self._budget.view()]

    @property
    def address(self) -> str | None:
        """The signer's address (``POLY_ADDRESS``), known once started with a key."""
        return self._address

    # --- market parameters -------------------------------------------------------------------
    async def live_fees(self) -> Mapping[str, FeeSchedule]:
        out: dict[str, FeeSchedule] = {}
        for market, lst in self._listings.items():
            out[market] = fee_schedule_from_bps(await self._read_fee_bps(lst.symbol))
        return out

    async def _read_version(self) -> int:
        status, payload = await self._request("GET", "/version", auth=False)
        version = payload.get("version") if isinstance(payload, dict) else None
        if status != 200 or not isinstance(version, int) or isinstance(version, bool):
            raise VenueError(self._venue, f"GET /version answered {status}: {_text(payload)}")
        self.order_version = version
        return version

    async def _read_fee_bps(self, token: str) -> int:
        status, payload = await self._request("GET", "/fee-rate", params={"token_id": token}, auth=False)
        raw = payload.get("base_fee", 0) if isinstance(payload, dict) else None
        try:
            bps = int(Decimal(str(raw or 0)))
        except (InvalidOperation, ValueError):
            bps = -1
        if status != 200 or bps < 0:
            raise VenueError(self._venue, f"GET /fee-rate answered {status}: {_text(payload)}")
        self._fee_bps[token] = bps
        return bps

    async def _read_tick(self, token: str) -> Decimal:
        status, payload = await self._request("GET", "/tick-size", params={"token_id": token}, auth=False)
        raw = payload.get("minimum_tick_size") if isinstance(payload, dict) else None
        try:
            tick = Decimal(str(raw))
        except InvalidOperation:
            tick = ZERO
        if status != 200 or tick not in ROUNDING:
            raise VenueError(self._venue, f"GET /tick-size answered {status}: {_text(payload)}")
        self._rest_ticks[token] = tick
        return tick

    def current_tick(self, market: str) -> Decimal:
        """The tick orders must use now: the feed's latest change, else ``GET /tick-size``, else the config."""
        lst = self._listings[market]
        live = self._ticks(market) if self._ticks is not None else None
        return live or self._rest_ticks.get(lst.symbol) or lst.tick_size

    # --- orders ------------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> OrderReport:
        known = self._orders.get(request.client_order_id)
        if known is not None:
            return self._report(known)
        lst = self._listings.get(request.market)
        order = _Order(request, lst.symbol if lst else "")
        self._orders[request.client_order_id] = order
        if lst is None:
            return self._reject(order, f"{request.market} is not listed on {self._venue}")
        if self._key is None or self._api_key is None or self._api_secret is None or self._passphrase is None:
            return self._reject(order, "live trading needs private_key, api_key, api_secret and api_passphrase")
        if self._session is None:
            return self._reject(order, "the trader is not started")
        try:
            version = self.order_version if self.order_version is not None else await self._read_version()
        except VenueError as exc:
            return self._reject(order, f"not sent: the venue's order parameters are unavailable ({exc})")
        tick = self.current_tick(request.market)
        try:
            maker_amount, taker_amount = order_amounts(request.side, request.limit_price, request.quantity, tick)
        except ValueError as exc:
            return self._reject(order, f"not sent: {exc}")
        if Decimal(maker_amount if request.side is Side.SELL else taker_amount) / UNITS != request.quantity:
            return self._reject(order, f"not sent: size {request.quantity} has more than 2 decimals")
        retried = False
        while True:
            if version not in SUPPORTED_ORDER_VERSIONS:
                return self._reject(
                    order,
                    f"not sent: the CLOB expects V{version} orders (GET /version); arbtui signs V1 and V2 orders only",
                )
            try:
                signed = await self._sign(request, lst.symbol, version, maker_amount, taker_amount)
            except VenueError as exc:
                return self._reject(order, f"not sent: the venue's order parameters are unavailable ({exc})")
            except ValueError as exc:
                return self._reject(order, f"not sent: {redact(str(exc))}")
            order.order_id = signed.order_hash
            ts = signed.order.get("timestamp") if version == 2 else None
            self._hash_book.remember(
                request, lst.symbol, signed.order_hash, version=version, timestamp_ms=None if ts is None else int(ts)
            )
            body = signed.body(self._api_key.reveal(), _ORDER_TYPE[request.time_in_force])
            order.sent = True  # from here on the venue may have it: only the venue can say what happened
            order.sent_s = self._clock.now_ns() // NS_PER_S
            status, payload = await self._request("POST", "/order", body=body)
            if retried or not _version_mismatch(payload):
                break
            # The CLOB changed order versions (a migration): read which one it wants now and, as
            # Polymarket's clients do, sign and send once more if it differs. The refused order was not
            # taken, so the new order (a new hash) replaces it.
            retried = True
            try:
                now = await self._read_version()
            except VenueError as exc:
                log.warning("%s: order version mismatch, and GET /version failed: %s", self._venue, exc)
                self.order_version = None  # read again before the next order
                break
            if now == version:
                break
            log.warning(
                "%s: order %s: the CLOB moved from V%s to V%s orders; signing again",
                self._venue,
                request.client_order_id,
                version,
                now,
            )
            version = now
            order.sent, order.order_id = False, None
        if self._apply_reply(order, status, payload):
            said, order.reason = order.reason, None
            try:
                await self._refresh(order)
            except UnknownOrder:
                raise VenueError(
                    self._venue,
                    f"order {request.client_order_id} ({order.order_id}): {said}, and the venue does not show "
                    "it yet; its outcome is unknown",
                    retryable=True,
                ) from None
        if request.time_in_force is not TimeInForce.GTC and not order.status.is_final:
            await self._settle_taker(order)
        return self._report(order)

    async def _settle_taker(self, order: _Order) -> None:
        """An FAK/FOK the venue left "live" or "delayed" (or ``ORDER_DELAYED``): ask until it is final. A reply to
        an IOC must be final (the Venue contract); if the venue cannot say yet, the outcome is unknown,
        which the executor resolves by querying and cancelling (never by assuming nothing filled)."""
        delay_ns = 50_000_000
        for _ in range(5):
            await self._clock.sleep(delay_ns)
            delay_ns *= 2
            try:
                await self._refresh(order)
            except UnknownOrder:
                continue  # not visible yet
            if order.status.is_final:
                return
        raise VenueError(
            self._venue,
            f"order {order.request.client_order_id} ({order.order_id}) is not final after the venue's reply "
            f"({order.reason}); its outcome is unknown",
            retryable=True,
        )

    async def _sign(
        self, request: OrderRequest, token: str, version: int, maker_amount: int, taker_amount: int
    ) -> SignedOrder:
        """The order signed for ``version`` (ValueError if it cannot be; VenueError if a V1 fee rate cannot
        be read). A V2 order reuses the timestamp an earlier signing of this client order id wrote down,
        so that it has the same hash."""
        assert self._key is not None
        salt = order_salt(request.client_order_id)
        if version == 1:
            fee_bps = self._fee_bps.get(token)
            if fee_bps is None:
                fee_bps = await self._read_fee_bps(token)
            return sign_order_v1(
                self._key.reveal(),
                chain_id=self._real.chain_id,
                neg_risk=self._real.neg_risk,
                salt=salt,
                token_id=token,
                maker_amount=maker_amount,
                taker_amount=taker_amount,
                side=request.side,
                fee_rate_bps=fee_bps,
                signature_type=self._real.signature_type,
                maker=self._real.funder,
            )
        timestamp_ms = self._hash_book.signed_timestamp(request.client_order_id, version)
        if timestamp_ms is None:
            timestamp_ms = self._clock.now_ns() // 1_000_000
        return sign_order_v2(
            self._key.reveal(),
            chain_id=self._real.chain_id,
            neg_risk=self._real.neg_risk,
            salt=salt,
            token_id=token,
            maker_amount=maker_amount,
            taker_amount=taker_amount,
            side=request.side,
            timestamp_ms=timestamp_ms,
            signature_type=self._real.signature_type,
            maker=self._real.funder,
        )

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        order = self._known(client_order_id)
        if order.status.is_final or order.order_id is None:
            return self._report(order)
        status, payload = await self._request("DELETE", "/order", body={"orderID": order.order_id})
        if status != 200 or not isinstance(payload, dict):
            raise VenueError(self._venue, f"DELETE /order answered {status}: {_text(payload)}")
        canceled = payload.get("canceled") or []
        refused = payload.get("not_canceled") or {}
        if isinstance(refused, dict) and order.order_id in refused:
            order.reason = f"cancel refused: {redact(str(refused[order.order_id]))}"
        try:
            await self._refresh(order)
        except UnknownOrder:
            if not isinstance(canceled, list) or order.order_id not in canceled:
                raise
        if isinstance(canceled, list) and order.order_id in canceled and not order.status.is_final:
            self._finish(order, "cancelled")
        return self._report(order)

    async def order_status(self, client_order_id: str) -> OrderReport:
        order = self._known(client_order_id)
        if order.status.is_final or order.order_id is None:
            return self._report(order)
        await self._refresh(order)
        return self._report(order)

    async def balances(self) -> Mapping[str, Decimal]:
        sig = str(self._real.signature_type)
        out: dict[str, Decimal] = {}
        collateral = await self._balance({"asset_type": "COLLATERAL", "signature_type": sig})
        for market in self._listings:
            out[self._markets[market].quote] = collateral
        for market, lst in self._listings.items():
            params = {"asset_type": "CONDITIONAL", "token_id": lst.symbol, "signature_type": sig}
            out[self._markets[market].base] = await self._balance(params)
        for order in self._orders.values():  # the venue reports holdings; resting orders hold part of them
            if order.sent and order.status in _ACTIVE:
                req = order.request
                m = self._markets[req.market]
                left = req.quantity - order.filled
                if req.side is Side.BUY:
                    out[m.quote] = out.get(m.quote, ZERO) - left * req.limit_price
                else:
                    out[m.base] = out.get(m.base, ZERO) - left
        return out

    # --- internals: requests -----------------------------------------------------------------
    def _known(self, client_order_id: str) -> _Order:
        order = self._orders.get(client_order_id)
        if order is None:
            # Polymarket has no client order ids: an order an earlier process sent is found through the
            # order hash it wrote down before sending (OrderHashBook); one in neither was never sent.
            order = self._hash_book.recall(self._venue, client_order_id)
            if order is None:
                raise UnknownOrder(self._venue, f"no order {client_order_id} was sent from this data directory")
            self._orders[client_order_id] = order
        return order

    def _l2_headers(self, method: str, path: str, body: str | None) -> dict[str, str]:
        assert self._api_key is not None and self._api_secret is not None and self._passphrase is not None
        assert self._address is not None
        timestamp = str(self._clock.now_ns() // NS_PER_S)
        return {
            "POLY_ADDRESS": self._address,
            "POLY_SIGNATURE": l2_signature(self._api_secret.reveal(), timestamp, method, path, body),
            "POLY_TIMESTAMP": timestamp,
            "POLY_API_KEY": self._api_key.reveal(),
            "POLY_PASSPHRASE": self._passphrase.reveal(),
        }

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        auth: bool = True,
    ) -> tuple[int, Any]:
        """One REST request: (HTTP status, parsed JSON or None). 429, 5xx and transport failures raise
        a retryable VenueError; other statuses are the caller's to read."""
        session = self._session
        if session is None:
            raise VenueError(self._venue, "the trader is not started", retryable=True)
        text = None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        await self._budget.acquire()
        headers = {"Content-Type": "application/json"} if text is not None else {}
        if auth:
            if self._address is None:
                raise VenueError(self._venue, "private requests need the credentials")
            headers.update(self._l2_headers(method, path, text))
        try:
            async with session.request(
                method,
                self._rest + path,
                params=params,
                data=None if text is None else text.encode("utf-8"),
                headers=headers,
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VenueError(
                self._venue, f"{method} {path}: {type(exc).__name__}: {redact(str(exc))}", retryable=True
            ) from None
        payload: Any
        try:
            payload = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            payload = raw[:200].decode("utf-8", "replace")
        if status == 429 or status >= 500:
            raise VenueError(self._venue, f"{method} {path}: HTTP {status}: {_text(payload)}", retryable=True)
        return status, payload

    async def _balance(self, params: Mapping[str, str]) -> Decimal:
        status, payload = await self._request("GET", "/balance-allowance", params=params)
        raw = payload.get("balance") if isinstance(payload, dict) else None
        try:
            units = Decimal(str(raw))
        except InvalidOperation:
            units = Decimal("NaN")
        if status != 200 or not units.is_finite():
            raise VenueError(self._venue, f"GET /balance-allowance answered {status}: {_text(payload)}")
        return units / UNITS

    # --- internals: order state --------------------------------------------------------------
    def _reject(self, order: _Order, reason: str) -> OrderReport:
        order.status = OrderStatus.REJECTED
        order.reason = reason
        return self._report(order)

    def _apply_reply(self, order: _Order, status: int, payload: Any) -> bool:
        """What ``POST /order`` answered (see the module docstring for the mapping). True when only the
        venue can say what became of the order (a duplicate, or a system error after it was taken): the
        caller asks it."""
        req = order.request
        ok = status == 200 and isinstance(payload, dict) and payload.get("success") is True
        message = ""
        if isinstance(payload, dict):
            message = str(payload.get("errorMsg") or payload.get("error") or "")
        elif payload:
            message = str(payload)
        matched = isinstance(payload, dict) and (
            _amount(payload.get("makingAmount")) > 0 or _amount(payload.get("takingAmount")) > 0
        )
        text = redact(message or f"HTTP {status}")
        known = classify_insert_error(message) if message else None
        venue_id = payload.get("orderID") if isinstance(payload, dict) else None
        no_id = not (isinstance(venue_id, str) and venue_id)
        # An insert error arrives as HTTP 200 with the text in errorMsg (and success true or false: the
        # docs' "Insert Error Messages"), or as a 4xx {"error": ...}. Nothing matched, and either a
        # documented error or no order id: the order was not placed as asked.
        refused_in_body = status == 200 and bool(message) and (known is not None or no_id)
        if not matched and (not ok or refused_in_body):
            if status in (408, 409) or not (400 <= status < 500 or refused_in_body):
                # A timeout or conflict (or an unexpected status) does not say the order was refused:
                # its outcome is unknown, and only the venue can tell (order_status).
                raise VenueError(self._venue, f"POST /order answered {status}: {text}", retryable=True)
            if ORDER_VERSION_MISMATCH in text:
                self.order_version = None  # read again before the next order
            return self._refused(order, text, known)
        if not isinstance(payload, dict):
            raise VenueError(self._venue, f"POST /order answered {status} without a body", retryable=True)
        if message:  # success with a message, or amounts matched despite success: false: trust the amounts
            log.warning("%s: order %s: %s", self._venue, req.client_order_id, redact(message))
        venue_id = payload.get("orderID")
        if isinstance(venue_id, str) and venue_id and venue_id.lower() != (order.order_id or "").lower():
            log.warning("%s: order %s: venue id %s is not the signed hash", self._venue, req.client_order_id, venue_id)
            order.order_id = venue_id
            self._hash_book.adopt_venue_id(req.client_order_id, venue_id)  # a restart's status queries use it
        making, taking = _amount(payload.get("makingAmount")), _amount(payload.get("takingAmount"))
        shares, usdc = (taking, making) if req.side is Side.BUY else (making, taking)
        if shares > order.taker[0]:
            self._add_fill(order, Liquidity.TAKER, shares - order.taker[0], usdc - order.taker[1])
        venue_status = str(payload.get("status", "")).lower()
        if order.filled >= req.quantity:
            order.status = OrderStatus.FILLED
        elif venue_status == "matched" and order.filled > 0 and req.time_in_force is not TimeInForce.GTC:
            order.status, order.reason = OrderStatus.EXPIRED, "FAK remainder killed by the venue"
        elif req.time_in_force is TimeInForce.GTC and venue_status in ("live", "matched", "unmatched"):
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
        elif venue_status == "unmatched":
            # "order marketable, but failure delaying, placement successful" (the docs' insert
            # statuses): an FAK/FOK that was not matched, so killed with what the reply shows filled.
            self._finish(order, "venue status unmatched: not matched, the remainder killed")
        else:
            # An FAK/FOK left "live" or "delayed" (the market's matching delay), or an unknown status,
            # is not final: the venue may still match it; order_status tells.
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
            order.reason = f"venue status {venue_status or 'missing'}: not final yet"
        return False

    def _refused(self, order: _Order, text: str, known: InsertError | None) -> bool:
        """An insert error (``text``, the venue's words; ``known``, its documented entry if any) for an
        order of which nothing matched. True when the venue must be asked what became of it."""
        gtc = order.request.time_in_force is TimeInForce.GTC
        outcome = known.outcome if known is not None else InsertOutcome.REFUSED
        if outcome is InsertOutcome.KILLED and not gtc:
            order.status, order.reason = OrderStatus.EXPIRED, text
        elif outcome is InsertOutcome.FUNDS:
            # The engine refreshes balances after a refusal worded as one for funds (balances.py):
            # the venue's words are "not enough balance / allowance"; a bare code gets them added.
            reason = text if "not enough balance" in text.lower() else f"not enough balance / allowance ({text})"
            order.status, order.reason = OrderStatus.REJECTED, reason
        elif outcome is InsertOutcome.DELAYED:
            order.status, order.reason = OrderStatus.OPEN, f"{text}: not final yet"
        elif outcome in (InsertOutcome.DUPLICATE, InsertOutcome.UNCERTAIN):
            order.status, order.reason = OrderStatus.OPEN, f"{text}: asking the venue"
            return True
        else:
            order.status, order.reason = OrderStatus.REJECTED, text
        return False

    async def _refresh(self, order: _Order) -> None:
        """Bring ``order`` up to date from ``GET /data/order/<hash>`` (and its trades, for new fills)."""
        assert order.order_id is not None
        status, payload = await self._request("GET", f"/data/order/{order.order_id}")
        if status == 404 or (status == 200 and not payload):
            if await self._executed_unlisted(order):
                return
            cid = order.request.client_order_id
            raise UnknownOrder(self._venue, f"the venue has no order {order.order_id} ({cid})")
        if status != 200 or not isinstance(payload, dict):
            raise VenueError(self._venue, f"GET /data/order answered {status}: {_text(payload)}")
        try:
            matched = Decimal(str(payload.get("size_matched") or "0"))
        except InvalidOperation:
            raise VenueError(self._venue, f"unreadable size_matched {payload.get('size_matched')!r}") from None
        if matched > order.request.quantity:
            raise VenueError(
                self._venue,
                f"order {order.order_id}: the venue reports {matched} matched of {order.request.quantity} "
                "ordered (a unit mismatch?); not applied",
            )
        if matched > order.filled:
            trades = payload.get("associate_trades") or []
            await self._catch_up(order, matched, trades if isinstance(trades, list) else [])
        venue_status = str(payload.get("status", "")).upper().removeprefix("ORDER_STATUS_")
        req = order.request
        if order.filled >= req.quantity:
            order.status = OrderStatus.FILLED
        elif venue_status == "LIVE":
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
        elif venue_status == "MATCHED":
            if req.time_in_force is TimeInForce.GTC:  # a resting order is only MATCHED once complete
                order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
            else:
                self._finish(order, "FAK remainder killed by the venue")
        elif venue_status in ("CANCELED", "CANCELLED"):
            self._finish(order, order.reason or "cancelled")
        elif venue_status == "CANCELED_MARKET_RESOLVED":
            self._finish(order, "cancelled: the market resolved")
        elif venue_status == "INVALID":
            if order.filled:
                self._finish(order, "the venue marked the order invalid")
            else:
                order.status, order.reason = OrderStatus.REJECTED, "the venue marked the order invalid"
        else:
            raise VenueError(self._venue, f"unexpected order status {redact(venue_status)!r}", retryable=True)

    async def _executed_unlisted(self, order: _Order) -> bool:
        """The order lookup does not show ``order``: True (and the order brought up to date) if its trades
        show it executed after all; False if it has none (it is unknown: not arrived, or never sent).

        Its trades are those of its token since shortly before it was sent (all of them for an order
        recalled after a restart) in which it is the taker or one of the makers. An order that traded
        but is not listed is done: FILLED, or (its remainder no longer anywhere) finished."""
        oid = (order.order_id or "").lower()
        params = {"asset_id": order.token}
        if order.sent_s is not None:
            params["after"] = str(order.sent_s - TRADES_LOOKBACK_S)
        totals = {Liquidity.TAKER: (ZERO, ZERO), Liquidity.MAKER: (ZERO, ZERO)}
        cursor = "MA=="
        for _ in range(TRADES_PAGES):
            status, payload = await self._request("GET", "/data/trades", params={**params, "next_cursor": cursor})
            rows = payload.get("data") if isinstance(payload, dict) else None
            if status != 200 or not isinstance(rows, list):
                # Without its trades nothing can be said either way: never "unknown" on a failed read.
                raise VenueError(self._venue, f"GET /data/trades answered {status}: {_text(payload)}", retryable=True)
            for row in rows:
                part = _our_part(row, oid)
                if part is not None:
                    liq, qty, price = part
                    q, n = totals[liq]
                    totals[liq] = (q + qty, n + qty * price)
            cursor = str(payload.get("next_cursor") or END_CURSOR)
            if cursor == END_CURSOR:
                break
        matched = totals[Liquidity.TAKER][0] + totals[Liquidity.MAKER][0]
        if matched == 0:
            return False
        if matched > order.request.quantity:
            raise VenueError(
                self._venue, f"order {order.order_id}: trades add up to {matched}, more than it ordered; not applied"
            )
        for liq, (qty, notional) in totals.items():
            have = order.taker if liq is Liquidity.TAKER else order.maker
            if qty > have[0]:
                self._add_fill(order, liq, qty - have[0], notional - have[1])
        if order.filled >= order.request.quantity:
            order.status = OrderStatus.FILLED
        else:
            self._finish(order, "traded, and no longer listed by the venue")
        log.warning("%s: order %s is not listed but traded %s (found in its trades)", self._venue, oid, matched)
        return True

    @staticmethod
    def _finish(order: _Order, reason: str) -> None:
        """The order is done with a remainder: CANCELLED for a GTC, EXPIRED for an FAK/FOK (killed)."""
        gtc = order.request.time_in_force is TimeInForce.GTC
        order.status = OrderStatus.CANCELLED if gtc else OrderStatus.EXPIRED
        order.reason = reason

    async def _catch_up(self, order: _Order, matched: Decimal, trade_ids: list[Any]) -> None:
        """Fills the venue reports beyond those known: rebuilt from the order's trades (totals per
        liquidity minus what is recorded, so fills stay append-only), else at the limit price."""
        oid = (order.order_id or "").lower()
        totals = {Liquidity.TAKER: (ZERO, ZERO), Liquidity.MAKER: (ZERO, ZERO)}
        complete = bool(trade_ids)
        for tid in trade_ids:
            status, payload = await self._request("GET", "/data/trades", params={"id": str(tid)})
            rows = payload.get("data") if isinstance(payload, dict) else payload
            if status != 200 or not isinstance(rows, list):
                complete = False
                break
            for row in rows:
                part = _our_part(row, oid)
                if part is not None:
                    liq, qty, price = part
                    q, n = totals[liq]
                    totals[liq] = (q + qty, n + qty * price)
        if complete and totals[Liquidity.TAKER][0] + totals[Liquidity.MAKER][0] == matched:
            for liq, (qty, notional) in totals.items():
                have = order.taker if liq is Liquidity.TAKER else order.maker
                if qty > have[0]:
                    self._add_fill(order, liq, qty - have[0], notional - have[1])
            return
        log.warning("%s: order %s: trades do not add up to %s; new fills at the limit price", self._venue, oid, matched)
        req = order.request
        delta = matched - order.filled
        self._add_fill(order, Liquidity.TAKER, delta, delta * req.limit_price)

    def _add_fill(self, order: _Order, liquidity: Liquidity, qty: Decimal, notional: Decimal) -> None:
        if qty <= 0:
            return
        req = order.request
        price = notional / qty
        fee = self._fees(req.market).fee(price, qty, taker=liquidity is Liquidity.TAKER)
        if liquidity is Liquidity.TAKER:
            order.taker = (order.taker[0] + qty, order.taker[1] + notional)
        else:
            order.maker = (order.maker[0] + qty, order.maker[1] + notional)
        order.fee += fee
        order.fills.append(Fill(req.client_order_id, qty, price, fee, liquidity, self._clock.now_ns()))

    def _report(self, order: _Order) -> OrderReport:
        req = order.request
        filled = order.filled
        return OrderReport(
            client_order_id=req.client_order_id,
            venue=self._venue,
            venue_order_id=order.order_id,
            status=order.status,
            quantity=req.quantity,
            filled_quantity=filled,
            average_price=order.notional / filled if filled else None,
            fee=order.fee,
            ts_ns=self._clock.now_ns(),
            reason=order.reason,
            fills=tuple(order.fills),
        )


def _version_mismatch(payload: Any) -> bool:
    """The venue refused the order for its version (py-clob-client-v2 ``_is_order_version_mismatch``:
    the ``error`` field holds ``order_version_mismatch``; ``errorMsg`` is read too)."""
    if not isinstance(payload, dict):
        return False
    for key in ("error", "errorMsg"):
        value = payload.get(key)
        if value and ORDER_VERSION_MISMATCH in (value if isinstance(value, str) else json.dumps(value)):
            return True
    return False


def _load_signer(version: int) -> None:
    """Import the signing package for ``version`` orders (slow: eth_account) ahead of the first order."""
    if version == 2:
        import py_clob_client_v2.order_utils.exchange_order_builder_v2  # noqa: F401
    else:
        import py_order_utils.builders  # noqa: F401


def _amount(raw: Any) -> Decimal:
    """A reply amount ("12.5", "", None) as a Decimal (0 when absent or unreadable)."""
    if raw is None or raw == "":
        return ZERO
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return ZERO
    return value if value.is_finite() and value > 0 else ZERO


def _our_part(row: Any, order_id: str) -> tuple[Liquidity, Decimal, Decimal] | None:
    """Our order's share of one trade: as its taker, or as one of its makers."""
    if not isinstance(row, dict):
        return None
    try:
        if str(row.get("taker_order_id", "")).lower() == order_id:
            return Liquidity.TAKER, Decimal(str(row["size"])), Decimal(str(row["price"]))
        for maker in row.get("maker_orders") or []:
            if isinstance(maker, dict) and str(maker.get("order_id", "")).lower() == order_id:
                return Liquidity.MAKER, Decimal(str(maker["matched_amount"])), Decimal(str(maker["price"]))
    except (KeyError, InvalidOperation):
        return None
    return None


def _text(payload: Any) -> str:
    """A venue answer for an error message: short, and with every known secret removed."""
    if isinstance(payload, dict):
        text = str(payload.get("error") or payload.get("errorMsg") or payload)
    else:
        text = str(payload)
    return redact(text[:300])


# ------------------------------------------------------------------------------------------------
# Paper trading with the venue's fees
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
    """A Polymarket venue: paper trading against the live books unless ``live``; with complete
    credentials and ``live_fees`` the account's fee rates replace the configured ones in both modes."""
    real = vc.real
    if real is None:
        raise ValueError(f"venue {vc.name} is not a real venue")
    complete = credentials is not None and credentials.complete(KIND)
    if live and not complete:
        missing = [f for f in REQUIRED[KIND] if not _has(credentials, f)]
        raise VenueError(vc.name, f"live trading needs the credentials {', '.join(missing)}")
    feed = PolymarketFeed(listings, clock)
    stale_s = float(real.stale_after_s)  # float ok: a timeout
    supervisor = SupervisorConfig(url=real.ws_url, stale_after_s=stale_s, keepalive_s=min(KEEPALIVE_S, stale_s / 2))
    holder: list[LiveVenue] = []

    def fees(market: str) -> FeeSchedule:
        return holder[0].fees(market) if holder else vc.fees

    trader: PolymarketTrader | PaperTrader | PaperWithLiveFees
    if live:
        trader = PolymarketTrader(
            vc.name,
            listings,
            markets,
            real,
            credentials,
            clock,
            fees,
            feed.tick,
            hash_book=OrderHashBook(default_hash_book_path(vc.name)),
        )
    else:
        trader = PaperTrader(
            vc.name, listings, markets, feed.book, fees, real.paper_balances, clock, real.paper_latency_ms
        )
        if complete and real.live_fees:
            trader = PaperWithLiveFees(
                trader, PolymarketTrader(vc.name, listings, markets, real, credentials, clock, fees, feed.tick)
            )
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
        use_live_fees=complete and real.live_fees,
        tap=tap,
    )
    holder.append(venue)
    return venue


def _has(credentials: Credentials | None, name: str) -> bool:
    return credentials is not None and isinstance(credentials.get(name), Secret)


def make_feed(vc: VenueConfig, listings: Sequence[Listing], clock: Clock) -> PolymarketFeed:
    """The market-channel feed alone, without a socket: replay drives it with recorded frames."""
    return PolymarketFeed(list(listings), clock)
