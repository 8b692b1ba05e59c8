"""The wire format of simulated venues' market data, and the feed that reads it back.

In-process simulated venues have no socket, but a session recording must hold their market data as
frames so that replay runs a parser like for any venue. One frame is one L2 change of one market:

    {"m": "BTC-USD", "s": 1, "b": [["65000.1", "0.25"], ...], "a": [["65000.2", "0"], ...]}

``m`` the canonical market, ``b``/``a`` bid and ask levels as [price, absolute quantity] decimal
strings (quantity "0" deletes the level), ``s`` present (1) on a snapshot that replaces the book.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import orjson

from arbtui.domain.book import Level, OrderBook
from arbtui.domain.instruments import Listing
from arbtui.venues.connection import FeedCounters, FeedLink
from arbtui.venues.wire import MalformedFrame, decimal_string


def render_frame(market: str, bids: Sequence[Level], asks: Sequence[Level], *, snapshot: bool) -> str:
    doc: dict[str, object] = {
        "m": market,
        "b": [[format(p, "f"), format(q, "f")] for p, q in bids],
        "a": [[format(p, "f"), format(q, "f")] for p, q in asks],
    }
    if snapshot:
        doc["s"] = 1
    return orjson.dumps(doc).decode()


def _levels(raw: object, what: str) -> list[tuple[Decimal, Decimal]]:
    if not isinstance(raw, list):
        raise MalformedFrame(f"{what} is not a list")
    out = []
    for lv in raw:
        if not isinstance(lv, list) or len(lv) != 2:
            raise MalformedFrame(f"a {what} level is not [price, quantity]")
        out.append((decimal_string(lv[0], f"{what} price"), decimal_string(lv[1], f"{what} quantity")))
    return out


class SimFeed:
    """Reads simulated venues' frames into books (implements :class:`arbtui.venues.live.BookFeed`)."""

    def __init__(self, venue: str, listings: Sequence[Listing], depth: int) -> None:
        self.venue = venue
        self.counters = FeedCounters()
        self._markets = {lst.market for lst in listings}
        self._depth = depth
        self._books: dict[str, OrderBook] = {}
        self._on_change: Callable[[str], None] = lambda market: None

    def set_on_change(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change

    def book(self, market: str) -> OrderBook | None:
        return self._books.get(market)

    def resync(self, market: str, reason: str) -> None:
        self.counters.resyncs += 1
        self._books.pop(market, None)  # wait for the next snapshot

    def on_open(self, link: FeedLink) -> Sequence[str]:
        return ()

    def on_close(self) -> None:
        self._books.clear()

    def on_frame(self, raw: str | bytes, ts_ns: int) -> None:
        try:
            msg = orjson.loads(raw)
            if not isinstance(msg, dict) or not isinstance(msg.get("m"), str):
                raise MalformedFrame("not a simulated venue frame")
            market = msg["m"]
            bids = _levels(msg.get("b", []), "bid")
            asks = _levels(msg.get("a", []), "ask")
        except (orjson.JSONDecodeError, MalformedFrame):
            self.counters.malformed += 1
            return
        if market not in self._markets:
            self.counters.malformed += 1
            return
        book = self._books.get(market)
        if msg.get("s"):
            if book is None:
                book = self._books[market] = OrderBook(depth=self._depth)
            book.apply_snapshot(bids, asks, ts_ns)
        elif book is None:
            return  # an update before the first snapshot: nothing to apply it to
        else:
            book.apply_update(bids, asks, ts_ns)
        self.counters.book_updates += 1
        self._on_change(market)
