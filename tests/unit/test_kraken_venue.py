"""Kraken venue module without a network: the documented vectors, the feed driven frame by frame
through a :class:`NullLink` (the real recorded stream in tests/data, see its README), the error and
status mappings, and what ``build_venue`` builds in each mode.

Vectors are copied here with their sources (tests never read /work/shared).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from arbtui.config import RealVenueConfig, SimVenueConfig, VenueConfig
from arbtui.domain.clock import ManualClock
from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.orders import OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.connection import NullLink
from arbtui.venues.kraken import (
    KrakenFeed,
    KrakenTrader,
    PaperWithLiveFees,
    _Kind,
    _order_status,
    api_sign,
    asset_name,
    book_checksum,
    build_venue,
    check_listing,
    classify_errors,
    match_pair,
    parse_asset_pairs,
    rest_pair,
)
from arbtui.venues.live import PaperTrader
from arbtui.venues.secrets import Credentials, Secret

D = Decimal
DATA = Path(__file__).resolve().parents[1] / "data" / "kraken-v2-book-btcusd-2023-07-30.jsonl"
BTC = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.00000001"), D("0.0001"), 1, 8)
MARKETS = {"BTC-USD": Market("BTC-USD", "BTC", "USD")}

# Kraken's REST authentication guide's example (docs.kraken.com/api/docs/guides/spot-rest-auth).
SIGN_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
SIGN_NONCE = 1616492376594
SIGN_BODY = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
SIGN_PATH = "/0/private/AddOrder"
SIGN_EXPECTED = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="

# Kraken's v2 book guide (docs.kraken.com/api/docs/guides/spot-ws-book-v2), BTC/USD at (1, 8): 3310070434.
DOC_BIDS = (
    "45283.5/0.10000000 45283.4/1.54582015 45282.1/0.10000000 45281.0/0.10000000 45280.3/1.54592586 "
    "45279.0/0.07990000 45277.6/0.03310103 45277.5/0.30000000 45277.3/1.54602737 45276.6/0.15445238"
)
DOC_ASKS = (
    "45285.2/0.00100000 45286.4/1.54571953 45286.6/1.54571109 45289.6/1.54560911 45290.2/0.15890660 "
    "45291.8/1.54553491 45294.7/0.04454749 45296.1/0.35380000 45297.5/0.09945542 45299.5/0.18772827"
)


def doc_levels(text: str) -> list[tuple[str, str]]:
    return [(p, q) for p, q in (x.split("/") for x in text.split())]


# --- vectors ------------------------------------------------------------------------------------


def test_api_sign_matches_krakens_documented_example() -> None:
    assert api_sign(SIGN_PATH, SIGN_BODY, SIGN_NONCE, SIGN_SECRET) == SIGN_EXPECTED
    assert api_sign(SIGN_PATH, SIGN_BODY.encode(), str(SIGN_NONCE), SIGN_SECRET) == SIGN_EXPECTED
    # Any change to what is signed changes the signature.
    assert api_sign("/0/private/CancelOrder", SIGN_BODY, SIGN_NONCE, SIGN_SECRET) != SIGN_EXPECTED
    assert api_sign(SIGN_PATH, SIGN_BODY.replace("1.25", "1.26"), SIGN_NONCE, SIGN_SECRET) != SIGN_EXPECTED


def test_book_checksum_matches_the_documented_vector_from_strings_decimals_and_floats() -> None:
    asks, bids = doc_levels(DOC_ASKS), doc_levels(DOC_BIDS)
    assert book_checksum(asks, bids, 1, 8) == 3310070434
    assert book_checksum([(D(p), D(q)) for p, q in asks], [(D(p), D(q)) for p, q in bids], 1, 8) == 3310070434
    # Floats lose trailing zeros (0.10000000 -> 0.1); the checksum renders them at the precision.
    as_floats = [(float(p), float(q)) for p, q in asks], [(float(p), float(q)) for p, q in bids]
    assert book_checksum(*as_floats, 1, 8) == 3310070434
    # Only the top 10 of each side count.
    deeper = asks + [("45300.0", "9.9")], bids + [("45200.0", "9.9")]
    assert book_checksum(*deeper, 1, 8) == 3310070434
    # At the wrong precision the same book gives another checksum.
    assert book_checksum(asks, bids, 2, 8) != 3310070434


# --- the feed -----------------------------------------------------------------------------------


def recorded() -> list[str]:
    return DATA.read_text(encoding="utf-8").splitlines()


def instrument_frame(symbol: str = "BTC/USD", pp: int = 1, qp: int = 8, status: str = "online") -> str:
    pair = {
        "symbol": symbol,
        "base": "BTC",
        "quote": "USD",
        "status": status,
        "price_precision": pp,
        "qty_precision": qp,
        "price_increment": 0.1,
        "qty_increment": 1e-08,
        "qty_min": 0.0001,
    }
    return orjson.dumps({"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": [pair]}}).decode()


def test_feed_subscribes_instrument_then_book_at_the_configured_depth() -> None:
    feed = KrakenFeed("kraken", [BTC], depth=25)
    link = NullLink()
    instrument, book = (orjson.loads(m) for m in feed.on_open(link))
    assert instrument["method"] == "subscribe" and instrument["params"]["channel"] == "instrument"
    assert book["method"] == "subscribe"
    assert book["params"] == {"channel": "book", "symbol": ["BTC/USD"], "depth": 25, "snapshot": True}
    assert instrument["req_id"] != book["req_id"]
    with pytest.raises(ValueError):
        KrakenFeed("kraken", [BTC], depth=20)


def test_feed_verifies_every_frame_of_the_recorded_stream_and_reports_the_canonical_market() -> None:
    feed = KrakenFeed("kraken", [BTC], depth=10)
    changed: list[str] = []
    feed.set_on_change(changed.append)
    link = NullLink()
    feed.on_open(link)
    feed.on_frame('{"method":"subscribe","result":{"channel":"book","depth":10,"symbol":"BTC/USD"},"success":true}', 0)
    lines = recorded()
    for i, line in enumerate(lines):
        feed.on_frame(line, i + 1)
    assert feed.counters.book_updates == 510 and feed.counters.integrity_failures == 0
    assert feed.counters.malformed == 0 and feed.counters.resyncs == 0
    assert changed == ["BTC-USD"] * 510
    book = feed.book("BTC-USD")
    assert book is not None and len(book.bids) == 10 and len(book.asks) == 10
    assert link.sent == [] and link.reconnects == []

    # Kraken's negative vector (btschwertfeger/python-kraken-sdk tests/spot/test_spot_orderbook.py):
    # this update must not verify against the book the 509 updates built.
    bad = {
        "channel": "book",
        "type": "update",
        "data": [
            {"symbol": "BTC/USD", "bids": [{"price": 29430.3, "qty": 1.69289565}], "asks": [], "checksum": 2438868880}
        ],
    }
    feed.on_frame(orjson.dumps(bad), 600)
    assert feed.counters.integrity_failures == 1 and feed.counters.resyncs == 1
    assert feed.book("BTC-USD") is None  # never shown while wrong
    unsubscribe, subscribe = (orjson.loads(m) for m in link.sent)
    assert unsubscribe["method"] == "unsubscribe" and unsubscribe["params"]["symbol"] == ["BTC/USD"]
    assert subscribe["method"] == "subscribe" and subscribe["params"]["symbol"] == ["BTC/USD"]
    # Updates before the fresh snapshot are dropped; the snapshot brings the book back.
    feed.on_frame(lines[5], 601)
    assert feed.book("BTC-USD") is None and feed.counters.book_updates == 510
    feed.on_frame(lines[0], 602)
    assert feed.book("BTC-USD") is not None and feed.counters.book_updates == 511
    assert len(link.sent) == 2  # one resubscribe, not one per frame


def test_instrument_precision_wins_for_the_checksum_and_a_config_mismatch_is_recorded() -> None:
    """The config says price precision 2; Kraken says 1. Checksums are Kraken's statement about its
    rendering, so they are verified at Kraken's precision (at the config's, every frame fails)."""
    wrong = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.00000001"), D("0.0001"), 2, 8)
    lines = recorded()
    before = KrakenFeed("kraken", [wrong])
    before.on_open(NullLink())
    before.on_frame(lines[0], 0)
    assert before.counters.integrity_failures == 1 and before.book("BTC-USD") is None

    feed = KrakenFeed("kraken", [wrong])
    feed.on_open(NullLink())
    feed.on_frame(instrument_frame(pp=1, qp=8), 0)
    for i, line in enumerate(lines[:50]):
        feed.on_frame(line, i + 1)
    assert feed.counters.integrity_failures == 0 and feed.counters.book_updates == 50
    assert feed.precision_source["BTC/USD"] == "instrument"
    assert "1/8" in feed.precision_mismatches["BTC/USD"] and "2/8" in feed.precision_mismatches["BTC/USD"]
    assert feed.pair_status["BTC/USD"] == "online"
    # A matching instrument frame clears the note.
    feed.on_frame(instrument_frame(pp=2, qp=8), 99)
    assert "BTC/USD" not in feed.precision_mismatches


def test_malformed_frames_are_counted_and_other_frames_handled() -> None:
    feed = KrakenFeed("kraken", [BTC])
    feed.on_open(NullLink())
    lines = recorded()
    feed.on_frame(lines[0], 0)
    sequence = feed.book("BTC-USD").sequence  # type: ignore[union-attr]
    garbage = [
        "not json {",
        b"\xff\xfe",
        "[1, 2, 3]",
        '{"channel": "book", "type": "update", "data": "oops"}',
        '{"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "bids": [{"price": "x", "qty": 1}],'
        ' "asks": [], "checksum": 1}]}',
        '{"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "bids": [], "asks": []}]}',  # no checksum
        '{"channel": "instrument", "type": "snapshot", "data": [1]}',
        '{"no": "channel"}',
    ]
    for raw in garbage:
        feed.on_frame(raw, 1)
    assert feed.counters.malformed == len(garbage)
    assert feed.book("BTC-USD").sequence == sequence  # type: ignore[union-attr]  # nothing applied in part
    feed.on_frame('{"channel": "heartbeat"}', 2)
    status = '{"channel":"status","type":"update","data":[{"version":"2.0.0","system":"online","api_version":"v2"}]}'
    feed.on_frame(status, 3)
    feed.on_frame('{"method": "subscribe", "success": false, "error": "Currency pair not supported XYZ/USD"}', 4)
    feed.on_frame('{"channel": "ticker", "type": "update", "data": []}', 5)  # not ours: ignored
    feed.on_frame(
        '{"channel": "book", "type": "update", "data": [{"symbol": "ETH/USD", "bids": [], "asks": [], "checksum": 0}]}',
        6,
    )  # a symbol we did not ask for: ignored
    assert feed.counters.malformed == len(garbage)
    assert feed.heartbeats == 1 and feed.system_status == "online"
    assert feed.subscribe_errors == ["subscribe failed: Currency pair not supported XYZ/USD"]


def test_a_resubscribe_without_a_snapshot_reconnects_after_the_timeout() -> None:
    feed = KrakenFeed("kraken", [BTC], resync_timeout_s=2)
    link = NullLink()
    feed.on_open(link)
    feed.on_frame(recorded()[0], 1_000_000_000)
    feed.resync("BTC-USD", "crossed book")
    assert feed.counters.resyncs == 1 and feed.book("BTC-USD") is None and len(link.sent) == 2
    feed.resync("BTC-USD", "again")  # already resubscribing: no second request
    assert feed.counters.resyncs == 1 and len(link.sent) == 2
    feed.on_frame('{"channel": "heartbeat"}', 2_500_000_000)
    assert link.reconnects == []
    feed.on_frame('{"channel": "heartbeat"}', 3_100_000_000)
    assert link.reconnects == ["BTC/USD: no snapshot after resubscribing"]


def test_a_failing_fresh_snapshot_resubscribes_again_and_repeated_failures_reconnect() -> None:
    feed = KrakenFeed("kraken", [BTC])
    link = NullLink()
    feed.on_open(link)
    snapshot = orjson.loads(recorded()[0])
    snapshot["data"][0]["checksum"] ^= 1
    bad = orjson.dumps(snapshot)
    feed.on_frame(bad, 1)
    assert len(link.sent) == 2 and feed.counters.resyncs == 1
    feed.on_frame(bad, 2)  # the fresh snapshot fails too: it needs another resubscribe, not a wait
    assert len(link.sent) == 4 and feed.counters.resyncs == 2
    for i in range(3, 6):
        feed.on_frame(bad, i)
    assert link.reconnects == [] and feed.counters.resyncs == 5
    feed.on_frame(bad, 6)  # the sixth failure in a row: start over with the supervisor's backoff
    assert link.reconnects == ["BTC/USD: 5 resubscribes did not verify"]
    assert feed.counters.integrity_failures == 6 and feed.book("BTC-USD") is None


def test_a_listener_error_is_not_mistaken_for_a_malformed_frame() -> None:
    feed = KrakenFeed("kraken", [BTC])
    feed.on_open(NullLink())

    def broken(market: str) -> None:
        raise ValueError("a bug downstream")

    feed.set_on_change(broken)
    with pytest.raises(ValueError, match="a bug downstream"):
        feed.on_frame(recorded()[0], 0)
    assert feed.counters.malformed == 0 and feed.counters.book_updates == 1


def test_on_close_forgets_the_books() -> None:
    feed = KrakenFeed("kraken", [BTC])
    feed.on_open(NullLink())
    feed.on_frame(recorded()[0], 0)
    assert feed.book("BTC-USD") is not None
    feed.on_close()
    assert feed.book("BTC-USD") is None


# --- mappings -----------------------------------------------------------------------------------


# Every error string Kraken documents (docs.kraken.com/api/docs/guides/spot-errors; the support
# article "API error messages", support.kraken.com/hc/en-us/articles/360001491786), plus those ccxt
# (ts/src/kraken.ts, exceptions) and python-kraken-sdk (src/kraken/exceptions/__init__.py) map, with
# what each means for a caller. A rate limit is a rejection (Kraken's spot rate-limit guide: the
# request is rejected), so it is retried after the counter decays; a service error leaves an order's
# outcome unknown; a refusal means nothing happened.
DOCUMENTED_ERRORS: list[tuple[str, _Kind]] = [
    # general usage
    ("EGeneral:Invalid arguments", _Kind.REFUSED),
    ("EGeneral:Invalid arguments:Index unavailable", _Kind.REFUSED),
    ("EGeneral:Permission denied", _Kind.REFUSED),
    ("EGeneral:Unknown method", _Kind.REFUSED),
    ("EAPI:Invalid key", _Kind.REFUSED),
    ("EAPI:Invalid signature", _Kind.REFUSED),
    ("EAPI:Bad request", _Kind.REFUSED),
    ("EAPI:Feature disabled", _Kind.REFUSED),
    ("EAPI:Invalid arguments:price below min", _Kind.REFUSED),
    ("EAuth:Failed", _Kind.REFUSED),
    ("ESession:Invalid session", _Kind.REFUSED),
    ("EQuery:Unknown asset pair", _Kind.REFUSED),
    ("EQuery:Unknown asset", _Kind.REFUSED),
    ("EQuery:Invalid asset pair", _Kind.REFUSED),
    ("EAPI:Invalid nonce", _Kind.NONCE),
    # rate limits
    ("EAPI:Rate limit exceeded", _Kind.RATE),
    ("EOrder:Rate limit exceeded", _Kind.RATE),
    ("EOrder:Domain rate limit exceeded", _Kind.RATE),
    ("EGeneral:Too many requests", _Kind.RATE),
    ("EGeneral:Temporary lockout", _Kind.RATE),
    # trading
    ("EOrder:Cannot open position", _Kind.REFUSED),
    ("EOrder:Margin allowance exceeded", _Kind.REFUSED),
    ("EOrder:Margin level too low", _Kind.REFUSED),
    ("EOrder:Margin position size exceeded", _Kind.REFUSED),
    ("EOrder:Insufficient margin", _Kind.REFUSED),
    ("EOrder:Insufficient funds", _Kind.REFUSED),
    ("EOrder:Order minimum not met", _Kind.REFUSED),
    ("EOrder:Cost minimum not met", _Kind.REFUSED),
    ("EOrder:Tick size check failed", _Kind.REFUSED),
    ("EOrder:Orders limit exceeded", _Kind.REFUSED),
    ("EOrder:Positions limit exceeded", _Kind.REFUSED),
    ("EOrder:Invalid order", _Kind.REFUSED),
    ("EOrder:Invalid price", _Kind.REFUSED),
    ("EOrder:Unknown position", _Kind.REFUSED),
    ("EOrder:Unknown order", _Kind.UNKNOWN_ORDER),
    ("ETrade:User Locked", _Kind.REFUSED),
    # funding
    ("EFunding:Unknown withdraw key", _Kind.REFUSED),
    ("EFunding:Invalid amount", _Kind.REFUSED),
    ("EFunding:Unknown asset", _Kind.REFUSED),
    ("EFunding:Max fee exceeded", _Kind.REFUSED),
    # service status
    ("EService:Unavailable", _Kind.SERVICE),
    ("EService:Busy", _Kind.SERVICE),
    ("EService:Timeout", _Kind.SERVICE),
    ("EService:Market in cancel_only mode", _Kind.REFUSED),
    ("EService:Market in post_only mode", _Kind.REFUSED),
    ("EService:Deadline elapsed", _Kind.REFUSED),
    # internal
    ("EGeneral:Internal error", _Kind.SERVICE),
    ("EDatabase:Internal error", _Kind.SERVICE),
]


@pytest.mark.parametrize(("error", "kind"), DOCUMENTED_ERRORS, ids=[e for e, _ in DOCUMENTED_ERRORS])
def test_every_documented_kraken_error_string_is_classified(error: str, kind: _Kind) -> None:
    assert classify_errors([error]) is kind
    assert classify_errors([error + ":some detail"]) is kind  # Kraken may append ":<extra info>"


@pytest.mark.parametrize(
    ("errors", "kind"),
    [
        (["EGeneral:Invalid arguments:volume"], _Kind.REFUSED),
        (["EService:Temporarily unavailable"], _Kind.SERVICE),  # not a known refusal: unknown, asked later
        (["ESomething:New"], _Kind.SERVICE),
        (["ESession:Something else"], _Kind.SERVICE),  # only the documented session error is a refusal
        (["EOrder:Insufficient funds", "EService:Busy"], _Kind.SERVICE),  # any doubt wins over a refusal
        (["EGeneral:Too many requests", "EOrder:Insufficient funds"], _Kind.RATE),
    ],
)
def test_kraken_error_arrays_are_classified(errors: list[str], kind: _Kind) -> None:
    assert classify_errors(errors) is kind


# AssetPairs as Kraken answers it (docs.kraken.com/api/docs/rest-api/get-tradable-asset-pairs):
# keyed by the internal name, wsname in v1 naming; dogecoin is XDGUSD, not XXDGZUSD.
ASSET_PAIRS = {
    "XXBTZUSD": {
        "altname": "XBTUSD",
        "wsname": "XBT/USD",
        "aclass_base": "currency",
        "base": "XXBT",
        "aclass_quote": "currency",
        "quote": "ZUSD",
        "lot": "unit",
        "cost_decimals": 5,
        "pair_decimals": 1,
        "lot_decimals": 8,
        "lot_multiplier": 1,
        "leverage_buy": [2, 3, 4, 5],
        "leverage_sell": [2, 3, 4, 5],
        "fees": [[0, 0.4], [10000, 0.35]],
        "fees_maker": [[0, 0.25], [10000, 0.2]],
        "fee_volume_currency": "ZUSD",
        "margin_call": 80,
        "margin_stop": 40,
        "ordermin": "0.00005",
        "costmin": "0.5",
        "tick_size": "0.1",
        "status": "online",
    },
    "XDGUSD": {
        "altname": "XDGUSD",
        "wsname": "XDG/USD",
        "pair_decimals": 7,
        "lot_decimals": 8,
        "tick_size": "0.0000001",
    },
    "XETHXXBT": {
        "altname": "ETHXBT",
        "wsname": "ETH/XBT",
        "pair_decimals": 5,
        "lot_decimals": 8,
        "status": "cancel_only",
    },
    "XXBTZUSD.d": {"altname": "XBTUSD.d", "pair_decimals": 1, "lot_decimals": 8},  # dark pool: no book
    "BROKEN": {"wsname": "BRO/KEN"},  # no altname or decimals: left out
}


def test_asset_pairs_are_read_by_internal_name_and_matched_to_v2_symbols() -> None:
    pairs = parse_asset_pairs(ASSET_PAIRS)
    assert set(pairs) == {"XXBTZUSD", "XDGUSD", "XETHXXBT"}
    btc = pairs["XXBTZUSD"]
    assert (btc.key, btc.altname, btc.wsname, btc.v2_symbol) == ("XXBTZUSD", "XBTUSD", "XBT/USD", "BTC/USD")
    assert (btc.pair_decimals, btc.lot_decimals, btc.cost_decimals) == (1, 8, 5)
    assert (btc.ordermin, btc.costmin, btc.tick_size, btc.status) == (D("0.00005"), D("0.5"), D("0.1"), "online")
    assert match_pair("BTC/USD", pairs) is btc
    doge = match_pair("DOGE/USD", pairs)
    assert doge is not None and doge.key == "XDGUSD" and doge.altname == "XDGUSD"
    eth = match_pair("ETH/BTC", pairs)
    assert eth is not None and eth.key == "XETHXXBT" and eth.altname == "ETHXBT"
    assert match_pair("SOL/USD", pairs) is None
    with pytest.raises(ValueError):
        parse_asset_pairs(["not", "an", "object"])


def test_a_listing_is_checked_against_krakens_increments() -> None:
    btc = parse_asset_pairs(ASSET_PAIRS)["XXBTZUSD"]
    exact = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.00000001"), D("0.00005"), 1, 8)
    assert check_listing(exact, btc) == ([], [])
    finer = Listing("kraken", "BTC-USD", "BTC/USD", D("0.01"), D("0.00000001"), D("0.00005"), 2, 8)
    problems, _ = check_listing(finer, btc)
    assert any("pair_decimals 1" in p for p in problems) and any("tick_size 0.1" in p for p in problems)
    too_many_qty_digits = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.000000001"), D("0.00005"), 1, 9)
    problems, _ = check_listing(too_many_qty_digits, btc)
    assert problems == ["qty precision 9 > Kraken's lot_decimals 8"]
    coarser = Listing("kraken", "BTC-USD", "BTC/USD", D("1"), D("0.0001"), D("0.0001"), 0, 4)
    problems, notes = check_listing(coarser, btc)
    assert problems == [] and len(notes) == 3  # coarser decimals and tick: Kraken takes every such order
    small_min = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.00000001"), D("0.00000001"), 1, 8)
    assert check_listing(small_min, btc)[0] == [] and "ordermin" in check_listing(small_min, btc)[1][0]
    eth = parse_asset_pairs(ASSET_PAIRS)["XETHXXBT"]
    eth_listing = Listing("kraken", "ETH-BTC", "ETH/BTC", D("0.00001"), D("0.00000001"), D("0.00000001"), 5, 8)
    assert check_listing(eth_listing, eth) == ([], ["Kraken lists the pair as cancel_only"])


def test_order_statuses_map_to_arbtui_statuses() -> None:
    one, half, zero = D("1"), D("0.5"), D("0")
    assert _order_status("pending", one, zero, TimeInForce.IOC, None) is OrderStatus.OPEN
    assert _order_status("open", one, zero, TimeInForce.GTC, None) is OrderStatus.OPEN
    assert _order_status("open", one, half, TimeInForce.GTC, None) is OrderStatus.PARTIALLY_FILLED
    assert _order_status("closed", one, one, TimeInForce.IOC, None) is OrderStatus.FILLED
    assert _order_status("closed", one, half, TimeInForce.IOC, None) is OrderStatus.EXPIRED
    assert _order_status("canceled", one, half, TimeInForce.IOC, "Immediate or cancel") is OrderStatus.EXPIRED
    assert _order_status("canceled", one, zero, TimeInForce.GTC, "User requested") is OrderStatus.CANCELLED
    assert _order_status("canceled", one, zero, TimeInForce.IOC, "User requested") is OrderStatus.CANCELLED
    assert _order_status("expired", one, zero, TimeInForce.GTC, None) is OrderStatus.EXPIRED
    assert _order_status("weird", one, zero, None, None) is None


def test_rest_pairs_and_asset_codes() -> None:
    assert rest_pair("BTC/USD") == "XBTUSD"
    assert rest_pair("ETH/BTC") == "ETHXBT"
    assert rest_pair("DOGE/USD") == "XDGUSD"
    assert rest_pair("SOL/EUR") == "SOLEUR"
    with pytest.raises(ValueError):
        rest_pair("BTCUSD")
    assert asset_name("XXBT") == "BTC" and asset_name("XBT") == "BTC"
    assert asset_name("ZUSD") == "USD" and asset_name("XETH") == "ETH" and asset_name("ZEUR") == "EUR"
    assert asset_name("DOT") == "DOT" and asset_name("USDC") == "USDC"
    assert asset_name("XSOL", ["SOL"]) == "SOL" and asset_name("XSOL") == "XSOL"
    assert asset_name("ETH.F") is None and asset_name("DOT.S") is None


def test_nonces_strictly_increase_even_when_time_stands_still() -> None:
    clock = ManualClock(1_700_000_000_000_000_000)
    creds = Credentials("kraken", {"api_key": Secret("k" * 20), "api_secret": Secret(SIGN_SECRET)}, "test")
    trader = KrakenTrader("kraken", [BTC], MARKETS, creds, clock)
    nonces = [trader._next_nonce() for _ in range(1000)]
    assert nonces == sorted(set(nonces)) and nonces[0] == 1_700_000_000_000_000


# --- build_venue ----------------------------------------------------------------------------------


def venue_config(**real: object) -> VenueConfig:
    settings = RealVenueConfig("ws://127.0.0.1:9/v2", "http://127.0.0.1:9", **real)  # type: ignore[arg-type]
    return VenueConfig(
        "kraken", "kraken", FeeSchedule(D("0"), D("0.001"), FeeModel.NOTIONAL), SimVenueConfig(), None, settings
    )


def credentials() -> Credentials:
    return Credentials("kraken", {"api_key": Secret("key-" + "a" * 20), "api_secret": Secret(SIGN_SECRET)}, "test")


def test_build_venue_paper_live_and_paper_with_live_fees() -> None:
    clock = ManualClock()
    paper = build_venue(venue_config(paper_balances={"USD": D(100)}), [BTC], MARKETS, clock, None, live=False, tap=None)
    assert paper.mode == "paper" and isinstance(paper.trader, PaperTrader) and paper.kind == "kraken"
    assert isinstance(paper.feed, KrakenFeed) and paper.feed.depth == 10

    with_fees = build_venue(venue_config(), [BTC], MARKETS, clock, credentials(), live=False, tap=None)
    assert isinstance(with_fees.trader, PaperWithLiveFees)  # fees from Kraken, orders on paper
    no_fees = build_venue(venue_config(live_fees=False), [BTC], MARKETS, clock, credentials(), live=False, tap=None)
    assert isinstance(no_fees.trader, PaperTrader)

    live = build_venue(venue_config(rate_tier="pro"), [BTC], MARKETS, clock, credentials(), live=True, tap=None)
    assert live.mode == "live" and isinstance(live.trader, KrakenTrader)
    assert {b.name for b in live.budgets()} == {"kraken REST calls", "kraken BTC/USD trading"}
    assert max(b.limit for b in live.budgets()) == 180  # the pro tier's trading counter
    with pytest.raises(VenueError):
        build_venue(venue_config(), [BTC], MARKETS, clock, None, live=True, tap=None)
    # No secret value in anything printable.
    for text in (repr(live.trader), repr(credentials()), str(live.budgets())):
        assert SIGN_SECRET not in text and "key-aaaa" not in text


async def test_unsupported_and_unrenderable_orders_are_refused_locally() -> None:
    clock = ManualClock()
    trader = KrakenTrader("kraken", [BTC], MARKETS, credentials(), clock)
    fok = await trader.place_order(OrderRequest("f1", "kraken", "BTC-USD", Side.BUY, D("1"), D("100"), TimeInForce.FOK))
    assert fok.status is OrderStatus.REJECTED and "fill-or-kill" in (fok.reason or "")
    fine = await trader.place_order(OrderRequest("p1", "kraken", "BTC-USD", Side.BUY, D("1"), D("100.05")))
    assert fine.status is OrderStatus.REJECTED and "decimal places" in (fine.reason or "")
    other = await trader.place_order(OrderRequest("m1", "kraken", "ETH-USD", Side.BUY, D("1"), D("100")))
    assert other.status is OrderStatus.REJECTED and "unknown market" in (other.reason or "")
    assert trader.requests_sent == 0  # none of these reached the wire


# --- the feed's book, as the engine reads it -------------------------------------------------------


def test_make_feed_gives_replay_the_book_feed_and_its_books_are_the_reference_books() -> None:
    """``make_feed`` (what replay builds for a kraken venue) is the same KrakenFeed; the book it hands
    the engine after every frame holds exactly the levels of the reference path (Decimal levels from
    book_frame applied to a plain OrderBook), read the way the engine and the venue read it."""
    from arbtui.domain.book import OrderBook
    from arbtui.venues.kraken import make_feed
    from arbtui.venues.kraken_book import BookFrame, parse_frame

    feed = make_feed(venue_config(), [BTC], ManualClock())
    assert isinstance(feed, KrakenFeed) and feed.depth == 10
    feed.on_open(NullLink())
    ref = OrderBook(depth=10)
    for i, line in enumerate(recorded()):
        feed.on_frame(line, i)
        frame = parse_frame(line)
        assert isinstance(frame, BookFrame)
        (ref.apply_snapshot if frame.snapshot else ref.apply_update)(frame.bids, frame.asks, i)
        book = feed.book("BTC-USD")
        assert book is not None
        assert book.best_bid() == ref.best_bid() and book.best_ask() == ref.best_ask()
        assert book.is_crossed() == ref.is_crossed() and book.mid() == ref.mid()
        if i % 50 == 0:
            assert list(book.bids) == list(ref.bids) and list(book.asks) == list(ref.asks)
    assert feed.counters.book_updates == 510 and feed.counters.integrity_failures == 0


def test_a_precision_change_while_a_book_is_live_renders_its_tokens_again() -> None:
    """Kraken's instrument channel moves BTC/USD to 2/9 mid-stream: the live book is re-tokened at
    once, so the next frame (checksummed by Kraken at 2/9) verifies without a resync."""
    from arbtui.domain.book import OrderBook
    from arbtui.venues.kraken_book import BookFrame, book_checksum, parse_frame

    feed = KrakenFeed("kraken", [BTC])
    feed.on_open(NullLink())
    lines = recorded()
    ref = OrderBook(depth=10)
    for i, line in enumerate(lines[:30]):
        feed.on_frame(line, i)
        frame = parse_frame(line)
        assert isinstance(frame, BookFrame)
        (ref.apply_snapshot if frame.snapshot else ref.apply_update)(frame.bids, frame.asks, i)
    feed.on_frame(instrument_frame(pp=2, qp=9), 30)
    for i, line in enumerate(lines[30:40], start=31):
        frame = parse_frame(line)
        assert isinstance(frame, BookFrame)
        ref.apply_update(frame.bids, frame.asks, i)
        msg = orjson.loads(line)
        msg["data"][0]["checksum"] = book_checksum(ref, 2, 9)  # what Kraken would send at 2/9
        feed.on_frame(orjson.dumps(msg), i)
    assert feed.counters.integrity_failures == 0 and feed.counters.resyncs == 0
    assert feed.counters.book_updates == 40


async def test_a_status_lookup_never_adopts_an_order_that_does_not_name_our_id() -> None:
    creds = Credentials("kraken", {"api_key": Secret("key-123456"), "api_secret": Secret(SIGN_SECRET)}, "test")
    trader = KrakenTrader("kraken", [BTC], MARKETS, creds, ManualClock(1_000))
    other = {
        "status": "closed",
        "vol": "0.5",
        "vol_exec": "0.5",
        "cost": "32500",
        "fee": "52",
        "price": "65000",
        "descr": {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "65000"},
    }

    async def call(method: str, params: list[tuple[str, str]], **kw: object) -> object:
        # The venue ignores the cl_ord_id filter and lists another order of the account (no cl_ord_id).
        return {"open": {}} if method == "OpenOrders" else {"closed": {"OTHER-TXID": other}}

    trader._call = call  # type: ignore[method-assign]
    with pytest.raises(UnknownOrder):
        await trader.order_status("alostreply0001")


def test_an_update_that_leaves_a_side_out_reads_it_as_no_levels() -> None:
    feed = KrakenFeed("kraken", [BTC])
    feed.on_open(NullLink())
    lines = recorded()
    feed.on_frame(lines[0], 0)
    applied = 1
    for i, line in enumerate(lines[1:60], start=1):
        msg = orjson.loads(line)
        data = msg["data"][0]
        for side in ("bids", "asks"):
            if not data[side]:
                del data[side]  # the same frame without its empty side
        feed.on_frame(orjson.dumps(msg), i)
        applied += 1
    assert feed.counters.book_updates == applied and feed.counters.integrity_failures == 0
    assert feed.counters.malformed == 0
