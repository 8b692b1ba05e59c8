"""The venue-blind connection supervisor against a real WebSocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from arbtui.domain.clock import LiveClock
from arbtui.domain.events import VenueStatus
from arbtui.venues.connection import ConnectionSupervisor, FeedCounters, FeedLink, SupervisorConfig


class Handler:
    def __init__(self) -> None:
        self.opens = 0
        self.closes = 0
        self.frames: list[str | bytes] = []
        self.link: FeedLink | None = None
        self.on_each: Callable[[str | bytes], None] | None = None

    def on_open(self, link: FeedLink) -> Sequence[str]:
        self.opens += 1
        self.link = link
        return [f"subscribe-{self.opens}"]

    def on_frame(self, raw: str | bytes, ts_ns: int) -> None:
        self.frames.append(raw)
        if self.on_each is not None:
            self.on_each(raw)

    def on_close(self) -> None:
        self.closes += 1


class Venue:
    """A tiny server: records what clients send, streams frames on demand."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.connections: list[ServerConnection] = []
        self.server: Server | None = None
        self.silent = False

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        async for msg in ws:
            self.received.append(str(msg))
            if not self.silent and str(msg).startswith("subscribe"):
                await ws.send(f"snapshot for {msg}")

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    v = Venue()
    async with serve(v.handler, "127.0.0.1", 0) as server:
        v.server = server
        yield v


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def make(venue_url: str, handler: Handler, **kw: object) -> tuple[ConnectionSupervisor, list[VenueStatus]]:
    statuses: list[VenueStatus] = []
    cfg = SupervisorConfig(url=venue_url, backoff_base_s=0.05, backoff_max_s=0.2, **kw)  # type: ignore[arg-type]
    sup = ConnectionSupervisor(
        "v", "market", cfg, handler, LiveClock(), FeedCounters(), lambda s, d: statuses.append(s), rng=random.Random(1)
    )
    return sup, statuses


async def test_subscribes_after_connect_and_counts_frames(venue: Venue) -> None:
    handler = Handler()
    taps: list[tuple[str, str, str | bytes]] = []

    class Recorder:
        def connected(self, venue: str, stream: str, ts_ns: int) -> None:
            taps.append((venue, stream, "<connected>"))

        def frame(self, venue: str, stream: str, raw: str | bytes, ts_ns: int) -> None:
            taps.append((venue, stream, raw))

    sup, statuses = make(venue.url, handler)
    sup.tap = Recorder()
    await sup.start()
    await until(lambda: len(handler.frames) == 1)
    assert venue.received == ["subscribe-1"]
    assert handler.frames == ["snapshot for subscribe-1"]
    assert taps == [("v", "market", "<connected>"), ("v", "market", "snapshot for subscribe-1")]
    assert sup.counters.frames == 1 and sup.counters.bytes == len("snapshot for subscribe-1")
    assert statuses[:2] == [VenueStatus.CONNECTING, VenueStatus.CONNECTED]
    await sup.stop()
    assert sup.status is VenueStatus.CLOSED and handler.closes == 1


async def test_reconnects_and_resubscribes_after_the_venue_drops_the_connection(venue: Venue) -> None:
    handler = Handler()
    sup, _ = make(venue.url, handler)
    await sup.start()
    await until(lambda: len(handler.frames) == 1)
    await venue.connections[0].close()  # the venue drops us mid-stream
    await until(lambda: len(handler.frames) == 2)
    assert venue.received == ["subscribe-1", "subscribe-2"]
    assert handler.closes == 1 and handler.opens == 2
    assert sup.counters.reconnects == 1 and sup.counters.connects == 2
    await sup.stop()


async def test_a_handler_can_ask_for_a_resubscribe_or_a_reconnect(venue: Venue) -> None:
    handler = Handler()
    sup, _ = make(venue.url, handler)
    await sup.start()
    await until(lambda: len(handler.frames) == 1)
    assert handler.link is not None
    handler.link.send("subscribe-again")
    await until(lambda: len(handler.frames) == 2)
    assert handler.frames[-1] == "snapshot for subscribe-again"
    handler.link.reconnect("checksum mismatch")
    await until(lambda: handler.opens == 2 and len(handler.frames) == 3)
    assert sup.counters.reconnects == 1
    await sup.stop()


async def test_stale_feed_is_marked_and_reconnected(venue: Venue) -> None:
    venue.silent = True  # accepts the connection, never sends a frame
    handler = Handler()
    sup, statuses = make(venue.url, handler, stale_after_s=0.2)
    await sup.start()
    await until(lambda: sup.counters.stale >= 1 and handler.opens >= 2)
    assert VenueStatus.STALE in statuses
    await sup.stop()


async def test_keepalive_text_is_sent_on_schedule(venue: Venue) -> None:
    handler = Handler()
    sup, _ = make(venue.url, handler, keepalive_s=0.05, keepalive_text="PING")
    await sup.start()
    await until(lambda: venue.received.count("PING") >= 3)
    await sup.stop()


async def test_unreachable_venue_retries_with_backoff_and_reports_error() -> None:
    handler = Handler()
    # A port nobody listens on: bind one, close it, use its number.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    sup, statuses = make(f"ws://127.0.0.1:{port}", handler)
    await sup.start(first_connect_timeout_s=0.5)
    assert sup.status in (VenueStatus.ERROR, VenueStatus.CONNECTING)
    assert statuses.count(VenueStatus.ERROR) >= 1 and sup.last_error and "connect failed" in sup.last_error
    assert handler.opens == 0
    await sup.stop()


def test_backoff_is_full_jitter_and_capped() -> None:
    sup, _ = make("ws://127.0.0.1:1", Handler())
    for attempt in range(1, 12):
        cap = min(0.2, 0.05 * 2 ** (attempt - 1))
        samples = [sup.backoff_s(attempt) for _ in range(200)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.5  # spread over the range, not a constant
