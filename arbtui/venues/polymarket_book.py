"""Polymarket CLOB market channel: ``book`` snapshots, ``price_change`` (the Sept 2025 format),
``tick_size_change``; frames that are single events or arrays of events
(docs.polymarket.com/market-data/websocket/market-channel).

- ``book`` replaces an asset's book; levels are sorted locally (the wire order is not relied on);
- each ``price_changes[]`` entry sets the new aggregate ``size`` at ``price`` ("0" removes it) on the
  bid side (``BUY``) or ask side (``SELL``) of its ``asset_id``; its ``best_bid`` / ``best_ask`` are
  the venue's top of book after the change and are cross-checked against the local book: the only
  integrity check on this channel (no sequence, no checksum). The check is made once per asset, after
  all of that asset's entries in the event are applied, against the last entry's values: that holds
  whether the venue stamps each entry with the top after that entry or after the whole event (the doc
  example has one entry per asset, so which one it does is not known). A disagreement discards that
  asset's book until a fresh ``book`` snapshot (resubscribe);
- ``tick_size_change`` updates the asset's tick (orders must be re-rounded to it);
- prices and sizes are strings, sometimes without a leading zero (".48"), parsed as Decimal;
- ``PONG`` (the answer to the client's text ``PING`` keep-alive) is not JSON and is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from arbtui.domain.book import Level, OrderBook
from arbtui.venues.wire import MalformedFrame, decimal_string


def _levels(raw: Any, what: str) -> list[Level]:
    if not isinstance(raw, list):
        raise MalformedFrame(f"{what} is not a list")
    out = []
    for lv in raw:
        if not isinstance(lv, dict):
            raise MalformedFrame(f"a {what} level is not an object")
        out.append((decimal_string(lv.get("price"), f"{what} price"), decimal_string(lv.get("size"), f"{what} size")))
    return out


@dataclass
class PolymarketBooks:
    """The books of one market-channel subscription, keyed by token (asset) id."""

    assets: set[str]
    books: dict[str, OrderBook] = field(default_factory=dict)
    ticks: dict[str, Decimal] = field(default_factory=dict)
    frames: int = 0
    malformed: int = 0
    integrity_failures: int = 0
    needs_resync: set[str] = field(default_factory=set)

    def on_raw(self, raw: str | bytes, ts_ns: int) -> list[str]:
        """Apply one frame; returns the assets whose book changed (and checked out)."""
        self.frames += 1
        if raw in ("PONG", b"PONG"):
            return []
        try:
            msg = orjson.loads(raw)
            events = msg if isinstance(msg, list) else [msg]
            parsed = [self._parse(ev) for ev in events]
        except (orjson.JSONDecodeError, MalformedFrame):
            self.malformed += 1
            return []
        changed: list[str] = []
        for apply in parsed:
            for asset in apply(ts_ns):
                if asset not in changed:
                    changed.append(asset)
        return changed

    # Parsing is done for the whole frame before anything is applied: a bad event in an array
    # leaves every book as it was.
    def _parse(self, ev: Any) -> Any:
        if not isinstance(ev, dict) or not isinstance(ev.get("event_type"), str):
            raise MalformedFrame("an event without event_type")
        kind = ev["event_type"]
        if kind == "book":
            asset = ev.get("asset_id")
            if not isinstance(asset, str):
                raise MalformedFrame("book without asset_id")
            bids, asks = _levels(ev.get("bids"), "bid"), _levels(ev.get("asks"), "ask")
            return lambda ts: self._snapshot(asset, bids, asks, ts)
        if kind == "price_change":
            changes = ev.get("price_changes")
            if not isinstance(changes, list):
                raise MalformedFrame("price_change without price_changes")
            parsed = []
            for c in changes:
                if (
                    not isinstance(c, dict)
                    or not isinstance(c.get("asset_id"), str)
                    or c.get("side") not in ("BUY", "SELL")
                ):
                    raise MalformedFrame("a price change without asset_id or side")
                best_bid = decimal_string(c["best_bid"], "best_bid") if "best_bid" in c else None
                best_ask = decimal_string(c["best_ask"], "best_ask") if "best_ask" in c else None
                parsed.append(
                    (
                        c["asset_id"],
                        c["side"] == "BUY",
                        decimal_string(c.get("price"), "price"),
                        decimal_string(c.get("size"), "size"),
                        best_bid,
                        best_ask,
                    )
                )
            return lambda ts: self._changes(parsed, ts)
        if kind == "tick_size_change":
            asset = ev.get("asset_id")
            if not isinstance(asset, str):
                raise MalformedFrame("tick_size_change without asset_id")
            tick = decimal_string(ev.get("new_tick_size"), "new_tick_size")
            if tick <= 0:
                raise MalformedFrame("tick size 0")
            return lambda ts: self._tick(asset, tick)
        return lambda ts: []  # last_trade_price, best_bid_ask, ...: nothing to apply to the books

    def _snapshot(self, asset: str, bids: list[Level], asks: list[Level], ts_ns: int) -> list[str]:
        if asset not in self.assets:
            return []
        book = self.books.setdefault(asset, OrderBook())
        book.apply_snapshot(bids, asks, ts_ns)
        self.needs_resync.discard(asset)
        return [asset]

    def _changes(
        self, changes: list[tuple[str, bool, Decimal, Decimal, Decimal | None, Decimal | None]], ts_ns: int
    ) -> list[str]:
        tops: dict[str, tuple[Decimal | None, Decimal | None]] = {}  # asset -> its last entry's top of book
        for asset, is_bid, price, size, best_bid, best_ask in changes:
            book = self.books.get(asset)
            if asset not in self.assets or book is None or asset in self.needs_resync:
                continue
            level = [(price, size)]
            book.apply_update(level if is_bid else [], [] if is_bid else level, ts_ns)
            tops[asset] = (best_bid, best_ask)
        out = []
        for asset, (best_bid, best_ask) in tops.items():
            if not self._agrees(self.books[asset], best_bid, best_ask):
                self.integrity_failures += 1
                self.needs_resync.add(asset)
                del self.books[asset]
                continue
            out.append(asset)
        return out

    @staticmethod
    def _agrees(book: OrderBook, best_bid: Decimal | None, best_ask: Decimal | None) -> bool:
        """The venue's top of book after the change against ours. An empty side is reported as the
        price range's end: bids "0", asks "1" (as in the doc's example; "0" is accepted for asks too)."""
        bid, ask = book.best_bid(), book.best_ask()
        if best_bid is not None and (bid[0] if bid else Decimal(0)) != best_bid:
            return False
        if best_ask is None:
            return True
        return ask[0] == best_ask if ask else best_ask in (Decimal(0), Decimal(1))

    def _tick(self, asset: str, tick: Decimal) -> list[str]:
        if asset in self.assets:
            self.ticks[asset] = tick
        return []
