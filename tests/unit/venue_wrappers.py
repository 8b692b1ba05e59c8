"""Test helpers for venues: a venue that forwards every call to another one (the base of the tests'
misbehaving venues, each overriding only the calls it is about), a listener that ignores
everything, and a real-time wait for loopback replies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from arbtui.domain.book import OrderBook
from arbtui.domain.events import VenueStatus
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing
from arbtui.domain.orders import OrderReport, OrderRequest
from arbtui.venues.base import VenueListener


class DelegatingVenue:
    """A :class:`~arbtui.venues.base.Venue` that forwards everything to ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def listings(self) -> Sequence[Listing]:
        listings: Sequence[Listing] = self.inner.listings
        return listings

    @property
    def status(self) -> VenueStatus:
        status: VenueStatus = self.inner.status
        return status

    async def connect(self, listener: VenueListener) -> None:
        await self.inner.connect(listener)

    async def close(self) -> None:
        await self.inner.close()

    def book(self, market: str) -> OrderBook | None:
        book: OrderBook | None = self.inner.book(market)
        return book

    async def place_order(self, request: OrderRequest) -> OrderReport:
        report: OrderReport = await self.inner.place_order(request)
        return report

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        report: OrderReport = await self.inner.cancel_order(client_order_id)
        return report

    async def order_status(self, client_order_id: str) -> OrderReport:
        report: OrderReport = await self.inner.order_status(client_order_id)
        return report

    async def balances(self) -> Mapping[str, Decimal]:
        balances: Mapping[str, Decimal] = await self.inner.balances()
        return balances

    def fees(self, market: str) -> FeeSchedule:
        fees: FeeSchedule = self.inner.fees(market)
        return fees


DEADLINE_S = 30.0  # real time allowed for one loopback reply (generous: a slow machine must not fail a test)


async def until(pred: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Wait (real time) until ``pred()``: for replies from a loopback server, never for the engine's clock."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"not within {deadline_s} s: {what}")
        await asyncio.sleep(0.002)


class Listener:
    """A venue listener that ignores everything (the tests read the venue's books directly)."""

    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        return None

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        return None
