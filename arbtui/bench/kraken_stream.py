"""A generated Kraken WebSocket v2 ``book`` stream (BTC/USD-like, depth 10) for the ingest, replay and
memory figures.

The venue side keeps a deeper book (about 30 levels a side, integer ticks of 0.1 and lots of
0.00000001) and moves it one event at a time, mostly at or near the touch: a size change at one of
the best levels, a new level inside the spread or among the best, a level pulled, a trade that
takes the best level, sometimes two changes in one frame. Each frame carries what a depth-10
subscriber sees change, as Kraken sends it: the changed or new levels, deletes (qty 0) for levels
that left the book, and nothing for levels pushed out of the top ten (the subscriber truncates),
with the level that enters from below after a delete.

Prices and sizes are JSON numbers, so the wire drops trailing zeros (``29430.0`` stays, ``4.0``
stays, ``0.50000000`` is ``0.5``). Every frame carries the real CRC32, computed from the venue's
integer book by an implementation that shares nothing with the feed: a level's token at precision
``p`` is its integer count of ``10**-p`` units, written without leading zeros, which for integer
ticks and lots is just ``str(ticks) + str(lots)``. With ``reference_every=n`` every n-th frame's
checksum is also computed by :func:`arbtui.venues.kraken.book_checksum` (Decimal levels built from the
integers, never from the floats on the wire) and must agree (``reference_every=1``: every frame).
So a feed that verifies every frame proves it rebuilt exactly the venue's book.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from arbtui.venues.kraken import book_checksum

SYMBOL = "BTC/USD"
PRICE_PRECISION = 1
QTY_PRECISION = 8
DEPTH = 10
VENUE_LEVELS = 30  # how deep the venue's own book is kept
START_TICKS = 294_302  # 29430.2
_ROUND_SIZES = (100_000, 1_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000, 250_000_000, 400_000_000)


@dataclass
class StreamStats:
    frames: int = 0
    snapshots: int = 0
    levels: int = 0  # level entries on the wire
    deletes: int = 0  # entries with qty 0
    truncations: int = 0  # frames after which the subscriber must drop a level pushed out of its depth
    per_frame: dict[int, int] = field(default_factory=dict)  # entries per update frame -> frames


class KrakenBookStream:
    """Yields raw frames (bytes); the first is the snapshot. Deterministic for a seed."""

    def __init__(self, seed: int = 7, *, start_ns: int = 1_690_731_000_000_000_000, reference_every: int = 0) -> None:
        self._rng = random.Random(seed)
        self._reference_every = reference_every
        self.reference_checked = 0
        self.bids: dict[int, int] = {}  # ticks -> lots (the venue's book)
        self.asks: dict[int, int] = {}
        self.stats = StreamStats()
        self._ts = start_ns
        best_bid = START_TICKS
        for i in range(VENUE_LEVELS):
            self.bids[best_bid - i - self._rng.randrange(0, 2) * i] = self._size()
            self.asks[best_bid + 1 + i + self._rng.randrange(0, 2) * i] = self._size()
        self._top_bids = self._top(self.bids, True)
        self._top_asks = self._top(self.asks, False)

    # --- the venue's book ------------------------------------------------------------------
    def _size(self) -> int:
        r = self._rng.random()
        if r < 0.35:
            return self._rng.choice(_ROUND_SIZES)
        return self._rng.randrange(1, 500_000_000)

    @staticmethod
    def _top(side: dict[int, int], bids: bool) -> dict[int, int]:
        prices = sorted(side, reverse=bids)[:DEPTH]
        return {p: side[p] for p in prices}

    def _index(self) -> int:
        """A level index, mostly the touch: 0 half the time, then geometrically fewer."""
        i = 0
        while i < DEPTH - 1 and self._rng.random() < 0.45:
            i += 1
        return i

    def _sorted(self, bids: bool) -> list[int]:
        return sorted(self.bids if bids else self.asks, reverse=bids)

    def _refill(self) -> None:
        for bids in (True, False):
            side = self.bids if bids else self.asks
            while len(side) < VENUE_LEVELS:
                worst = min(side) if bids else max(side)
                p = worst - 1 - self._rng.randrange(0, 3) if bids else worst + 1 + self._rng.randrange(0, 3)
                side[p] = self._size()

    def _event(self) -> None:
        rng = self._rng
        bids = rng.random() < 0.5
        side = self.bids if bids else self.asks
        prices = self._sorted(bids)
        r = rng.random()
        if r < 0.55:  # a size change at (or near) the touch
            side[prices[self._index()]] = self._size()
        elif r < 0.72:  # a new level: inside the spread when there is room, else among the best
            best_bid, best_ask = max(self.bids), min(self.asks)
            if best_ask - best_bid > 1:
                p = rng.randrange(best_bid + 1, best_ask)
            else:
                i = self._index()
                p = prices[i] + (-1 if bids else 1) * rng.randrange(1, 3)
            if p not in side and (p < min(self.asks) if bids else p > max(self.bids)):
                side[p] = self._size()
        elif r < 0.88:  # a level pulled
            del side[prices[self._index()]]
        else:  # a trade: the best level taken, the next one partly
            del side[prices[0]]
            if rng.random() < 0.5:
                nxt = prices[1]
                side[nxt] = max(1, side[nxt] - rng.randrange(1, side[nxt] + 1))

    # --- the subscriber's view ---------------------------------------------------------------
    def _diff(self, old: dict[int, int], new: dict[int, int], venue: dict[int, int]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for p in old:
            if p not in new and p not in venue:
                out.append((p, 0))  # left the book: Kraken sends a delete
            # a level still in the venue's book but out of the top ten: nothing (truncation)
        for p, q in new.items():
            if old.get(p) != q:
                out.append((p, q))
        return out

    def _checksum(self) -> int:
        asks = sorted(self._top_asks.items())
        bids = sorted(self._top_bids.items(), reverse=True)
        crc = zlib.crc32("".join([f"{p}{q}" for p, q in asks + bids]).encode("ascii"))
        every = self._reference_every
        if every and self.stats.frames % every == 0:

            def levels(side: list[tuple[int, int]]) -> list[tuple[Decimal, Decimal]]:
                return [(Decimal(p).scaleb(-PRICE_PRECISION), Decimal(q).scaleb(-QTY_PRECISION)) for p, q in side]

            reference = book_checksum(levels(asks), levels(bids), PRICE_PRECISION, QTY_PRECISION)
            if reference != crc:
                raise AssertionError(f"frame {self.stats.frames}: checksum {crc} but the reference says {reference}")
            self.reference_checked += 1
        return crc

    @staticmethod
    def _wire(levels: list[tuple[int, int]]) -> list[dict[str, float]]:
        # float ok: the wire's JSON numbers; ticks / 10**p is the double nearest the decimal value,
        # which orjson writes as its shortest repr (the decimal text with trailing zeros dropped).
        return [{"price": p / 10**PRICE_PRECISION, "qty": q / 10**QTY_PRECISION} for p, q in levels]

    def _timestamp(self) -> str:
        s, ns = divmod(self._ts, 1_000_000_000)
        hh, rem = divmod(s % 86_400, 3_600)
        mm, ss = divmod(rem, 60)
        return f"2023-07-30T{hh:02d}:{mm:02d}:{ss:02d}.{ns // 1000:06d}Z"

    def snapshot(self) -> bytes:
        """The snapshot of the current book (a fresh subscription's first frame)."""
        self.stats.frames += 1
        self.stats.snapshots += 1
        bids = sorted(self._top_bids.items(), reverse=True)
        asks = sorted(self._top_asks.items())
        doc = {
            "channel": "book",
            "type": "snapshot",
            "data": [
                {"symbol": SYMBOL, "bids": self._wire(bids), "asks": self._wire(asks), "checksum": self._checksum()}
            ],
        }
        return _compact(orjson.dumps(doc))

    def update(self) -> bytes:
        """The next update frame (at least one level changes)."""
        while True:
            self._event()
            if self._rng.random() < 0.12:
                self._event()  # two changes in one frame
            self._refill()
            top_bids, top_asks = self._top(self.bids, True), self._top(self.asks, False)
            bid_changes = self._diff(self._top_bids, top_bids, self.bids)
            ask_changes = self._diff(self._top_asks, top_asks, self.asks)
            if bid_changes or ask_changes:
                break
        pushed = any(p in self.bids for p in self._top_bids if p not in top_bids) or any(
            p in self.asks for p in self._top_asks if p not in top_asks
        )
        self._top_bids, self._top_asks = top_bids, top_asks
        self._ts += self._rng.randrange(20_000, 200_000)
        st = self.stats
        st.frames += 1
        st.truncations += pushed
        n = len(bid_changes) + len(ask_changes)
        st.levels += n
        st.deletes += sum(1 for _, q in bid_changes + ask_changes if q == 0)
        st.per_frame[n] = st.per_frame.get(n, 0) + 1
        doc = {
            "channel": "book",
            "type": "update",
            "data": [
                {
                    "symbol": SYMBOL,
                    "bids": self._wire(bid_changes),
                    "asks": self._wire(ask_changes),
                    "checksum": self._checksum(),
                    "timestamp": self._timestamp(),
                }
            ],
        }
        return _compact(orjson.dumps(doc))


def _compact(raw: bytes) -> bytes:
    """A tight copy: orjson's output keeps the allocation it grew into (about 4 KB resident per frame
    here), which would make a stream held in memory look far larger than its bytes."""
    return bytes(bytearray(raw))


def generate(frames: int, seed: int = 7, *, reference_every: int = 0) -> tuple[list[bytes], KrakenBookStream]:
    """A snapshot followed by ``frames - 1`` updates (and the stream, for its stats). Replaying the
    list again from its first frame is valid too: the snapshot resets the subscriber's book."""
    stream = KrakenBookStream(seed, reference_every=reference_every)
    out = [stream.snapshot()]
    out.extend(stream.update() for _ in range(frames - 1))
    return out, stream
