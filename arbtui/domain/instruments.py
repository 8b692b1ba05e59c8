"""Markets, and each venue's listing of them.

A :class:`Market` is the canonical thing being traded (``BTC-USD``, or one outcome token of a
binary event such as ``FEDCUT-YES``). A :class:`Listing` is one venue's market for it, with the
venue's own symbol, tick size, lot size and wire precision. The detector compares listings of the
same market across venues, and outcome tokens of the same event for the complement trade.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from arbtui.domain.money import floor_to_step, to_wire


class MarketKind(Enum):
    SPOT = "spot"
    OUTCOME = "outcome"  # one token of a binary event; pays 1 if its outcome happens


@dataclass(frozen=True, slots=True)
class Market:
    """A canonical market, identical across venues."""

    id: str
    base: str
    quote: str
    kind: MarketKind = MarketKind.SPOT
    event: str | None = None  # OUTCOME only: the binary event this token belongs to
    outcome: str | None = None  # OUTCOME only: "YES" or "NO"
    payout: Decimal = Decimal(1)  # OUTCOME only: what a winning token redeems for


@dataclass(frozen=True, slots=True)
class Listing:
    """One venue's listing of a market."""

    venue: str
    market: str
    symbol: str  # the venue's own name for it: "BTC/USD", "BTC-USD", a token id
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal
    price_precision: int
    qty_precision: int

    def price_to_wire(self, price: Decimal) -> str:
        """The price as this venue's API expects it (one rendering path: :func:`to_wire`)."""
        return to_wire(price, self.price_precision)

    def qty_to_wire(self, quantity: Decimal) -> str:
        return to_wire(quantity, self.qty_precision)

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Round a size down to this venue's lot."""
        return floor_to_step(quantity, self.lot_size)

    def is_valid_price(self, price: Decimal) -> bool:
        return price > 0 and (price % self.tick_size) == 0

    def is_valid_quantity(self, quantity: Decimal) -> bool:
        return quantity >= self.min_size and (quantity % self.lot_size) == 0


class Instruments:
    """Lookup of markets and listings, by canonical id, by venue symbol and by event."""

    def __init__(self, markets: list[Market], listings: list[Listing]) -> None:
        self.markets: dict[str, Market] = {m.id: m for m in markets}
        self._listings: dict[tuple[str, str], Listing] = {}
        self._by_symbol: dict[tuple[str, str], Listing] = {}
        for listing in listings:
            if listing.market not in self.markets:
                raise ValueError(f"listing {listing.venue}:{listing.symbol} names unknown market {listing.market}")
            self._listings[(listing.venue, listing.market)] = listing
            self._by_symbol[(listing.venue, listing.symbol)] = listing

    def listing(self, venue: str, market: str) -> Listing:
        return self._listings[(venue, market)]

    def find_listing(self, venue: str, market: str) -> Listing | None:
        return self._listings.get((venue, market))

    def by_symbol(self, venue: str, symbol: str) -> Listing | None:
        """Map a venue's own symbol back to its listing (and so to the canonical market)."""
        return self._by_symbol.get((venue, symbol))

    def listings_for_venue(self, venue: str) -> list[Listing]:
        return [lst for (v, _), lst in self._listings.items() if v == venue]

    def venues_for_market(self, market: str) -> list[str]:
        return sorted(v for (v, m) in self._listings if m == market)

    def events(self) -> dict[str, dict[str, Market]]:
        """Binary events: event id -> {"YES": market, "NO": market} (only complete pairs)."""
        grouped: dict[str, dict[str, Market]] = {}
        for m in self.markets.values():
            if m.kind is MarketKind.OUTCOME and m.event and m.outcome:
                grouped.setdefault(m.event, {})[m.outcome] = m
        return {e: o for e, o in grouped.items() if {"YES", "NO"} <= o.keys()}

    def common_lot(self, listings: list[Listing]) -> Decimal:
        """A size step valid on every listing given (config checks the lots divide each other)."""
        return max(lst.lot_size for lst in listings)
