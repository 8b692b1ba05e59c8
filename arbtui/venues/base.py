"""The one Venue protocol. Simulated venues, real venues and replay all implement it, and the
engine talks to nothing else.

There is exactly one way to place an order: ``place_order(request)`` with an
:class:`~arbtui.domain.orders.OrderRequest`. Each venue module maps that value to its own wire
format; venue quirks never leak out of the venue module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Protocol

from arbtui.domain.book import OrderBook
from arbtui.domain.events import VenueStatus
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing
from arbtui.domain.orders import OrderReport, OrderRequest


class VenueError(Exception):
    """A venue refused a request or could not be reached. ``retryable`` says whether trying again can help."""

    def __init__(self, venue: str, message: str, *, retryable: bool = False) -> None:
        self.venue = venue
        self.retryable = retryable
        super().__init__(f"{venue}: {message}")


class UnknownOrder(VenueError):
    """The venue has no order with that client order id."""


class VenueListener(Protocol):
    """What a venue calls when its market data or its status changes.

    Calls happen on the event loop thread, synchronously, and must return quickly.
    """

    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        """``book`` (owned by the venue, read-only to everyone else) has just changed."""
        ...

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        """The venue's connection status changed (connected, stale, error, ...)."""
        ...


class Venue(Protocol):
    """A trading venue.

    Contract, for every implementation:

    - ``name`` is the venue's config name (``"kraken"``); ``listings`` are the markets it is asked to
      serve, with the venue's own symbols, ticks and precisions.
    - ``connect(listener)`` opens market data for every listing, returns once the connection is
      established (books may still be empty), and from then on calls ``listener.on_book`` after each
      change to a book and ``listener.on_status`` on each status change. It raises
      :class:`VenueError` if the venue cannot be reached at all.
    - ``close()`` stops everything the venue started; afterwards no listener call is made. It is
      safe to call twice.
    - ``book(market)`` is the venue's current L2 book for a canonical market id, or None before
      the first snapshot. The engine reads it and never mutates it.
    - ``place_order(request)`` sends one order and returns the venue's report once the venue has
      answered: for an IOC or FOK that report is final (filled, expired, or rejected); for a GTC it
      may be open. A venue refusal is a REJECTED report, not an exception. Transport failures raise
      :class:`VenueError`; a reply that never comes is left to the caller's timeout, and the order's
      fate must then be asked with ``order_status`` (a timeout is *not* a rejection).
    - ``cancel_order(client_order_id)`` asks the venue to cancel and returns the order's report
      afterwards (which may show fills that happened first: a cancel cannot undo a fill).
    - ``order_status(client_order_id)`` returns the order's current report, or raises
      :class:`UnknownOrder` if the venue never received it.
    - ``balances()`` returns the free balance of each asset.
    - ``fees(market)`` returns the fee schedule that applies to the account on that market.
    - ``status`` is the current connection status.
    """

    @property
    def name(self) -> str: ...

    @property
    def listings(self) -> Sequence[Listing]: ...

    @property
    def status(self) -> VenueStatus: ...

    async def connect(self, listener: VenueListener) -> None: ...

    async def close(self) -> None: ...

    def book(self, market: str) -> OrderBook | None: ...

    async def place_order(self, request: OrderRequest) -> OrderReport: ...

    async def cancel_order(self, client_order_id: str) -> OrderReport: ...

    async def order_status(self, client_order_id: str) -> OrderReport: ...

    async def balances(self) -> Mapping[str, Decimal]: ...

    def fees(self, market: str) -> FeeSchedule: ...
