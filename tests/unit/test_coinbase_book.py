"""Coinbase level2 messages: "offer" is the ask side, absolute sizes, snapshots replace, and a
sequence gap discards every book of the connection
(message shapes from docs.cdp.coinbase.com/advanced-trade/docs/ws-channels, level2)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from arbtui.venues.coinbase_book import CoinbaseBooks

D = Decimal


def msg(seq: int, events: list[dict[str, Any]], channel: str = "l2_data") -> bytes:
    return orjson.dumps(
        {
            "channel": channel,
            "client_id": "",
            "timestamp": "2024-10-08T09:10:36.04370306Z",
            "sequence_num": seq,
            "events": events,
        }
    )


def level(side: str, price: str, qty: str) -> dict[str, str]:
    return {"side": side, "event_time": "2024-10-08T09:10:34.970831Z", "price_level": price, "new_quantity": qty}


SNAPSHOT = {
    "type": "snapshot",
    "product_id": "BTC-USD",
    "updates": [
        level("bid", "62319.46", "0.5"),
        level("bid", "62318.81", "1.25"),
        level("offer", "62336.65", "0.03021537"),
        level("offer", "62340.00", "2"),
    ],
}


def test_snapshot_then_updates_with_offer_as_asks() -> None:
    books = CoinbaseBooks(products={"BTC-USD"})
    assert books.on_raw(msg(0, [SNAPSHOT]), 1) == ["BTC-USD"]
    book = books.books["BTC-USD"]
    assert book.best_bid() == (D("62319.46"), D("0.5"))
    assert book.best_ask() == (D("62336.65"), D("0.03021537"))
    update = {
        "type": "update",
        "product_id": "BTC-USD",
        "updates": [
            level("bid", "62319.46", "0.00169"),
            level("bid", "62318.81", "0"),
            level("offer", "62330.00", "1"),
        ],
    }
    assert books.on_raw(msg(1, [update]), 2) == ["BTC-USD"]
    assert book.best_bid() == (D("62319.46"), D("0.00169"))
    assert book.bids.quantity_at(D("62318.81")) == 0  # "0" removed it
    assert book.best_ask() == (D("62330.00"), D("1"))
    assert books.gaps == 0 and books.malformed == 0


def test_a_sequence_gap_discards_the_books_until_a_new_snapshot() -> None:
    books = CoinbaseBooks(products={"BTC-USD"})
    books.on_raw(msg(0, [SNAPSHOT]), 1)
    books.on_raw(msg(1, [], channel="heartbeats"), 2)  # heartbeats share the connection's sequence
    assert books.gaps == 0
    update = {"type": "update", "product_id": "BTC-USD", "updates": [level("bid", "62000", "1")]}
    assert books.on_raw(msg(5, [update]), 3) == []  # 2, 3, 4 were dropped
    assert books.gaps == 1 and "BTC-USD" in books.needs_resync and "BTC-USD" not in books.books
    assert books.on_raw(msg(6, [update]), 4) == []  # no book to apply it to
    assert books.on_raw(msg(7, [SNAPSHOT]), 5) == ["BTC-USD"]
    assert not books.needs_resync and books.books["BTC-USD"].best_bid() == (D("62319.46"), D("0.5"))


def test_malformed_messages_are_counted_and_skipped_whole() -> None:
    books = CoinbaseBooks(products={"BTC-USD"})
    books.on_raw(msg(0, [SNAPSHOT]), 1)
    before = books.books["BTC-USD"].sequence
    bad_number = {
        "type": "update",
        "product_id": "BTC-USD",
        "updates": [level("bid", "62000", "1"), level("bid", "oops", "1")],
    }
    for raw in (
        b"{",
        msg(1, [bad_number]),
        b'{"channel": "l2_data", "sequence_num": "2"}',
        msg(3, [{"type": "update", "product_id": "BTC-USD", "updates": [level("bid", "1", "-1")]}]),
    ):
        assert books.on_raw(raw, 2) == []
    assert books.malformed == 4
    assert books.books["BTC-USD"].sequence == before  # the good first level of a bad event was not applied
    assert books.books["BTC-USD"].bids.quantity_at(D("62000")) == 0


def test_other_products_are_ignored() -> None:
    books = CoinbaseBooks(products={"ETH-USD"})
    assert books.on_raw(msg(0, [SNAPSHOT]), 1) == []
    assert books.books == {}
