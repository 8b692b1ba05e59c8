"""Coinbase Advanced Trade WebSocket ``level2`` (channel ``l2_data``): parse, keep books, detect gaps.

Rules (Coinbase's level2 and heartbeats examples at docs.cdp.coinbase.com, and hummingbot's
``coinbase_advanced_trade_order_book.py``):

- ``new_quantity`` is the absolute size at ``price_level`` (strings); ``"0"`` removes the level;
- ``side`` is ``"bid"`` or ``"offer"`` (anything but ``bid`` is the ask side);
- one message may carry several events (one per product); a ``snapshot`` replaces the book;
- level2 has no checksum: the envelope ``sequence_num`` is the only integrity check. It counts every
  message on the connection (all channels), so anything but ``previous + 1`` (a jump: messages were
  dropped; a repeat or a step back: messages are out of order) means the connection's books cannot be
  trusted: every book on the connection is discarded and must be resubscribed for fresh snapshots.
  The scope of ``sequence_num`` (per connection, all channels) is an inference from hummingbot and
  the docs' examples, not an official statement (no Coinbase statement of its scope was found).
- ``{"type": "error", "message": ...}`` frames (no channel, no sequence) are the venue's complaints
  about a request (a bad subscribe); they are reported, not counted as malformed.

Books are kept at full depth: level2 sends every level once and then only changes, so a level cut
off locally would never come back when the book moves towards it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from arbtui.domain.book import Level, OrderBook
from arbtui.venues.wire import MalformedFrame, decimal_string


@dataclass(frozen=True, slots=True)
class L2Event:
    product: str
    snapshot: bool
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Envelope:
    channel: str  # "l2_data", "heartbeats", "subscriptions", ..., or "error" for an error frame
    sequence: int | None  # None only for error frames
    events: tuple[L2Event, ...] = ()  # l2_data only
    heartbeat_counter: int | None = None  # heartbeats only
    error: str | None = None  # error frames only: the venue's message


def _heartbeat_counter(events: object) -> int | None:
    if not isinstance(events, list) or not events or not isinstance(events[0], dict):
        return None
    value = events[0].get("heartbeat_counter")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def parse_message(raw: str | bytes) -> Envelope:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise MalformedFrame("not a JSON object")
    channel = msg.get("channel")
    if not isinstance(channel, str):
        if msg.get("type") == "error":
            message = msg.get("message")
            reason = msg.get("reason")
            text = message if isinstance(message, str) else "error"
            if isinstance(reason, str) and reason:
                text = f"{text}: {reason}"
            return Envelope("error", None, error=text)
        raise MalformedFrame("no channel")
    seq = msg.get("sequence_num")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise MalformedFrame("no integer sequence_num")
    if channel != "l2_data":
        if channel == "heartbeats":
            return Envelope(channel, seq, heartbeat_counter=_heartbeat_counter(msg.get("events")))
        return Envelope(channel, seq)
    events = msg.get("events")
    if not isinstance(events, list):
        raise MalformedFrame("l2_data without events")
    out = []
    for ev in events:
        if not isinstance(ev, dict) or ev.get("type") not in ("snapshot", "update"):
            raise MalformedFrame("event without a snapshot/update type")
        product = ev.get("product_id")
        updates = ev.get("updates")
        if not isinstance(product, str) or not isinstance(updates, list):
            raise MalformedFrame("event without product_id or updates")
        bids: list[Level] = []
        asks: list[Level] = []
        for u in updates:
            if not isinstance(u, dict):
                raise MalformedFrame("an update is not an object")
            price = decimal_string(u.get("price_level"), "price_level")
            qty = decimal_string(u.get("new_quantity"), "new_quantity")
            if price == 0:
                raise MalformedFrame("price_level 0")
            (bids if u.get("side") == "bid" else asks).append((price, qty))
        out.append(L2Event(product, ev["type"] == "snapshot", tuple(bids), tuple(asks)))
    return Envelope("l2_data", seq, tuple(out))


@dataclass
class CoinbaseBooks:
    """The level2 books of one connection, with gap detection on the envelope sequence.

    :meth:`on_raw` applies one message and returns the products whose book changed; the caller reads
    ``last`` for what else the message was (a heartbeat, an error) and ``gap`` for whether it broke
    the sequence.
    """

    products: set[str]
    depth: int | None = None
    books: dict[str, OrderBook] = field(default_factory=dict)
    last_sequence: int | None = None
    frames: int = 0
    malformed: int = 0
    gaps: int = 0
    needs_resync: set[str] = field(default_factory=set)
    last: Envelope | None = None  # the last message understood
    gap: bool = False  # whether the last message broke the sequence

    def on_raw(self, raw: str | bytes, ts_ns: int) -> list[str]:
        """Apply one message; returns the products whose book changed."""
        self.frames += 1
        self.gap = False
        try:
            env = parse_message(raw)
        except MalformedFrame:
            self.malformed += 1
            self.last = None
            return []
        self.last = env
        if env.sequence is None:
            return []  # an error frame: outside the sequence
        if self.last_sequence is not None and env.sequence != self.last_sequence + 1:
            # Messages were dropped or reordered: no book on this connection can be trusted any more.
            self.gaps += 1
            self.gap = True
            self.books.clear()
            self.needs_resync |= self.products
        self.last_sequence = env.sequence
        changed = []
        for ev in env.events:
            if ev.product not in self.products:
                continue
            book = self.books.get(ev.product)
            if ev.snapshot:
                book = self.books[ev.product] = OrderBook(depth=self.depth)
                book.apply_snapshot(ev.bids, ev.asks, ts_ns)
                self.needs_resync.discard(ev.product)
            elif book is None:
                continue  # an update before its snapshot (or after a gap): wait for the snapshot
            else:
                book.apply_update(ev.bids, ev.asks, ts_ns)
            changed.append(ev.product)
        return changed

    def discard(self, product: str) -> None:
        """Throw one product's book away until its next snapshot."""
        self.books.pop(product, None)
        if product in self.products:
            self.needs_resync.add(product)

    def reset_connection(self) -> None:
        """A new connection starts its own sequence, and no book from the old one is trusted."""
        self.last_sequence = None
        self.books.clear()
        self.needs_resync = set(self.products)
