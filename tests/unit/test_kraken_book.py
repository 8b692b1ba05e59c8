"""Kraken v2 book checksums, against Kraken's documented vector and a real recorded stream
(tests/data/kraken-v2-book-btcusd-2023-07-30.jsonl, see tests/data/README.md)."""

from __future__ import annotations

import zlib
from decimal import Decimal
from pathlib import Path

import orjson

from arbtui.domain.book import OrderBook
from arbtui.venues.kraken_book import KrakenBooks, MalformedFrame, book_checksum, checksum_token, parse_frame

DATA = Path(__file__).resolve().parents[1] / "data" / "kraken-v2-book-btcusd-2023-07-30.jsonl"
D = Decimal


def test_tokens_pad_to_precision_and_strip_leading_zeros() -> None:
    assert checksum_token(D("45285.2"), 1) == "452852"
    assert checksum_token(D("0.001"), 8) == "100000"
    assert checksum_token(D("0.566"), 4) == "5660"
    assert checksum_token(D("18097.1547"), 8) == "1809715470000"


def test_documented_vector() -> None:
    """Kraken's v2 book guide, BTC/USD at (1, 8): 3310070434 (VENUES.md 1.6 A)."""
    bids = ("45283.5/0.10000000 45283.4/1.54582015 45282.1/0.10000000 45281.0/0.10000000 45280.3/1.54592586 "
            "45279.0/0.07990000 45277.6/0.03310103 45277.5/0.30000000 45277.3/1.54602737 45276.6/0.15445238")
    asks = ("45285.2/0.00100000 45286.4/1.54571953 45286.6/1.54571109 45289.6/1.54560911 45290.2/0.15890660 "
            "45291.8/1.54553491 45294.7/0.04454749 45296.1/0.35380000 45297.5/0.09945542 45299.5/0.18772827")

    def levels(text: str) -> list[tuple[Decimal, Decimal]]:
        return [(D(p), D(q)) for p, q in (x.split("/") for x in text.split())]

    book = OrderBook(depth=10)
    book.apply_snapshot(levels(bids), levels(asks), 0)
    assert book_checksum(book, 1, 8) == 3310070434


def test_every_frame_of_the_recorded_stream_verifies() -> None:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 510
    books = KrakenBooks(depth=10, precision={"BTC/USD": (1, 8)})
    verified = [books.on_raw(line, i) for i, line in enumerate(lines)]
    assert verified == ["BTC/USD"] * 510
    assert books.checksum_failures == 0 and books.malformed == 0
    first = orjson.loads(lines[0])["data"][0]["checksum"]
    assert first == 2785033588
    # The negative vector: one more bid that Kraken's own checksum says the book must not match.
    bad = orjson.dumps({"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "bids": [
        {"price": 29430.3, "qty": 1.69289565}], "asks": [], "checksum": 2438868880}]})
    assert books.on_raw(bad, 511) is None
    assert books.checksum_failures == 1 and "BTC/USD" in books.needs_resync
    # Until a fresh snapshot arrives, updates are not applied to the wrong book.
    assert books.on_raw(lines[1], 512) is None
    assert books.on_raw(lines[0], 513) == "BTC/USD"
    assert not books.needs_resync


def test_skipping_truncation_or_padding_breaks_the_checksums() -> None:
    """The two rules matter: without them most frames fail (why they are implemented)."""
    lines = DATA.read_text(encoding="utf-8").splitlines()
    books = KrakenBooks(depth=1000, precision={"BTC/USD": (1, 8)})  # no truncation to 10
    for i, line in enumerate(lines):
        books.on_raw(line, i)
        books.needs_resync.clear()
    assert books.checksum_failures > 400
    snapshot = orjson.loads(lines[0])["data"][0]
    unpadded = "".join(f"{lv['price']}{lv['qty']}".replace(".", "").lstrip("0") for lv in snapshot["asks"][:10])
    unpadded += "".join(f"{lv['price']}{lv['qty']}".replace(".", "").lstrip("0") for lv in snapshot["bids"][:10])
    assert zlib.crc32(unpadded.encode()) != snapshot["checksum"]


def test_malformed_frames_are_counted_and_skipped() -> None:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    books = KrakenBooks(depth=10, precision={"BTC/USD": (1, 8)})
    assert books.on_raw(lines[0], 0) == "BTC/USD"
    before = books.books["BTC/USD"].sequence
    head = '{"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", '
    for raw in ('{"channel": "book"', "[1, 2]", head + '"bids": [{"price": "x"}], "asks": []}]}',
                head + '"bids": [{"price": -1, "qty": 1}], "asks": []}]}'):
        assert books.on_raw(raw, 1) is None
    assert books.malformed == 4
    assert books.books["BTC/USD"].sequence == before  # nothing applied in part
    assert books.on_raw('{"channel": "heartbeat"}', 2) is None and books.malformed == 4
    assert parse_frame('{"method": "subscribe", "success": true}') is None
    try:
        parse_frame("{")
    except MalformedFrame as exc:
        assert "not JSON" in str(exc)
    else:
        raise AssertionError("a truncated frame must be malformed")
