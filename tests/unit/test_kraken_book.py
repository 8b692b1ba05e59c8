"""Kraken v2 book checksums, against Kraken's documented vector and a real recorded stream
(tests/data/kraken-v2-book-btcusd-2023-07-30.jsonl, see tests/data/README.md); the feed's fast book
(KrakenBook) against the reference path on that stream, on the benchmark's generated stream and on
random frames."""

from __future__ import annotations

import zlib
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbtui.bench.kraken_stream import KrakenBookStream, generate
from arbtui.domain.book import OrderBook
from arbtui.domain.orders import Side
from arbtui.venues.kraken_book import (
    KrakenBook,
    KrakenBooks,
    MalformedFrame,
    book_checksum,
    book_frame,
    checksum_token,
    parse_frame,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "kraken-v2-book-btcusd-2023-07-30.jsonl"
D = Decimal


def test_tokens_pad_to_precision_and_strip_leading_zeros() -> None:
    assert checksum_token(D("45285.2"), 1) == "452852"
    assert checksum_token(D("0.001"), 8) == "100000"
    assert checksum_token(D("0.566"), 4) == "5660"
    assert checksum_token(D("18097.1547"), 8) == "1809715470000"


def test_documented_vector() -> None:
    """Kraken's v2 book guide, BTC/USD at (1, 8): 3310070434 (docs.kraken.com/api/docs/guides/spot-ws-book-v2)."""
    bids = (
        "45283.5/0.10000000 45283.4/1.54582015 45282.1/0.10000000 45281.0/0.10000000 45280.3/1.54592586 "
        "45279.0/0.07990000 45277.6/0.03310103 45277.5/0.30000000 45277.3/1.54602737 45276.6/0.15445238"
    )
    asks = (
        "45285.2/0.00100000 45286.4/1.54571953 45286.6/1.54571109 45289.6/1.54560911 45290.2/0.15890660 "
        "45291.8/1.54553491 45294.7/0.04454749 45296.1/0.35380000 45297.5/0.09945542 45299.5/0.18772827"
    )

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
    bad = orjson.dumps(
        {
            "channel": "book",
            "type": "update",
            "data": [
                {
                    "symbol": "BTC/USD",
                    "bids": [{"price": 29430.3, "qty": 1.69289565}],
                    "asks": [],
                    "checksum": 2438868880,
                }
            ],
        }
    )
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
    for raw in (
        '{"channel": "book"',
        "[1, 2]",
        head + '"bids": [{"price": "x"}], "asks": []}]}',
        head + '"bids": [{"price": -1, "qty": 1}], "asks": []}]}',
    ):
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


# --- the hot path (KrakenBook) against the reference ----------------------------------------------
#
# The reference is the plain path: book_frame (Decimal(repr(float)) levels) applied to an OrderBook,
# checked with book_checksum (tokens rendered from the Decimals). KrakenBook must hold the same levels,
# give the same checksum after every frame, and answer every OrderBook question the same way.


def reference_apply(ref: OrderBook, raw: str | bytes, ts_ns: int) -> tuple[OrderBook, int | None]:
    frame = parse_frame(raw)
    assert not isinstance(frame, str) and frame is not None
    if frame.snapshot:
        ref = OrderBook(depth=ref.depth)
        ref.apply_snapshot(frame.bids, frame.asks, ts_ns)
    else:
        ref.apply_update(frame.bids, frame.asks, ts_ns)
    return ref, frame.checksum


def fast_apply(book: KrakenBook, raw: str | bytes, ts_ns: int) -> tuple[KrakenBook, int]:
    d = orjson.loads(raw)["data"][0]
    if orjson.loads(raw)["type"] == "snapshot":
        book = KrakenBook(book.depth or 10, *book.precision)
    return book, book.apply_raw(d.get("bids"), d.get("asks"), ts_ns)


def assert_same_book(fast: KrakenBook, ref: OrderBook, pp: int = 1, qp: int = 8) -> None:
    assert list(fast.asks) == list(ref.asks)
    assert list(fast.bids) == list(ref.bids)
    assert len(fast.bids) == len(ref.bids) and len(fast.asks) == len(ref.asks)
    assert fast.best_bid() == ref.best_bid() and fast.best_ask() == ref.best_ask()
    assert fast.mid() == ref.mid() and fast.is_crossed() == ref.is_crossed()
    assert fast.sequence == ref.sequence and fast.last_update_ns == ref.last_update_ns
    for n in (0, 1, 3, 10, 30):
        assert fast.bids.top(n) == ref.bids.top(n) and fast.asks.top(n) == ref.asks.top(n)
    for price, _qty in list(ref.bids) + list(ref.asks):
        assert fast.bids.quantity_at(price) == ref.bids.quantity_at(price)
        assert fast.asks.quantity_at(price) == ref.asks.quantity_at(price)
    assert fast.asks.quantity_at(D("1.05")) == 0
    for side in (Side.BUY, Side.SELL):
        for q in (D("0.001"), D("1.5"), D("1000")):
            assert fast.estimate_fill(side, q) == ref.estimate_fill(side, q)
        best = ref.taken_side(side).best()
        if best is not None:
            assert fast.size_up_to(side, best[0]) == ref.size_up_to(side, best[0])
    assert fast.checksum() == book_checksum(ref, pp, qp)


def test_the_fast_book_matches_the_reference_on_every_frame_of_the_recorded_stream() -> None:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    fast, ref = KrakenBook(10, 1, 8), OrderBook(depth=10)
    for i, line in enumerate(lines):
        ref, expected = reference_apply(ref, line, i)
        fast, crc = fast_apply(fast, line, i)
        assert crc == expected == book_checksum(ref, 1, 8)
        if i % 25 == 0 or i > 500:  # every OrderBook question, often (reading makes Decimals lazily)
            assert_same_book(fast, ref)
    assert_same_book(fast, ref)


def test_the_generated_stream_verifies_through_the_reference_and_the_fast_book() -> None:
    """The benchmark's stream: its integer-token checksums agree with book_checksum (reference_every=1
    raises otherwise), and both implementations verify every frame and end with the same book."""
    frames, stream = generate(3000, seed=11, reference_every=1)
    assert stream.reference_checked == 3000
    assert stream.stats.deletes > 100 and stream.stats.truncations > 100
    assert max(stream.stats.per_frame) >= 3
    fast, ref = KrakenBook(10, 1, 8), OrderBook(depth=10)
    for i, raw in enumerate(frames):
        ref, expected = reference_apply(ref, raw, i)
        fast, crc = fast_apply(fast, raw, i)
        assert crc == expected == book_checksum(ref, 1, 8), i
        if i % 97 == 0:
            assert_same_book(fast, ref)
    assert_same_book(fast, ref)
    # A trailing-zero value on the wire: the generator writes 4.0 BTC as 4.0 and 0.5 as 0.5.
    assert any(b'"qty":0.5,' in f or b'"qty":0.5}' in f for f in frames)


# Random frames: prices on a 0.1 grid near 100 (a tight band, so levels collide, get deleted, pushed
# out and come back), quantities with up to 8 decimals; some values sent as integers or strings or off
# the grid (the reference path), the same price twice in one frame, deletes of absent levels.
grid_prices = st.integers(min_value=995, max_value=1010)
quantities = st.one_of(
    st.just(0), st.integers(min_value=1, max_value=10**10), st.sampled_from([10**5, 10**8, 4 * 10**8])
)
spellings = st.sampled_from(["float", "float", "float", "int", "str", "off-grid"])


RawLevel = tuple[dict[str, object], Decimal, Decimal]  # (as on the wire, the Decimal price, the Decimal qty)


@st.composite
def raw_level(draw: st.DrawFn) -> RawLevel:
    ticks, lots, how = draw(grid_prices), draw(quantities), draw(spellings)
    price, qty = Decimal(ticks).scaleb(-1), Decimal(lots).scaleb(-8)
    if how == "int" and ticks % 10 == 0:
        return {"price": ticks // 10, "qty": float(qty)}, price, qty
    if how == "str":
        return {"price": str(price), "qty": format(qty, "f")}, price, qty
    if how == "off-grid":  # more decimals than the precision: rounded half-even for the token
        price = price + Decimal("0.05")
        return {"price": float(price), "qty": float(qty)}, price, qty
    return {"price": float(price), "qty": float(qty)}, price, qty


frames_strategy = st.lists(
    st.tuples(st.lists(raw_level(), max_size=4), st.lists(raw_level(), max_size=4), st.booleans()),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(frames=frames_strategy, depth=st.sampled_from([1, 3, 10, 25]))
def test_the_fast_book_matches_the_reference_on_random_frames(
    frames: list[tuple[list[RawLevel], list[RawLevel], bool]],
    depth: int,
) -> None:
    fast, ref = KrakenBook(depth, 1, 8), OrderBook(depth=depth)
    for i, (bids, asks, snapshot) in enumerate(frames):
        raw_bids, raw_asks = [b[0] for b in bids], [a[0] for a in asks]
        ref_bids, ref_asks = [(b[1], b[2]) for b in bids], [(a[1], a[2]) for a in asks]
        if snapshot:
            fast, ref = KrakenBook(depth, 1, 8), OrderBook(depth=depth)
            ref.apply_snapshot(ref_bids, ref_asks, i)
        else:
            ref.apply_update(ref_bids, ref_asks, i)
        crc = fast.apply_raw(raw_bids, raw_asks, i)
        assert crc == book_checksum(ref, 1, 8)
        assert_same_book(fast, ref)


def test_a_malformed_level_anywhere_in_a_frame_changes_nothing() -> None:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    book, _ = fast_apply(KrakenBook(10, 1, 8), lines[0], 0)
    before = (list(book.bids), list(book.asks), book.sequence, book.checksum())
    good = {"price": 29430.2, "qty": 1.5}
    for bids, asks in (
        ([good], [{"price": "x", "qty": 1}]),
        ([good, {"price": -1.0, "qty": 1.0}], []),
        ([good], [good, {"price": 29431.0}]),
        ([good], [good, {"price": 29431.0, "qty": -0.5}]),
        ([good], [good, [29431.0, 1.0]]),
        ([good], "oops"),
        ([good, {"price": True, "qty": 1.0}], []),
        ([good, {"price": "0.12345678901234567890", "qty": 1.0}], []),  # more digits than Kraken sends
    ):
        with pytest.raises(MalformedFrame):
            book.apply_raw(bids, asks, 1)
        assert (list(book.bids), list(book.asks), book.sequence, book.checksum()) == before


def test_values_beyond_the_fast_path_take_the_reference_path() -> None:
    """Huge values, tiny ones and values off the grid are not provably exact as floats times a power
    of ten: they are rendered from their Decimal, as the reference does."""
    fast, ref = KrakenBook(10, 1, 8), OrderBook(depth=10)
    levels = [(1e300, 1.0), (29431.0, 1.5e300), (5.0, 1e-9), (7.25, 0.123456789), (3.0, 4.0)]
    for i, (p, q) in enumerate(levels):
        crc = fast.apply_raw([], [{"price": p, "qty": q}], i)
        ref.apply_update([], [(D(repr(p)), D(repr(q)))], i)
        assert crc == book_checksum(ref, 1, 8)
    assert_same_book(fast, ref)


def test_new_precisions_render_every_token_again() -> None:
    """The instrument channel can change a pair's precision: the checksum follows at once."""
    lines = DATA.read_text(encoding="utf-8").splitlines()
    fast, ref = KrakenBook(10, 1, 8), OrderBook(depth=10)
    for i, line in enumerate(lines[:40]):
        ref, _ = reference_apply(ref, line, i)
        fast, _ = fast_apply(fast, line, i)
    fast.retoken(2, 9)
    assert fast.precision == (2, 9) and fast.checksum() == book_checksum(ref, 2, 9)
    fast.retoken(1, 8)
    assert fast.checksum() == book_checksum(ref, 1, 8)


def test_the_decimal_api_writes_a_fast_book_too() -> None:
    """KrakenBook is an OrderBook: apply_snapshot/apply_update with Decimal levels keep the tokens."""
    stream = KrakenBookStream(seed=3)
    snapshot = parse_frame(stream.snapshot())
    update = parse_frame(stream.update())
    assert not isinstance(snapshot, str) and snapshot is not None
    assert not isinstance(update, str) and update is not None
    fast, ref = KrakenBook(10, 1, 8), OrderBook(depth=10)
    for book in (fast, ref):
        book.apply_snapshot(snapshot.bids, snapshot.asks, 1)
        book.apply_update(update.bids, update.asks, 2)
    assert_same_book(fast, ref)
    assert fast.checksum() == update.checksum
    fast.bids.set(D("1.05"), D("1"))  # a direct write, as a BookSide allows
    ref.bids.set(D("1.05"), D("1"))
    assert list(fast.bids) == list(ref.bids)
    with pytest.raises(ValueError):
        fast.bids.set(D("1.0500000000000000001"), D("1"))  # more digits than Kraken publishes
    assert book_frame  # the reference parser stays public
