"""The simulated market in its own process, served over loopback HTTP and WebSocket.

An engine process can be killed (SIGKILL) and restarted while this server keeps the truth: the
orders, fills and balances of every simulated venue. The engine side is
:class:`arbtui.venues.sim_remote.RemoteSimVenue`; the crash/reconciliation tests and the latency
benchmarks run against this server.

Run::

    python -m arbtui.sim.server [--config PATH] [--host 127.0.0.1] [--port 0] [--seed N]
        [--ack-latency-ms N] [--latency-jitter-ms N]
        [--timeout-rate X] [--reject-rate X] [--partial-fill-rate X]

Without ``--config`` the built-in demo configuration is served. The latency and fault options
override the ``sim`` settings of every venue. The server binds a loopback address only, prints
exactly one line, ``LISTENING http://127.0.0.1:PORT``, to stdout once it accepts connections
(``--port 0`` picks a free port), logs to stderr, and serves until SIGTERM or SIGINT. The market
runs on the wall clock (:class:`~arbtui.domain.clock.LiveClock`), driven by
:meth:`SimulatedMarket.run`.

Wire format (arbtui's own)
--------------------------

JSON everywhere. Every price, size, fee and balance is a **decimal string** (``"64012.5"``,
``"0.00000001"``), never a JSON number, and is read back as an exact Decimal; a JSON number where
a decimal string belongs is refused. Times are integer nanoseconds since the Unix epoch
(``ts_ns``). Markets are arbtui's canonical market ids (``BTC-USD``), not venue symbols. ``V`` below
is a venue's config name (``kraken``). The codec lives in :mod:`arbtui.venues.sim_remote`.

``GET /v/V/book/MARKET``
    ``{"bids": [["price", "qty"], ...], "asks": [...], "ts_ns": int, "sequence": int}``, best level
    first, every level the venue publishes. ``sequence`` counts the changes applied to the book.

``GET /v/V/ws[?depth=N]`` (WebSocket, JSON text frames, server to client only)
    On connect, one snapshot per listing of the venue::

        {"type": "snapshot", "market": M, "bids": [[p, q], ...], "asks": [...], "ts_ns": int}

    then, whenever that book changes, the levels that changed among the top ``depth`` (default:
    all the venue publishes), with their absolute quantity, ``"0"`` deleting the level::

        {"type": "update", "market": M, "bids": [[p, q], ...], "asks": [...], "ts_ns": int}

    A level that leaves the top ``depth`` is deleted and one that enters it is sent, so a client
    that caps its book at ``depth`` stays exact. Changes are coalesced per subscriber: a slow
    reader gets fewer, larger updates, never a backlog. ``{"type": "heartbeat"}`` is sent every
    second. Messages from the client are ignored.

``POST /v/V/orders``
    Body ``{"client_order_id": str, "market": M, "side": "buy"|"sell", "quantity": "..",
    "limit_price": "..", "time_in_force": "gtc"|"ioc"|"fok"}`` (every key required, no others).
    Places the order on the simulated venue, so its ack latency and fault draws apply here, and
    answers with the order report (below). A venue refusal is a report with status
    ``"rejected"``, not an HTTP error. Under the "timeout" fault the order is executed but the
    reply never comes: the request hangs until the client gives up (or the server stops), and
    ``GET /v/V/orders/ID`` tells what happened. An order is executed even if its client
    disconnects first.

``DELETE /v/V/orders/ID``
    Cancels the order and answers with its report afterwards (which may show earlier fills).

``GET /v/V/orders/ID``
    The order's current report.

``GET /v/V/balances``
    ``{"USD": "250000", "BTC": "3", ...}``: free balances (what resting orders hold is excluded).

An order report::

    {"client_order_id": str, "venue": V, "venue_order_id": str | null,
     "status": "open"|"partially_filled"|"filled"|"cancelled"|"expired"|"rejected",
     "quantity": "..", "filled_quantity": "..", "average_price": ".." | null, "fee": "..",
     "ts_ns": int, "reason": str | null,
     "fills": [{"quantity": "..", "price": "..", "fee": "..", "liquidity": "maker"|"taker", "ts_ns": int}]}

Errors are ``{"error": "message"}`` with status 400 (malformed request: the message names the
field), 404 (``"unknown order"``, ``"unknown venue ..."``, ``"unknown market ..."``), 409 (a client
order id already used on that venue), or 503 (the venue could not take the request; the body adds
``"retryable": bool``).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from arbtui.config import Config, ConfigError, default_config, load_config
from arbtui.domain.book import Level, OrderBook
from arbtui.domain.clock import Clock, LiveClock
from arbtui.domain.events import VenueStatus
from arbtui.domain.orders import OrderReport, OrderRequest, Side, TimeInForce
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.sim_remote import UNKNOWN_ORDER, decimal_from_wire, decimal_to_wire, levels_to_wire, report_to_wire
from arbtui.venues.simulated import SimulatedVenue

log = logging.getLogger("arbtui.sim.server")  # not __name__: run with -m it is "__main__"

HEARTBEAT_S = 1.0
MAX_WS_DEPTH = 1000
SHUTDOWN_TIMEOUT_S = 2.0  # handlers get this long to finish once the venues are closed
ORDER_FIELDS = ("client_order_id", "market", "side", "quantity", "limit_price", "time_in_force")
HEARTBEAT_FRAME = orjson.dumps({"type": "heartbeat"}).decode()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, VenueError):
        log.debug("task %s ended: %s", task.get_name(), exc)  # e.g. a lost reply released at shutdown
    elif exc is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)


def order_from_wire(body: Any, venue: str) -> OrderRequest:
    """The order in a ``POST /v/V/orders`` body; raises ValueError naming the bad field."""
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object with keys {', '.join(ORDER_FIELDS)}")
    unknown = sorted(set(body) - set(ORDER_FIELDS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (expected {', '.join(ORDER_FIELDS)})")
    missing = [k for k in ORDER_FIELDS if k not in body]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(missing)}")
    cid, market = body["client_order_id"], body["market"]
    for key, value in (("client_order_id", cid), ("market", market)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key}: expected a non-empty string, got {value!r}")
    try:
        side = Side(body["side"])
    except ValueError:
        raise ValueError(f'side: expected "buy" or "sell", got {body["side"]!r}') from None
    try:
        tif = TimeInForce(body["time_in_force"])
    except ValueError:
        raise ValueError(f'time_in_force: expected "gtc", "ioc" or "fok", got {body["time_in_force"]!r}') from None
    quantity = decimal_from_wire(body["quantity"], "quantity")
    limit = decimal_from_wire(body["limit_price"], "limit_price")
    return OrderRequest(cid, venue, market, side, quantity, limit, tif)  # checks both are positive


@dataclass(eq=False, slots=True)
class _Subscriber:
    """One WebSocket client of one venue: what it was last sent, and which books changed since."""

    venue: SimulatedVenue
    depth: int
    ws: web.WebSocketResponse
    dirty: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = field(default_factory=dict)

    def notify(self, market: str) -> None:
        self.dirty.add(market)
        self.wake.set()

    async def run(self) -> None:
        """Send the snapshots, then coalesced updates and a heartbeat every second, until the socket closes."""
        loop = asyncio.get_running_loop()
        for listing in self.venue.listings:
            self.dirty.add(listing.market)  # the first frame of each book is its snapshot
        # Loop time, not the simulation clock: the heartbeat is about the transport being alive.
        next_beat = loop.time() + HEARTBEAT_S
        try:
            while not self.ws.closed:
                if self.dirty:
                    markets = sorted(self.dirty)
                    self.dirty.clear()
                    self.wake.clear()
                    for market in markets:
                        await self._send_book(market)
                wait = next_beat - loop.time()
                if wait > 0 and not self.dirty:
                    try:
                        async with asyncio.timeout(wait):
                            await self.wake.wait()
                    except TimeoutError:
                        pass
                now = loop.time()
                if now >= next_beat:
                    await self.ws.send_str(HEARTBEAT_FRAME)
                    next_beat = max(next_beat + HEARTBEAT_S, now)
        except ConnectionError as exc:
            log.debug("%s subscriber went away: %r", self.venue.name, exc)
        finally:
            if not self.ws.closed:
                await self.ws.close()

    async def _send_book(self, market: str) -> None:
        book = self.venue.book(market)
        if book is None:
            return  # not published yet: its first publication will notify
        bids, asks = book.bids.top(self.depth), book.asks.top(self.depth)
        last = self.sent.get(market)
        self.sent[market] = (dict(bids), dict(asks))
        if last is None:
            kind, bid_changes, ask_changes = "snapshot", bids, asks
        else:
            kind, bid_changes, ask_changes = "update", _changes(last[0], bids), _changes(last[1], asks)
            if not bid_changes and not ask_changes:
                return  # only levels beyond this subscriber's depth moved
        frame = {
            "type": kind,
            "market": market,
            "bids": levels_to_wire(bid_changes),
            "asks": levels_to_wire(ask_changes),
            "ts_ns": book.last_update_ns,
        }
        await self.ws.send_str(orjson.dumps(frame).decode())


def _changes(old: dict[Decimal, Decimal], new: list[Level]) -> list[Level]:
    """Absolute-quantity changes (zero deletes) that turn the levels ``old`` into ``new``."""
    new_map = dict(new)
    changes = [(p, q) for p, q in new if old.get(p) != q]
    changes.extend((p, Decimal(0)) for p in old if p not in new_map)
    return changes


class SimServer:
    """The web application around one :class:`SimulatedMarket`; also the venues' listener."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.market = SimulatedMarket(config, clock)
        self.venues: dict[str, SimulatedVenue] = {v.name: v for v in self.market.venues}
        self._subscribers: dict[str, set[_Subscriber]] = {name: set() for name in self.venues}
        self._client_ids: dict[str, set[str]] = {name: set() for name in self.venues}
        self._orders_in_flight: set[asyncio.Task[OrderReport]] = set()
        self._market_task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()  # set to stop serving: by a signal, or when the market driver dies
        self.failed = False

    # --- VenueListener -----------------------------------------------------------------------
    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        for sub in self._subscribers[venue]:
            sub.notify(market)

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        log.info("%s: %s (%s)", venue, status.value, detail)

    # --- lifecycle ---------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v/{venue}/book/{market}", self.get_book)
        app.router.add_get("/v/{venue}/ws", self.websocket)
        app.router.add_post("/v/{venue}/orders", self.place_order)
        app.router.add_delete("/v/{venue}/orders/{client_order_id}", self.cancel_order)
        app.router.add_get("/v/{venue}/orders/{client_order_id}", self.order_status)
        app.router.add_get("/v/{venue}/balances", self.balances)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        for venue in self.venues.values():
            await venue.connect(self)
        self._market_task = asyncio.create_task(self.market.run(), name="sim-market")
        self._market_task.add_done_callback(self._market_done)

    def _market_done(self, task: asyncio.Task[None]) -> None:
        _log_task_failure(task)
        if not task.cancelled():
            log.error("the market driver stopped; shutting down")
            self.failed = True
            self.done.set()

    async def _stop(self, _app: web.Application) -> None:
        # Closing the venues releases the requests hung on a lost reply (they answer 503), so
        # the graceful shutdown does not wait for them.
        for venue in self.venues.values():
            await venue.close()
        if self._market_task is not None:
            self._market_task.cancel()
            await asyncio.wait({self._market_task})
        for subs in self._subscribers.values():
            for sub in list(subs):
                await sub.ws.close(code=1001, message=b"server shutdown")  # 1001: going away

    # --- handlers ------------------------------------------------------------------------------
    def _venue(self, request: web.Request) -> SimulatedVenue:
        name = request.match_info["venue"]
        venue = self.venues.get(name)
        if venue is None:
            raise web.HTTPNotFound(
                body=orjson.dumps({"error": f"unknown venue {name}"}), content_type="application/json"
            )
        return venue

    async def get_book(self, request: web.Request) -> web.Response:
        venue = self._venue(request)
        market = request.match_info["market"]
        book = venue.book(market)
        if book is None:
            return _error(404, f"unknown market {market} on {venue.name} (or no book yet)")
        return _json(
            {
                "bids": levels_to_wire(book.bids.top(len(book.bids))),
                "asks": levels_to_wire(book.asks.top(len(book.asks))),
                "ts_ns": book.last_update_ns,
                "sequence": book.sequence,
            }
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        venue = self._venue(request)
        raw_depth = request.query.get("depth")
        depth = MAX_WS_DEPTH
        if raw_depth is not None:
            try:
                depth = int(raw_depth)
            except ValueError:
                depth = 0
            if not 1 <= depth <= MAX_WS_DEPTH:
                return _error(400, f"depth: expected an integer from 1 to {MAX_WS_DEPTH}, got {raw_depth!r}")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sub = _Subscriber(venue, depth, ws)
        self._subscribers[venue.name].add(sub)
        sender = asyncio.create_task(sub.run(), name=f"{venue.name}-ws-sender-{request.remote}")
        sender.add_done_callback(_log_task_failure)
        try:
            async for _msg in ws:
                pass  # one-way feed; aiohttp answers pings and handles the closing handshake
        finally:
            self._subscribers[venue.name].discard(sub)
            sender.cancel()
            await asyncio.wait({sender})
        return ws

    async def place_order(self, request: web.Request) -> web.Response:
        venue = self._venue(request)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"body is not JSON: {exc}")
        try:
            order = order_from_wire(body, venue.name)
        except ValueError as exc:
            return _error(400, str(exc))
        seen = self._client_ids[venue.name]
        if order.client_order_id in seen:
            return _error(409, f"duplicate client order id {order.client_order_id}")
        seen.add(order.client_order_id)
        # The order runs as its own task, shielded from this handler: a client that hangs up
        # (its timeout) does not stop the venue from executing what it already received.
        task = asyncio.create_task(venue.place_order(order), name=f"{venue.name}-order-{order.client_order_id}")
        self._orders_in_flight.add(task)
        task.add_done_callback(self._orders_in_flight.discard)
        task.add_done_callback(_log_task_failure)
        try:
            report = await asyncio.shield(task)
        except VenueError as exc:
            return _error(503, str(exc), retryable=exc.retryable)
        return _json(report_to_wire(report))

    async def cancel_order(self, request: web.Request) -> web.Response:
        venue = self._venue(request)
        try:
            report = await venue.cancel_order(request.match_info["client_order_id"])
        except UnknownOrder:
            return _error(404, UNKNOWN_ORDER)
        return _json(report_to_wire(report))

    async def order_status(self, request: web.Request) -> web.Response:
        venue = self._venue(request)
        try:
            report = await venue.order_status(request.match_info["client_order_id"])
        except UnknownOrder:
            return _error(404, UNKNOWN_ORDER)
        return _json(report_to_wire(report))

    async def balances(self, request: web.Request) -> web.Response:
        venue = self._venue(request)
        free = await venue.balances()
        return _json({asset: decimal_to_wire(amount) for asset, amount in sorted(free.items())})


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _rate(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not value.is_finite() or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _loopback(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a loopback IP address such as 127.0.0.1, got {text!r}") from None
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"refusing to bind {text}: this server only listens on loopback")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m arbtui.sim.server",
        description="Serve arbtui's simulated venues over loopback HTTP + WebSocket.",
    )
    p.add_argument("--config", type=Path, default=None, help="config.toml (default: the built-in demo)")
    p.add_argument("--host", type=_loopback, default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_non_negative_int, default=0, help="port (default 0: any free port)")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="override the config seed")
    p.add_argument("--ack-latency-ms", type=_non_negative_int, default=None, help="every venue's ack latency")
    p.add_argument("--latency-jitter-ms", type=_non_negative_int, default=None, help="every venue's latency jitter")
    p.add_argument("--timeout-rate", type=_rate, default=None, help="share of orders whose reply never comes")
    p.add_argument("--reject-rate", type=_rate, default=None, help="share of orders rejected")
    p.add_argument("--partial-fill-rate", type=_rate, default=None, help="share of orders partly taken by others")
    args = p.parse_args(argv)
    rates = [r for r in (args.timeout_rate, args.reject_rate, args.partial_fill_rate) if r is not None]
    if sum(rates, Decimal(0)) > 1:
        p.error("--timeout-rate, --reject-rate and --partial-fill-rate add up to more than 1")
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config to serve: the file (or the demo), with the command-line overrides applied."""
    config = load_config(args.config) if args.config is not None else default_config()
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("ack_latency_ms", args.ack_latency_ms),
            ("latency_jitter_ms", args.latency_jitter_ms),
            ("timeout_rate", args.timeout_rate),
            ("reject_rate", args.reject_rate),
            ("partial_fill_rate", args.partial_fill_rate),
        )
        if value is not None
    }
    if overrides:
        venues = tuple(replace(v, sim=replace(v.sim, **overrides)) for v in config.venues)
        config = replace(config, venues=venues)
    return config


async def serve(config: Config, host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT (0), or until the market driver dies (1)."""
    server = SimServer(config, LiveClock())
    runner = web.AppRunner(server.make_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        site = web.SockSite(runner, sock)
        await site.start()
    except OSError:
        sock.close()
        await runner.cleanup()
        raise
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.done.set)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"LISTENING http://{shown}:{bound}", flush=True)
    log.info("serving %s on %s:%d", ", ".join(server.venues), host, bound)
    try:
        await server.done.wait()
    finally:
        await runner.cleanup()
        sock.close()
    return 1 if server.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(config, args.host, args.port))
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
