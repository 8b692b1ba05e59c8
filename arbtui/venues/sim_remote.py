"""A simulated venue that lives in another process, reached over loopback HTTP and WebSocket.

The other end is :mod:`arbtui.sim.server`, whose docstring documents the wire format (arbtui's
own). Because the server keeps the truth (orders, fills, balances), an engine process using this
venue can be killed and restarted and then ask the venue what really happened: the point of the
crash and reconciliation tests.

This module owns the wire codec used by both ends: every price, size, fee and balance travels as a
decimal string and is read back into a :class:`~decimal.Decimal` exactly; a JSON number where a
decimal string belongs is refused rather than passed through binary floating point.

Timeouts: the client never times out a request on its own. A reply that never comes (the
simulated "timeout" fault) is left to the caller, who cancels the awaiting task; cancelling
``place_order`` aborts the HTTP request and drops its connection, and the order's fate is then
asked with ``order_status``. Only establishing a connection is bounded, because a connection that
was never made cannot have carried an order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from arbtui.domain.book import Level, OrderBook
from arbtui.domain.clock import Clock
from arbtui.domain.events import VenueStatus
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing
from arbtui.domain.orders import Fill, Liquidity, OrderReport, OrderRequest, OrderStatus
from arbtui.venues.base import UnknownOrder, VenueError, VenueListener
from arbtui.venues.wire import MalformedFrame

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # to open the TCP connection, and for the WS handshake plus first snapshots
UNKNOWN_ORDER = "unknown order"  # the error text of a 404 that means "no such order"
_LOGGED_MALFORMED = 10  # log the first few malformed frames, then every 1000th


# ----------------------------------------------------------------------------------------------
# The wire codec (shared with arbtui.sim.server)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookFrame:
    """A parsed ``snapshot`` (replace the book) or ``update`` (absolute quantities, zero deletes)."""

    snapshot: bool
    market: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts_ns: int


def decimal_to_wire(value: Decimal) -> str:
    """A Decimal as a plain decimal string, never in exponent form (``1E-8`` -> ``0.00000001``)."""
    return format(value, "f")


def decimal_from_wire(value: Any, what: str) -> Decimal:
    """A decimal string from the wire; raises ValueError for anything else (including JSON numbers)."""
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a decimal string, got {type(value).__name__} {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what}: not a decimal number: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{what}: not a finite number: {value!r}")
    return d


def levels_to_wire(levels: Sequence[Level]) -> list[list[str]]:
    return [[decimal_to_wire(p), decimal_to_wire(q)] for p, q in levels]


def _levels_from_wire(raw: Any, what: str) -> tuple[Level, ...]:
    if not isinstance(raw, list):
        raise MalformedFrame(f"{what}: expected a list of [price, quantity] pairs, got {type(raw).__name__}")
    levels: list[Level] = []
    for i, level in enumerate(raw):
        if not isinstance(level, list) or len(level) != 2:
            raise MalformedFrame(f"{what}[{i}]: expected a [price, quantity] pair, got {level!r}")
        try:
            price = decimal_from_wire(level[0], f"{what}[{i}] price")
            qty = decimal_from_wire(level[1], f"{what}[{i}] quantity")
        except ValueError as exc:
            raise MalformedFrame(str(exc)) from None
        if price <= 0 or qty < 0:
            raise MalformedFrame(f"{what}[{i}]: price must be positive and quantity not negative, got {level!r}")
        levels.append((price, qty))
    return tuple(levels)


def parse_frame(raw: str | bytes) -> BookFrame | None:
    """Parse one WebSocket frame: a :class:`BookFrame`, or None for a heartbeat.

    The whole frame is checked before anything is returned, so a bad level anywhere leaves the
    book untouched. Raises :class:`MalformedFrame`.
    """
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise MalformedFrame(f"expected a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    if kind == "heartbeat":
        return None
    if kind not in ("snapshot", "update"):
        raise MalformedFrame(f"unknown frame type {kind!r}")
    market = msg.get("market")
    if not isinstance(market, str) or not market:
        raise MalformedFrame(f"{kind}: expected a market id, got {market!r}")
    ts_ns = msg.get("ts_ns")
    if not isinstance(ts_ns, int) or isinstance(ts_ns, bool):
        raise MalformedFrame(f"{kind} {market}: expected an integer ts_ns, got {ts_ns!r}")
    bids = _levels_from_wire(msg.get("bids"), f"{kind} {market} bids")
    asks = _levels_from_wire(msg.get("asks"), f"{kind} {market} asks")
    return BookFrame(kind == "snapshot", market, bids, asks, ts_ns)


def report_to_wire(report: OrderReport) -> dict[str, Any]:
    """An :class:`OrderReport` as a JSON-ready dict (fills omit the client order id: it is the report's)."""
    return {
        "client_order_id": report.client_order_id,
        "venue": report.venue,
        "venue_order_id": report.venue_order_id,
        "status": report.status.value,
        "quantity": decimal_to_wire(report.quantity),
        "filled_quantity": decimal_to_wire(report.filled_quantity),
        "average_price": None if report.average_price is None else decimal_to_wire(report.average_price),
        "fee": decimal_to_wire(report.fee),
        "ts_ns": report.ts_ns,
        "reason": report.reason,
        "fills": [
            {
                "quantity": decimal_to_wire(f.quantity),
                "price": decimal_to_wire(f.price),
                "fee": decimal_to_wire(f.fee),
                "liquidity": f.liquidity.value,
                "ts_ns": f.ts_ns,
            }
            for f in report.fills
        ],
    }


def _str(data: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    return value


def report_from_wire(data: Any) -> OrderReport:
    """Read back what :func:`report_to_wire` wrote; raises ValueError naming the first bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    cid = _str(data, "client_order_id")
    venue = _str(data, "venue")
    assert cid is not None and venue is not None
    fills_raw = data.get("fills")
    if not isinstance(fills_raw, list):
        raise ValueError(f"fills: expected a list, got {fills_raw!r}")
    fills: list[Fill] = []
    for i, f in enumerate(fills_raw):
        if not isinstance(f, dict):
            raise ValueError(f"fills[{i}]: expected an object, got {f!r}")
        fills.append(
            Fill(
                cid,
                decimal_from_wire(f.get("quantity"), f"fills[{i}].quantity"),
                decimal_from_wire(f.get("price"), f"fills[{i}].price"),
                decimal_from_wire(f.get("fee"), f"fills[{i}].fee"),
                Liquidity(_str(f, "liquidity")),
                _int(f, "ts_ns"),
            )
        )
    avg = data.get("average_price")
    return OrderReport(
        client_order_id=cid,
        venue=venue,
        venue_order_id=_str(data, "venue_order_id", optional=True),
        status=OrderStatus(_str(data, "status")),
        quantity=decimal_from_wire(data.get("quantity"), "quantity"),
        filled_quantity=decimal_from_wire(data.get("filled_quantity"), "filled_quantity"),
        average_price=None if avg is None else decimal_from_wire(avg, "average_price"),
        fee=decimal_from_wire(data.get("fee"), "fee"),
        ts_ns=_int(data, "ts_ns"),
        reason=_str(data, "reason", optional=True),
        fills=tuple(fills),
    )


def order_to_wire(request: OrderRequest) -> dict[str, str]:
    """The body of ``POST /v/{venue}/orders``: exact decimal strings, the venue checks ticks and lots."""
    return {
        "client_order_id": request.client_order_id,
        "market": request.market,
        "side": request.side.value,
        "quantity": decimal_to_wire(request.quantity),
        "limit_price": decimal_to_wire(request.limit_price),
        "time_in_force": request.time_in_force.value,
    }


# ----------------------------------------------------------------------------------------------
# The venue
# ----------------------------------------------------------------------------------------------


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)


class RemoteSimVenue:
    """A simulated venue served by :mod:`arbtui.sim.server`. Implements :class:`arbtui.venues.base.Venue`.

    ``base_url`` is the server's root (``http://127.0.0.1:PORT``); ``name`` is the venue's name
    there and in the config. Books are kept at ``depth`` levels a side, and the server publishes
    exactly that many, so a level entering the top ``depth`` is always sent.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        listings: Sequence[Listing],
        fees: FeeSchedule,
        clock: Clock,
        depth: int = 15,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        if depth <= 0:
            raise ValueError("depth must be positive")
        self._name = name
        self._root = URL(base_url).joinpath("v", name)
        self._listings = list(listings)
        self._fees = fees
        self._clock = clock
        self._depth = depth
        self._connect_timeout_s = connect_timeout_s
        self._books: dict[str, OrderBook] = {lst.market: OrderBook(depth) for lst in self._listings}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._listener: VenueListener | None = None
        self._status = VenueStatus.CLOSED
        self._closing = False
        self._snapshots_done = asyncio.Event()
        self.malformed_frames = 0  # frames skipped because they could not be parsed or applied
        self.frames_applied = 0

    @property
    def counters(self) -> dict[str, int]:
        """Feed integrity counters (this feed has no sequence numbers or checksums, and no reconnects)."""
        return {
            "frames": self.frames_applied,
            "integrity_failures": 0,
            "resyncs": 0,
            "reconnects": 0,
            "malformed": self.malformed_frames,
        }

    # --- Venue protocol ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def listings(self) -> Sequence[Listing]:
        return self._listings

    @property
    def status(self) -> VenueStatus:
        return self._status

    async def connect(self, listener: VenueListener) -> None:
        """Open the session and the market data feed; return once every listing has its snapshot."""
        if self._session is not None:
            raise VenueError(self.name, "already connected")
        self._listener = listener
        self._closing = False
        self._snapshots_done.clear()
        self._books = {lst.market: OrderBook(self._depth) for lst in self._listings}
        self._set_status(VenueStatus.CONNECTING, str(self._root))
        # No total or read timeout: a reply that never comes is the caller's to time out.
        timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                self._ws = await self._session.ws_connect(
                    self._root / "ws", params={"depth": str(self._depth)}, autoping=True
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._teardown()
            self._set_status(VenueStatus.ERROR, f"cannot open market data: {exc!r}")
            raise VenueError(self.name, f"cannot open market data at {self._root}: {exc!r}", retryable=True) from exc
        self._set_status(VenueStatus.CONNECTED, str(self._root))
        self._reader = asyncio.create_task(self._read(self._ws), name=f"{self.name}-remote-sim-reader")
        self._reader.add_done_callback(_log_task_failure)
        if not self._listings:
            return
        try:
            # Loop time, not the injected clock: this bounds real network I/O, which a manual
            # clock would never move.
            async with asyncio.timeout(self._connect_timeout_s):
                await self._snapshots_done.wait()
        except TimeoutError:
            pass
        missing = sorted(m for m, b in self._books.items() if b.last_update_ns is None)
        if missing:
            await self.close()
            raise VenueError(self.name, f"no snapshot for {', '.join(missing)}", retryable=True)

    async def close(self) -> None:
        self._closing = True
        await self._teardown()
        if self._status is not VenueStatus.CLOSED:
            self._set_status(VenueStatus.CLOSED, "closed")
        self._listener = None

    def book(self, market: str) -> OrderBook | None:
        book = self._books.get(market)
        return book if book is not None and book.last_update_ns is not None else None

    def fees(self, market: str) -> FeeSchedule:
        return self._fees

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if request.venue != self.name:
            raise ValueError(f"order for {request.venue} sent to {self.name}")
        status, payload = await self._call("POST", self._root / "orders", order_to_wire(request))
        self._raise_for(status, payload, request.client_order_id)
        return self._report(payload)

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        status, payload = await self._call("DELETE", self._order_url(client_order_id))
        self._raise_for(status, payload, client_order_id)
        return self._report(payload)

    async def order_status(self, client_order_id: str) -> OrderReport:
        status, payload = await self._call("GET", self._order_url(client_order_id))
        self._raise_for(status, payload, client_order_id)
        return self._report(payload)

    async def balances(self) -> Mapping[str, Decimal]:
        status, payload = await self._call("GET", self._root / "balances")
        self._raise_for(status, payload, None)
        if not isinstance(payload, dict):
            raise VenueError(self.name, f"malformed balances: {payload!r}")
        try:
            return {str(asset): decimal_from_wire(amount, f"balance {asset}") for asset, amount in payload.items()}
        except ValueError as exc:
            raise VenueError(self.name, f"malformed balances: {exc}") from None

    # --- market data ---------------------------------------------------------------------------
    def handle_frame(self, raw: str | bytes) -> None:
        """Apply one market data frame, as the reader does for every message.

        A frame that cannot be parsed or applied (an update before its snapshot) is counted in
        :attr:`malformed_frames` and skipped. Frames for markets this venue does not serve are
        ignored.
        """
        try:
            frame = parse_frame(raw)
        except MalformedFrame as exc:
            self._malformed(str(exc))
            return
        if frame is None:
            return  # heartbeat
        book = self._books.get(frame.market)
        if book is None:
            return
        if frame.snapshot:
            book.apply_snapshot(frame.bids, frame.asks, frame.ts_ns)
            self.frames_applied += 1
        elif book.last_update_ns is None:
            self._malformed(f"update for {frame.market} before its snapshot")
            return
        else:
            book.apply_update(frame.bids, frame.asks, frame.ts_ns)
            self.frames_applied += 1
        if not self._snapshots_done.is_set() and all(b.last_update_ns is not None for b in self._books.values()):
            self._snapshots_done.set()
        if self._listener is not None:
            self._listener.on_book(self.name, frame.market, book)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        detail = "market data closed by the venue"
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                    self.handle_frame(msg.data)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    detail = f"market data error: {ws.exception()!r}"
                    break
            if ws.close_code is not None:
                detail += f" (code {ws.close_code})"
        except Exception as exc:
            detail = f"market data reader failed: {exc!r}"
            raise
        finally:
            self._snapshots_done.set()  # wake connect(), which checks what actually arrived
            if not self._closing:
                # Reconnecting is the connection supervisor's job; this venue reports the loss.
                self._set_status(VenueStatus.ERROR, detail)

    def _malformed(self, why: str) -> None:
        self.malformed_frames += 1
        n = self.malformed_frames
        if n <= _LOGGED_MALFORMED or n % 1000 == 0:
            log.warning("%s: skipped malformed frame #%d: %s", self.name, n, why)

    # --- HTTP ----------------------------------------------------------------------------------
    def _order_url(self, client_order_id: str) -> URL:
        # Quote everything, "/" included, so any client order id is one path segment.
        return self._root.joinpath("orders", quote(client_order_id, safe=""), encoded=True)

    async def _call(self, method: str, url: URL, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        session = self._session
        if session is None or session.closed:
            raise VenueError(self.name, "not connected", retryable=True)
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            # Cancelling this coroutine (the caller's timeout) aborts the request and drops its
            # connection; the server carries on with the order regardless.
            async with session.request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError) as exc:
            raise VenueError(self.name, f"{method} {url.path}: {exc!r}", retryable=True) from exc
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise VenueError(
                self.name, f"{method} {url.path}: HTTP {status} with a reply that is not JSON", retryable=status >= 500
            ) from None

    def _raise_for(self, status: int, payload: Any, client_order_id: str | None) -> None:
        if status == 200:
            return
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error if isinstance(error, str) else repr(payload)
        if status == 404 and message == UNKNOWN_ORDER:
            raise UnknownOrder(self.name, f"unknown order {client_order_id}")
        retryable = payload.get("retryable") if isinstance(payload, dict) else None
        if not isinstance(retryable, bool):
            retryable = status >= 500
        raise VenueError(self.name, f"HTTP {status}: {message}", retryable=retryable)

    def _report(self, payload: Any) -> OrderReport:
        try:
            return report_from_wire(payload)
        except ValueError as exc:
            raise VenueError(self.name, f"malformed order report: {exc}") from None

    # --- lifecycle -----------------------------------------------------------------------------
    async def _teardown(self) -> None:
        reader, ws, session = self._reader, self._ws, self._session
        self._reader = self._ws = self._session = None
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader})
        if ws is not None:
            await ws.close()
        if session is not None:
            await session.close()

    def _set_status(self, status: VenueStatus, detail: str) -> None:
        self._status = status
        if self._listener is not None:
            self._listener.on_status(self.name, status, detail)
