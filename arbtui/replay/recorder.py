"""The session recorder: market-data frames exactly as received, order requests and venue replies,
and operator actions, written by :class:`~arbtui.replay.session_format.SessionWriter` off the hot path.

It is wired in when the engine is built (``RunOptions.recorder``) and costs nothing while it is not
recording. :meth:`SessionRecorder.start` may be called mid-session (the console's record key): every
feed is then asked for fresh snapshots so the file begins with whole books.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbtui import __version__
from arbtui.config import Config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import Clock
from arbtui.domain.events import Event, VenueStatus
from arbtui.domain.execution import OperatorAction
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing
from arbtui.domain.orders import Fill, Liquidity, OrderReport, OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.replay.session_format import FORMAT, VERSION, SessionWriter
from arbtui.venues.base import UnknownOrder, Venue, VenueError, VenueListener
from arbtui.venues.secrets import redact


class RecordPathError(OSError):
    """A path a session cannot be recorded to. An OSError (the console's record key shows
    ``strerror``); ``str()`` names the path and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.strerror = reason
        self.filename = str(path)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def check_record_path(path: Path) -> None:
    """Raise :class:`RecordPathError` unless a session can be recorded to ``path``: not a folder, and
    a file that can be created (or is writable) in a folder that can be created. Probes by opening the
    file for appending (created, and removed again, if it did not exist); writes nothing into it."""
    if path.is_dir():
        raise RecordPathError(path, "is a folder; expected the session's file, e.g. FOLDER/session.jsonl.gz")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise RecordPathError(path, f"{folder} is a file, not a folder")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    except OSError as exc:
        raise RecordPathError(path, f"cannot write the session file: {exc.strerror}") from None
    if not existed:
        path.unlink(missing_ok=True)


class SessionRecorder:
    """Implements the feeds' :class:`~arbtui.venues.connection.Tap`; see the module docstring."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._writer: SessionWriter | None = None
        self.mode = config.mode
        self.venues: dict[str, Venue] = {}
        self.path: Path | None = None
        self._last_t = 0

    def _write(self, event: dict[str, Any]) -> None:
        """Queue ``event`` with its ``t`` never before the previous one: a live clock is wall time, which an
        NTP step can move backwards, and a session's times must not decrease."""
        assert self._writer is not None
        t = event["t"]
        if t < self._last_t:
            event["t"] = self._last_t
        else:
            self._last_t = t
        self._writer.write(event)

    @property
    def active(self) -> bool:
        return self._writer is not None

    @property
    def events(self) -> int:
        return self._writer.events if self._writer is not None else 0

    @property
    def error(self) -> BaseException | None:
        return self._writer.error if self._writer is not None else None

    def start(self, path: Path) -> None:
        if self._writer is not None:
            raise RuntimeError(f"already recording to {self.path}")
        now = self._clock.now_ns()
        created = dt.datetime.fromtimestamp(now / 1e9, tz=dt.UTC).isoformat()  # float ok: a label
        header: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "created": created,
            "arbtui": __version__,
            "start_ns": now,
            "mode": self.mode,
            "venues": {name: self._config.venue(name).kind for name in self.venues},
            "config": self._config.effective_data(),
        }
        check_record_path(path)
        try:
            self._writer = SessionWriter(path, header)
        except OSError as exc:
            raise RecordPathError(path, f"cannot write the session file: {exc.strerror}") from None
        self._last_t = now
        self.path = path
        for venue in self.venues.values():
            _request_snapshots(venue)

    def stop(self) -> Path | None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        return self.path

    # --- Tap ---------------------------------------------------------------------------------
    def connected(self, venue: str, stream: str, ts_ns: int) -> None:
        if self._writer is not None:
            self._write({"t": ts_ns, "kind": "connect", "venue": venue, "stream": stream})

    def frame(self, venue: str, stream: str, raw: str | bytes, ts_ns: int) -> None:
        if self._writer is not None:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self._write({"t": ts_ns, "kind": "frame", "venue": venue, "stream": stream, "raw": redact(text)})

    # --- orders and actions --------------------------------------------------------------------
    def order(self, venue: str, op: str, body: dict[str, Any]) -> None:
        if self._writer is not None:
            self._write({"t": self._clock.now_ns(), "kind": "order", "venue": venue, "op": op, **body})

    def reply(self, venue: str, op: str, cid: str, report: OrderReport | None, error: BaseException | None) -> None:
        if self._writer is None:
            return
        ev: dict[str, Any] = {"t": self._clock.now_ns(), "kind": "reply", "venue": venue, "op": op, "cid": cid}
        if report is not None:
            ev["report"] = report_to_json(report)
        if error is not None:
            ev["error"] = {
                "type": "unknown_order" if isinstance(error, UnknownOrder) else "venue_error",
                "message": redact(str(error)),
                "retryable": bool(getattr(error, "retryable", False)),
            }
        self._write(ev)

    def balances(self, venue: str, balances: Mapping[str, Decimal]) -> None:
        if self._writer is not None:
            self._write(
                {
                    "t": self._clock.now_ns(),
                    "kind": "reply",
                    "venue": venue,
                    "op": "balances",
                    "balances": {k: str(v) for k, v in balances.items()},
                }
            )

    def on_event(self, event: Event) -> None:
        if self._writer is not None and isinstance(event, OperatorAction):
            self._write(
                {
                    "t": event.ts_ns,
                    "kind": "action",
                    "action": event.action,
                    "target": event.target,
                    "detail": redact(event.detail),
                }
            )


def _request_snapshots(venue: Venue) -> None:
    inner = venue.inner if isinstance(venue, RecordingVenue) else venue
    record = getattr(inner, "record_snapshots", None)
    if callable(record):  # simulated venues: publish every book in full
        record()
        return
    feed = getattr(inner, "feed", None)
    resync = getattr(feed, "resync", None)
    if callable(resync):  # real venues: ask the venue for fresh snapshots
        for lst in inner.listings:
            resync(lst.market, "recording started")


# --- JSON forms of orders ------------------------------------------------------------------------


def request_to_json(r: OrderRequest) -> dict[str, Any]:
    return {
        "cid": r.client_order_id,
        "market": r.market,
        "side": r.side.value,
        "quantity": str(r.quantity),
        "limit_price": str(r.limit_price),
        "tif": r.time_in_force.value,
    }


def request_from_json(venue: str, d: Mapping[str, Any]) -> OrderRequest:
    return OrderRequest(
        str(d["cid"]),
        venue,
        str(d["market"]),
        Side(d["side"]),
        Decimal(str(d["quantity"])),
        Decimal(str(d["limit_price"])),
        TimeInForce(d["tif"]),
    )


def report_to_json(r: OrderReport) -> dict[str, Any]:
    return {
        "cid": r.client_order_id,
        "venue_order_id": r.venue_order_id,
        "status": r.status.value,
        "quantity": str(r.quantity),
        "filled": str(r.filled_quantity),
        "average_price": None if r.average_price is None else str(r.average_price),
        "fee": str(r.fee),
        "ts": r.ts_ns,
        "reason": None if r.reason is None else redact(r.reason),
        "fills": [
            {"q": str(f.quantity), "p": str(f.price), "fee": str(f.fee), "liq": f.liquidity.value, "ts": f.ts_ns}
            for f in r.fills
        ],
    }


def report_from_json(venue: str, d: Mapping[str, Any], cid: str | None = None) -> OrderReport:
    """A recorded report; ``cid`` renames it (a replay's client order ids differ from the original's)."""
    client_id = cid if cid is not None else str(d["cid"])
    return OrderReport(
        client_order_id=client_id,
        venue=venue,
        venue_order_id=d.get("venue_order_id"),
        status=OrderStatus(d["status"]),
        quantity=Decimal(str(d["quantity"])),
        filled_quantity=Decimal(str(d["filled"])),
        average_price=None if d.get("average_price") is None else Decimal(str(d["average_price"])),
        fee=Decimal(str(d["fee"])),
        ts_ns=int(d["ts"]),
        reason=d.get("reason"),
        fills=tuple(
            Fill(client_id, Decimal(f["q"]), Decimal(f["p"]), Decimal(f["fee"]), Liquidity(f["liq"]), int(f["ts"]))
            for f in d.get("fills", [])
        ),
    )


class RecordingVenue:
    """A venue whose order traffic the recorder sees. Everything else is the wrapped venue's."""

    def __init__(self, inner: Venue, recorder: SessionRecorder) -> None:
        self.inner = inner
        self._rec = recorder

    def __getattr__(self, name: str) -> Any:  # counters, budgets, feed, mode, ...: the venue's own
        return getattr(self.inner, name)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def listings(self) -> Sequence[Listing]:
        return self.inner.listings

    @property
    def status(self) -> VenueStatus:
        return self.inner.status

    async def connect(self, listener: VenueListener) -> None:
        await self.inner.connect(listener)

    async def close(self) -> None:
        await self.inner.close()

    def book(self, market: str) -> OrderBook | None:
        return self.inner.book(market)

    def fees(self, market: str) -> FeeSchedule:
        return self.inner.fees(market)

    async def balances(self) -> Mapping[str, Decimal]:
        self._rec.order(self.name, "balances", {})
        balances = await self.inner.balances()
        self._rec.balances(self.name, balances)
        return balances

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if not self._rec.active:  # the order path pays nothing while nothing records
            return await self.inner.place_order(request)
        self._rec.order(self.name, "place", request_to_json(request))
        return await self._call("place", request.client_order_id, self.inner.place_order(request))

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        self._rec.order(self.name, "cancel", {"cid": client_order_id})
        return await self._call("cancel", client_order_id, self.inner.cancel_order(client_order_id))

    async def order_status(self, client_order_id: str) -> OrderReport:
        self._rec.order(self.name, "status", {"cid": client_order_id})
        return await self._call("status", client_order_id, self.inner.order_status(client_order_id))

    async def _call(self, op: str, cid: str, call: Any) -> OrderReport:
        try:
            report: OrderReport = await call
        except VenueError as exc:
            self._rec.reply(self.name, op, cid, None, exc)
            raise
        self._rec.reply(self.name, op, cid, report, None)
        return report
