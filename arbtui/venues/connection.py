"""A venue-blind WebSocket connection supervisor.

It owns one WebSocket connection and nothing about any venue's format: a :class:`FeedHandler`
(one per venue module) says what to send after connecting, parses each frame, and asks for a
resync or a reconnect when its integrity checks fail. The supervisor provides:

- connect with exponential backoff and full jitter (``delay = uniform(0, min(max, base * 2**n))``),
  the attempt counter reset once a connection has delivered a frame;
- the handler's subscribe messages after every (re)connect;
- a stale-feed watchdog: no frame for ``stale_after_s`` marks the venue STALE and reconnects;
- an optional text keep-alive (Polymarket wants ``PING`` every 10 s);
- per-venue :class:`FeedCounters` (frames, bytes, reconnects, stale, malformed, integrity failures,
  resyncs, crossed books), read by analytics;
- a tap that sees every frame exactly as received (the session recorder).

Status changes go to a callback; frames are handled synchronously on the event loop, so a handler
never sees two frames at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from arbtui.domain.clock import NS_PER_S, Clock
from arbtui.domain.events import VenueStatus

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeedCounters:
    """What a feed has seen. Handlers add to ``malformed``, ``integrity_failures``, ``resyncs``,
    ``book_updates`` and ``crossed``; the supervisor counts the rest."""

    frames: int = 0
    bytes: int = 0
    book_updates: int = 0
    malformed: int = 0
    integrity_failures: int = 0
    resyncs: int = 0
    crossed: int = 0
    reconnects: int = 0
    stale: int = 0
    connects: int = 0
    last_frame_ns: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FeedLink(Protocol):
    """What the supervisor offers its handler while a connection is open."""

    def send(self, message: str) -> None:
        """Queue a text message to the venue (a resubscribe, a pong)."""
        ...

    def reconnect(self, reason: str) -> None:
        """Drop this connection and start again (with backoff)."""
        ...


class FeedHandler(Protocol):
    """A venue module's side of a WebSocket feed."""

    def on_open(self, link: FeedLink) -> Sequence[str]:
        """A connection is open: reset per-connection state and return the subscribe messages."""
        ...

    def on_frame(self, raw: str | bytes, ts_ns: int) -> None:
        """One frame as received. Must not raise for bad input: count it and carry on."""
        ...

    def on_close(self) -> None:
        """The connection is gone: its books are no longer trustworthy."""
        ...


class NullLink:
    """A link that goes nowhere: replay feeds recorded frames to a handler without a socket."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.reconnects: list[str] = []

    def send(self, message: str) -> None:
        self.sent.append(message)

    def reconnect(self, reason: str) -> None:
        self.reconnects.append(reason)


StatusCallback = Callable[[VenueStatus, str], None]


class Tap(Protocol):
    """Sees a feed exactly as received (the session recorder)."""

    def connected(self, venue: str, stream: str, ts_ns: int) -> None:
        """A new connection opened: per-connection state (sequence numbers) starts again."""
        ...

    def frame(self, venue: str, stream: str, raw: str | bytes, ts_ns: int) -> None:
        """One frame, before the handler sees it."""
        ...


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    url: str
    stale_after_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    keepalive_s: float | None = None
    keepalive_text: str = "PING"
    open_timeout_s: float = 10.0
    max_frame_bytes: int = 16 * 1024 * 1024
    extra_headers: tuple[tuple[str, str], ...] = ()


class ConnectionSupervisor:
    """Keeps one WebSocket feed alive for one venue (see the module docstring)."""

    def __init__(
        self,
        venue: str,
        stream: str,
        config: SupervisorConfig,
        handler: FeedHandler,
        clock: Clock,
        counters: FeedCounters,
        on_status: StatusCallback,
        *,
        tap: Tap | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.venue = venue
        self.stream = stream
        self.config = config
        self.handler = handler
        self.counters = counters
        self.tap = tap
        self._clock = clock
        self._on_status = on_status
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._reconnect_reason: str | None = None
        self._wake = asyncio.Event()
        self._first_open = asyncio.Event()
        self._attempt = 0
        self._last_frame = 0
        self._closing = False
        self.status = VenueStatus.CLOSED
        self.last_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, first_connect_timeout_s: float | None = None) -> None:
        """Start supervising; return once the first connection is open (or the timeout passes,
        in which case the supervisor keeps retrying in the background)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"feed:{self.venue}:{self.stream}")
            self._task.add_done_callback(self._task_done)
        timeout = first_connect_timeout_s if first_connect_timeout_s is not None else self.config.open_timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_open.wait(), timeout)

    async def stop(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._set_status(VenueStatus.CLOSED, "closed")

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.status in (VenueStatus.CONNECTED, VenueStatus.STALE)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # the supervisor loop itself failed: surface it, never lose it silently
            log.error("feed %s/%s stopped: %r", self.venue, self.stream, exc)
            self._set_status(VenueStatus.ERROR, f"feed supervisor stopped: {type(exc).__name__}: {exc}")

    # --- FeedLink ----------------------------------------------------------------------------
    def send(self, message: str) -> None:
        self._outbox.put_nowait(message)
        self._wake.set()  # the session loop may be waiting for a frame: let it send now

    def reconnect(self, reason: str) -> None:
        if self._reconnect_reason is None:
            self._reconnect_reason = reason
        self._wake.set()

    # --- internals ---------------------------------------------------------------------------
    def backoff_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th retry (1-based)."""
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * (2 ** min(max(0, attempt - 1), 30)))
        return self._rng.uniform(0, cap)

    def _set_status(self, status: VenueStatus, detail: str) -> None:
        if status is VenueStatus.ERROR:
            self.last_error = detail
        if status is not self.status:
            self.status = status
            self._on_status(status, detail)

    async def _run(self) -> None:
        while not self._closing:
            if self._attempt > 0:
                delay = self.backoff_s(self._attempt)
                await self._clock.sleep(int(delay * NS_PER_S))
            self._attempt += 1
            self._set_status(VenueStatus.CONNECTING, f"connecting to {self.config.url}")
            try:
                ws = await asyncio.wait_for(
                    ws_connect(
                        self.config.url,
                        max_size=self.config.max_frame_bytes,
                        additional_headers=list(self.config.extra_headers) or None,
                        ping_interval=20,
                        ping_timeout=20,
                        open_timeout=self.config.open_timeout_s,
                        compression=None,
                    ),
                    self.config.open_timeout_s,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
                self._set_status(VenueStatus.ERROR, f"connect failed: {type(exc).__name__}: {exc}")
                continue
            try:
                await self._session(ws)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the connection is gone; reconnect
                self._set_status(VenueStatus.ERROR, f"connection lost: {type(exc).__name__}: {exc}")
            finally:
                self._ws = None
                self.handler.on_close()
                with contextlib.suppress(Exception):
                    await ws.close()
            if not self._closing:
                self.counters.reconnects += 1

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._reconnect_reason = None
        self._wake.clear()
        while not self._outbox.empty():  # messages queued for a dead connection are stale
            self._outbox.get_nowait()
        self.counters.connects += 1
        if self.tap is not None:
            self.tap.connected(self.venue, self.stream, self._clock.now_ns())
        for message in self.handler.on_open(self):
            await ws.send(message)
        self._set_status(VenueStatus.CONNECTED, f"connected to {self.config.url}")
        self._first_open.set()
        opened = self._clock.now_ns()
        self._last_frame = opened
        # Frames are read and handled by one task (no per-frame futures: the hot path); this loop
        # only wakes for control: messages to send, a reconnect request, the keep-alive, the watchdog.
        reader = asyncio.create_task(self._read(ws), name=f"feed-read:{self.venue}:{self.stream}")
        wake: asyncio.Task[bool] | None = None
        stale_ns = int(self.config.stale_after_s * NS_PER_S)
        keepalive_ns = int(self.config.keepalive_s * NS_PER_S) if self.config.keepalive_s else None
        next_keepalive = opened + keepalive_ns if keepalive_ns else None
        try:
            while True:
                while not self._outbox.empty():
                    await ws.send(self._outbox.get_nowait())
                now = self._clock.now_ns()
                if next_keepalive is not None and now >= next_keepalive:
                    await ws.send(self.config.keepalive_text)
                    next_keepalive = now + (keepalive_ns or 0)
                if self._reconnect_reason is not None:
                    self._set_status(VenueStatus.CONNECTING, f"reconnecting: {self._reconnect_reason}")
                    return
                if now - self._last_frame >= stale_ns:
                    self.counters.stale += 1
                    self._set_status(VenueStatus.STALE, f"no data for {self.config.stale_after_s:g} s; reconnecting")
                    return
                deadline = self._last_frame + stale_ns
                if next_keepalive is not None:
                    deadline = min(deadline, next_keepalive)
                if wake is None:
                    wake = asyncio.ensure_future(self._wake.wait())
                timeout = max(0.0, (deadline - now) / NS_PER_S) + 0.001
                done, _ = await asyncio.wait({reader, wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if wake in done:
                    self._wake.clear()
                    wake = None
                if reader in done:
                    reader.result()  # raises why the connection ended
                    raise ConnectionError("closed by the venue")
        finally:
            for t in (reader, wake):
                if t is not None and not t.done():
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            if (
                self._clock.now_ns() - opened >= int(self.config.backoff_max_s * NS_PER_S)
                and self.counters.last_frame_ns
            ):
                self._attempt = 0  # a connection that lived and delivered: start the backoff afresh

    async def _read(self, ws: ClientConnection) -> None:
        counters = self.counters
        handler = self.handler
        tap = self.tap
        clock = self._clock
        try:
            async for raw in ws:
                ts = clock.now_ns()
                self._last_frame = ts
                counters.frames += 1
                counters.bytes += len(raw)
                counters.last_frame_ns = ts
                if self.status is not VenueStatus.CONNECTED:
                    self._set_status(VenueStatus.CONNECTED, "data flowing")
                if tap is not None:
                    tap.frame(self.venue, self.stream, raw, ts)
                handler.on_frame(raw, ts)
        except websockets.ConnectionClosed as exc:
            raise ConnectionError(f"closed by the venue (code {exc.rcvd.code if exc.rcvd else 'none'})") from None
