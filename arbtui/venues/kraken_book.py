"""Kraken WebSocket v2 ``book`` channel: parse frames, keep the books, verify every checksum.

Rules (Kraken's book guide, VENUES.md section 1.3-1.4):

- ``qty`` is the absolute size at a price; 0 deletes the level; all levels of a frame are applied in
  order (a later entry for the same price wins) before the checksum is computed;
- after every frame the book is truncated to the subscribed depth (Kraken sends no deletes for
  levels that fall out of scope);
- the CRC32 covers the top 10 asks (low to high) then the top 10 bids (high to low), each level as
  ``price_token + qty_token``, a token being the value rendered at the instrument's precision with
  the ``.`` removed and leading zeros stripped. Prices and sizes arrive as JSON numbers that lose
  trailing zeros, hence the rendering at the precision, never ``repr``;
- the snapshot carries a checksum too, and is verified like every update;
- a mismatch means the local book is wrong: the caller resubscribes for a fresh snapshot.

Values go through ``Decimal(repr(float))``: the shortest repr of a JSON number is its wire text.

:class:`KrakenBooks` is the socket-free core (replay, tests); :class:`arbtui.venues.kraken.KrakenFeed`
is the live feed built on the same parser and checksum.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice
from typing import Any

import orjson

from arbtui.domain.book import Level, OrderBook
from arbtui.venues.wire import MalformedFrame

__all__ = [
    "CHECKSUM_LEVELS",
    "BookFrame",
    "KrakenBooks",
    "MalformedFrame",
    "book_checksum",
    "book_frame",
    "checksum_token",
    "levels_checksum",
    "parse_frame",
]

CHECKSUM_LEVELS = 10
_ONE = Decimal(1)


@lru_cache(maxsize=1 << 16)
def checksum_token(value: Decimal, precision: int) -> str:
    """``value`` at ``precision`` decimals, without the ``.`` and without leading zeros.

    Scaling to an integer does both at once: ``45285.2`` at 1 -> ``452852``; ``0.001`` at 8 ->
    ``100000``. A value with more decimals than the precision is rounded half-even (Kraken never
    sends one; the rounding only keeps a corrupt value from raising). Cached: a frame changes a
    few levels, the checksum renders twenty, so most tokens were rendered for an earlier frame
    (this was ~70% of the feed's CPU time uncached). Equal Decimals have equal tokens, so the cache
    is keyed by value, not by spelling.
    """
    scaled = value.scaleb(precision)
    if scaled != scaled.to_integral_value():
        scaled = scaled.quantize(_ONE, rounding=ROUND_HALF_EVEN)
    n = int(scaled)
    return str(n) if n else ""


def levels_checksum(asks: Iterable[Level], bids: Iterable[Level], price_precision: int, qty_precision: int) -> int:
    """CRC32 of the first 10 of ``asks`` (best first = ascending) then of ``bids`` (best first = descending)."""
    tok = checksum_token
    pp, qp = price_precision, qty_precision
    text = "".join([tok(p, pp) + tok(q, qp) for p, q in islice(asks, CHECKSUM_LEVELS)])
    text += "".join([tok(p, pp) + tok(q, qp) for p, q in islice(bids, CHECKSUM_LEVELS)])
    return zlib.crc32(text.encode("ascii"))


def book_checksum(book: OrderBook, price_precision: int, qty_precision: int) -> int:
    """The checksum Kraken would send for ``book`` (which must already be truncated to its depth)."""
    return levels_checksum(
        book.asks.top(CHECKSUM_LEVELS), book.bids.top(CHECKSUM_LEVELS), price_precision, qty_precision
    )


@dataclass(frozen=True, slots=True)
class BookFrame:
    symbol: str
    snapshot: bool
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int | None


def _number(value: Any, where: str) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest repr is the JSON text Kraken sent
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise MalformedFrame(f"{where}: not a number: {value!r}") from None
    raise MalformedFrame(f"{where}: price and qty must be numbers")


def _levels(raw: Any, where: str) -> tuple[Level, ...]:
    if not isinstance(raw, list):
        raise MalformedFrame(f"{where}: expected a list of levels")
    out = []
    for level in raw:
        try:
            price, qty = level["price"], level["qty"]
        except (TypeError, KeyError):
            raise MalformedFrame(f"{where}: a level without price and qty") from None
        p = _number(price, where)
        q = _number(qty, where)
        if not p.is_finite() or not q.is_finite() or p <= 0 or q < 0:
            raise MalformedFrame(f"{where}: impossible level {price}/{qty}")
        out.append((p, q))
    return tuple(out)


def book_frame(msg: dict[str, Any]) -> BookFrame:
    """The book snapshot or update in a decoded ``"channel": "book"`` message. Raises :class:`MalformedFrame`."""
    kind = msg.get("type")
    data = msg.get("data")
    if (
        kind not in ("snapshot", "update")
        or not isinstance(data, list)
        or len(data) != 1
        or not isinstance(data[0], dict)
    ):
        raise MalformedFrame("book frame without a type or a single data element")
    d = data[0]
    symbol = d.get("symbol")
    if not isinstance(symbol, str):
        raise MalformedFrame("book frame without a symbol")
    checksum = d.get("checksum")
    if checksum is not None and (isinstance(checksum, bool) or not isinstance(checksum, int)):
        raise MalformedFrame("checksum is not an integer")
    return BookFrame(
        symbol, kind == "snapshot", _levels(d.get("bids", []), "bids"), _levels(d.get("asks", []), "asks"), checksum
    )


def parse_frame(raw: str | bytes) -> BookFrame | str | None:
    """A ``book`` frame, or the channel name of another frame ("heartbeat", "status", ...), or None
    for a method reply (subscribe acks). Raises :class:`MalformedFrame`."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise MalformedFrame("not a JSON object")
    if "method" in msg:
        return None
    channel = msg.get("channel")
    if not isinstance(channel, str):
        raise MalformedFrame("no channel")
    if channel != "book":
        return channel
    return book_frame(msg)


@dataclass
class KrakenBooks:
    """The books of one Kraken book subscription, verified frame by frame."""

    depth: int
    precision: dict[str, tuple[int, int]]  # symbol -> (price_precision, qty_precision)
    books: dict[str, OrderBook] = field(default_factory=dict)
    frames: int = 0
    malformed: int = 0
    checksum_failures: int = 0
    needs_resync: set[str] = field(default_factory=set)

    def on_raw(self, raw: str | bytes, ts_ns: int) -> str | None:
        """Apply one raw frame; returns the symbol whose book changed (and verified), else None."""
        self.frames += 1
        try:
            frame = parse_frame(raw)
        except MalformedFrame:
            self.malformed += 1
            return None
        if not isinstance(frame, BookFrame):
            return None
        precision = self.precision.get(frame.symbol)
        if precision is None:
            self.malformed += 1
            return None
        if frame.symbol in self.needs_resync and not frame.snapshot:
            return None  # waiting for the fresh snapshot; updates on a wrong book are useless
        book = self.books.get(frame.symbol)
        if book is None:
            if not frame.snapshot:
                self.malformed += 1
                return None
            book = self.books[frame.symbol] = OrderBook(depth=self.depth)
        if frame.snapshot:
            book.apply_snapshot(frame.bids, frame.asks, ts_ns)
        else:
            book.apply_update(frame.bids, frame.asks, ts_ns)
        if frame.checksum is not None and book_checksum(book, *precision) != frame.checksum:
            self.checksum_failures += 1
            self.needs_resync.add(frame.symbol)
            return None
        self.needs_resync.discard(frame.symbol)
        return frame.symbol
