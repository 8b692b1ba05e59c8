"""Polymarket market channel: the doc's own frames
(docs.polymarket.com/market-data/websocket/market-channel), arrays of events, the best_bid/best_ask
cross-check, tick size changes, PONG, malformed frames."""

from __future__ import annotations

from decimal import Decimal

import orjson

from arbtui.venues.polymarket_book import PolymarketBooks

D = Decimal
YES = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
NO = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
MARKET = "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1"


def book(asset: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> dict[str, object]:
    return {
        "event_type": "book",
        "asset_id": asset,
        "market": MARKET,
        "timestamp": "123456789000",
        "hash": "0x0",
        "bids": [{"price": p, "size": s} for p, s in bids],
        "asks": [{"price": p, "size": s} for p, s in asks],
    }


DOC_PRICE_CHANGE = {
    "market": MARKET,
    "timestamp": "1757908892351",
    "event_type": "price_change",
    "price_changes": [
        {
            "asset_id": YES,
            "price": "0.5",
            "size": "200",
            "side": "BUY",
            "hash": "56621a12",
            "best_bid": "0.5",
            "best_ask": "1",
        },
        {
            "asset_id": NO,
            "price": "0.5",
            "size": "200",
            "side": "SELL",
            "hash": "1895759e",
            "best_bid": "0",
            "best_ask": "0.5",
        },
    ],
}


def test_the_docs_price_change_applies_to_both_tokens() -> None:
    books = PolymarketBooks(assets={YES, NO})
    assert books.on_raw(orjson.dumps([book(YES, [], []), book(NO, [], [])]), 1) == [YES, NO]  # an array frame
    assert books.on_raw(orjson.dumps(DOC_PRICE_CHANGE), 2) == [YES, NO]
    assert books.books[YES].best_bid() == (D("0.5"), D("200"))
    assert books.books[NO].best_ask() == (D("0.5"), D("200"))
    assert books.integrity_failures == 0


def test_snapshot_levels_without_leading_zero_are_sorted_locally() -> None:
    books = PolymarketBooks(assets={YES})
    frame = book(YES, [(".48", "30"), (".49", "20"), (".50", "15")], [(".52", "25"), (".53", "60"), (".54", "10")])
    assert books.on_raw(orjson.dumps(frame), 1) == [YES]
    assert books.books[YES].best_bid() == (D("0.50"), D("15"))
    assert books.books[YES].best_ask() == (D("0.52"), D("25"))


def test_a_disagreeing_top_of_book_discards_the_book_until_a_snapshot() -> None:
    books = PolymarketBooks(assets={YES})
    books.on_raw(orjson.dumps(book(YES, [(".48", "30")], [(".52", "25")])), 1)
    wrong = {
        "event_type": "price_change",
        "market": MARKET,
        "price_changes": [
            {"asset_id": YES, "price": "0.47", "size": "10", "side": "BUY", "best_bid": "0.49", "best_ask": "0.52"}
        ],
    }
    assert books.on_raw(orjson.dumps(wrong), 2) == []
    assert books.integrity_failures == 1 and YES in books.needs_resync and YES not in books.books
    assert books.on_raw(orjson.dumps(book(YES, [(".49", "5")], [(".52", "25")])), 3) == [YES]
    assert not books.needs_resync


def test_size_zero_removes_a_level_and_tick_size_changes_are_kept() -> None:
    books = PolymarketBooks(assets={YES})
    books.on_raw(orjson.dumps(book(YES, [(".48", "30"), (".47", "10")], [(".52", "25")])), 1)
    remove = {
        "event_type": "price_change",
        "market": MARKET,
        "price_changes": [
            {"asset_id": YES, "price": "0.48", "size": "0", "side": "BUY", "best_bid": "0.47", "best_ask": "0.52"}
        ],
    }
    assert books.on_raw(orjson.dumps(remove), 2) == [YES]
    assert books.books[YES].best_bid() == (D("0.47"), D("10"))
    tick = {
        "event_type": "tick_size_change",
        "asset_id": YES,
        "market": MARKET,
        "old_tick_size": "0.01",
        "new_tick_size": "0.001",
        "timestamp": "100000000",
    }
    assert books.on_raw(orjson.dumps(tick), 3) == []
    assert books.ticks[YES] == D("0.001")


def test_pong_is_not_an_error_and_malformed_frames_are_skipped_whole() -> None:
    books = PolymarketBooks(assets={YES, NO})
    books.on_raw(orjson.dumps([book(YES, [(".48", "30")], []), book(NO, [], [(".52", "1")])]), 1)
    assert books.on_raw("PONG", 2) == [] and books.malformed == 0
    good = book(YES, [(".10", "1")], [])
    bad = {"event_type": "book", "asset_id": NO, "bids": [{"price": "x", "size": "1"}], "asks": []}
    assert books.on_raw(orjson.dumps([good, bad]), 3) == []  # one bad event: nothing of the frame applies
    assert books.books[YES].best_bid() == (D("0.48"), D("30"))
    for raw in ("{", '{"no": "event_type"}', orjson.dumps({"event_type": "price_change"})):
        assert books.on_raw(raw, 4) == []
    assert books.malformed == 4


def test_several_entries_for_one_asset_are_checked_once_against_the_last_entry() -> None:
    # Two stamping conventions the doc's one-entry example cannot tell apart: each entry carries the
    # top after itself, or every entry carries the top after the whole event. Both must pass.
    for first_top in (("0.49", "0.52"), ("0.50", "0.51")):
        books = PolymarketBooks(assets={YES})
        books.on_raw(orjson.dumps(book(YES, [(".48", "30")], [(".52", "25")])), 1)
        event = {
            "event_type": "price_change",
            "market": MARKET,
            "price_changes": [
                {
                    "asset_id": YES,
                    "price": "0.49",
                    "size": "5",
                    "side": "BUY",
                    "best_bid": first_top[0],
                    "best_ask": first_top[1],
                },
                {"asset_id": YES, "price": "0.50", "size": "7", "side": "BUY", "best_bid": "0.50", "best_ask": "0.52"},
                {"asset_id": YES, "price": "0.51", "size": "2", "side": "SELL", "best_bid": "0.50", "best_ask": "0.51"},
            ],
        }
        assert books.on_raw(orjson.dumps(event), 2) == [YES]
        assert books.integrity_failures == 0
        assert books.books[YES].best_bid() == (D("0.50"), D("7")) and books.books[YES].best_ask() == (D("0.51"), D("2"))
    wrong = {
        "event_type": "price_change",
        "market": MARKET,
        "price_changes": [
            {"asset_id": YES, "price": "0.40", "size": "1", "side": "BUY", "best_bid": "0.50", "best_ask": "0.51"},
            {"asset_id": YES, "price": "0.39", "size": "1", "side": "BUY", "best_bid": "0.49", "best_ask": "0.51"},
        ],
    }
    assert books.on_raw(orjson.dumps(wrong), 3) == [] and books.integrity_failures == 1
