"""Frame to opportunity: from a book frame's arrival in a venue's feed handler to the detector's
``OpportunityDetected`` / ``OpportunityUpdated`` event reaching an engine subscriber.

The real path, in one process: two venues, **kraken** (``KrakenFeed``: Kraken v2 ``book`` frames,
depth 10, JSON numbers, a CRC32 verified on every frame) and **coinbase** (``CoinbaseFeed``: Advanced
Trade ``level2`` frames, full depth, sequence numbers), each behind a ``LiveVenue`` with a paper trader
and no socket (frames are handed to the feed exactly as the connection supervisor hands them), one
``Engine`` on the live clock, its ``Detector``. BTC-USD at the demo's high-volume taker fees (kraken
0.10%, coinbase 0.05%), slippage floor 1 bp. The volatility term is off (multiplier 0): the stream
packs hours of quote changes into seconds, which the estimator would rightly read as extreme volatility
(nothing would pay); the estimator still runs on every frame.

The generated stream (deterministic, seeded) repeats a cycle of 28 frames, alternating venues at
random: quantity changes, new and pulled levels at every depth (mostly below the touch, sometimes at
it), then a frame that opens a paying spread (coinbase bids that jump above kraken's asks, or kraken
asks that drop under coinbase's bids, walked 2-3 levels deep), frames that resize it, and a frame that
closes it. Every frame goes through its feed's parser and integrity check (the figure reports any
checksum or parse failure).

Timing: ``time.perf_counter_ns()`` when the frame arrives (just before ``feed.on_frame(raw, ts)``),
and again in an engine subscriber when the event arrives. An event is charged from the oldest frame
that the pricing which produced it was the first to take in (the detector's ``price_market`` is
wrapped to take that stamp), so a coalesced pricing is charged from the first frame it absorbed. The
same two stamps are also read in this thread's CPU time (``cpu_*``): the path's own cost, without the
time the process waited for a core (this machine's two cores are shared).

Scenarios:

- **sparse**: each frame in its own event-loop turn (a socket read returns one frame). The target
  applies here: p99 <= 100 us with coalescing (the default); the same run without coalescing shows
  that coalescing adds nothing when frames are sparse.
- **flood**: 20,000 frames/s; frame ``j`` reaches the socket at ``start + j / 20,000`` s, and each
  loop turn hands over every frame that has arrived by then (what one socket read returns when the
  process falls behind). Latency counts from the socket, so a backlog is not hidden. Shows what
  coalescing buys: pricings per frame, CPU, whether the process keeps up (``behind_at_end_ms``), and
  the latency of the events that survive (a spread opened and closed inside one burst is never shown:
  ``opens_coalesced_away``).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import random
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from arbtui.bench.figure import Figure
from arbtui.config import Config, parse_config
from arbtui.domain.clock import LiveClock
from arbtui.domain.events import Event, OpportunityDetected, OpportunityExpired, OpportunityUpdated
from arbtui.domain.fees import FeeSchedule
from arbtui.engine.engine import Engine
from arbtui.engine.journal import Journal
from arbtui.venues.coinbase import make_feed as coinbase_feed
from arbtui.venues.connection import NullLink, SupervisorConfig
from arbtui.venues.kraken import make_feed as kraken_feed
from arbtui.venues.live import BookFeed, LiveVenue, PaperTrader

NAME = "frame_to_opportunity"
TARGET_P99_US = 100
FLOOD_RATE = 20_000
MARKET = "BTC-USD"
WARMUP_FRAMES = 1_000
SEED = 7

# --- the venues' books, in integers ------------------------------------------------------------------
# kraken: ticks of 0.1, lots of 1e-8, depth 10 to the subscriber; coinbase: cents, lots of 1e-8.
K_BID, K_ASK = 649_400, 650_000  # 64940.0 / 65000.0
C_BID, C_ASK = 6_509_500, 6_524_000  # 65095.00 / 65240.00: kraken>coinbase grosses 14.6 bp, fees are 15 bp
K_LEVELS, C_LEVELS = 25, 40
LOT = 100_000_000


def _config() -> Config:
    paper = {"balances": {"USD": "250000", "BTC": "3"}}
    return parse_config(
        {
            "mode": "paper",
            "detector": {
                "slippage_floor_bps": "1.0",
                "volatility_multiplier": "0",  # see the module docstring
                "expected_latency_ms": 150,
                "volatility_halflife_s": "30",
                "min_net_edge_bps": "0",
                "stale_after_ms": 3000,
            },
            "venues": {
                "kraken": {"kind": "kraken", "maker_fee": "0", "taker_fee": "0.0010", "depth": 10, "paper": paper},
                "coinbase": {"kind": "coinbase", "maker_fee": "0", "taker_fee": "0.0005", "paper": paper},
            },
            "markets": {
                MARKET: {
                    "base": "BTC",
                    "quote": "USD",
                    "max_quantity": "2",
                    "venues": {
                        "kraken": {"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": "0.00000001"},
                        "coinbase": {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.00000001"},
                    },
                }
            },
        },
        "frame_to_opportunity",
    )


def _qty_text(lots: int) -> str:
    whole, frac = divmod(lots, LOT)
    text = f"{whole}.{frac:08d}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class _KrakenVenue:
    """Kraken's side of the wire: a deeper book, and what a depth-10 subscriber is sent."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bids = {K_BID - 3 * i: _size(rng) for i in range(K_LEVELS)}
        self.asks = {K_ASK + 3 * i: _size(rng) for i in range(K_LEVELS)}
        self.sent_bids = self._top(self.bids, True)
        self.sent_asks = self._top(self.asks, False)

    @staticmethod
    def _top(side: dict[int, int], bids: bool) -> dict[int, int]:
        return {p: side[p] for p in sorted(side, reverse=bids)[:10]}

    def _checksum(self) -> int:
        # Kraken's CRC32, written independently of the feed: a token is the value's integer count of
        # 10**-precision units without leading zeros; asks best first, then bids best first.
        text = "".join(f"{p}{q}" for p, q in sorted(self.sent_asks.items())[:10])
        text += "".join(f"{p}{q}" for p, q in sorted(self.sent_bids.items(), reverse=True)[:10])
        return zlib.crc32(text.encode("ascii"))

    def frame(self, snapshot: bool = False) -> bytes:
        new_bids, new_asks = self._top(self.bids, True), self._top(self.asks, False)
        if snapshot:
            bids, asks = list(new_bids.items()), list(new_asks.items())
        else:
            bids = _diff(self.sent_bids, new_bids)
            asks = _diff(self.sent_asks, new_asks)
        self.sent_bids, self.sent_asks = new_bids, new_asks
        level = '{{"price":{}.{},"qty":{}}}'
        body = (
            '{"channel":"book","type":"' + ("snapshot" if snapshot else "update") + '","data":[{"symbol":"BTC/USD",'
            '"bids":[' + ",".join(level.format(p // 10, p % 10, _qty_text(q)) for p, q in bids) + "],"
            '"asks":[' + ",".join(level.format(p // 10, p % 10, _qty_text(q)) for p, q in asks) + "],"
            f'"checksum":{self._checksum()}' + "}]}"
        )
        return body.encode()


class _CoinbaseVenue:
    """Coinbase's side of the wire: level2 at full depth, one sequence number per message."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bids = {C_BID - 50 * i: _size(rng) for i in range(C_LEVELS)}
        self.asks = {C_ASK + 50 * i: _size(rng) for i in range(C_LEVELS)}
        self.seq = 0
        self.changes: list[tuple[str, int, int]] = []

    def set(self, side: str, price: int, lots: int) -> None:
        book = self.bids if side == "bid" else self.asks
        if lots:
            book[price] = lots
        else:
            book.pop(price, None)
        self.changes.append((side, price, lots))

    def frame(self, snapshot: bool = False) -> bytes:
        if snapshot:
            changes = [("bid", p, q) for p, q in self.bids.items()] + [("offer", p, q) for p, q in self.asks.items()]
        else:
            changes = [("bid" if s == "bid" else "offer", p, q) for s, p, q in self.changes]
        self.changes = []
        updates = [
            {
                "side": s,
                "event_time": "2024-01-01T00:00:00Z",
                "price_level": f"{p // 100}.{p % 100:02d}",
                "new_quantity": _qty_text(q),
            }
            for s, p, q in changes
        ]
        msg = {
            "channel": "l2_data",
            "client_id": "",
            "timestamp": "2024-01-01T00:00:00Z",
            "sequence_num": self.seq,
            "events": [{"type": "snapshot" if snapshot else "update", "product_id": "BTC-USD", "updates": updates}],
        }
        self.seq += 1
        return orjson.dumps(msg)


def _size(rng: random.Random) -> int:
    return rng.choice((5, 10, 25, 40, 60, 100, 150)) * LOT // 100 + rng.randrange(0, 1_000_000)


def _diff(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    out = [(p, 0) for p in old if p not in new]
    out += [(p, q) for p, q in new.items() if old.get(p) != q]
    return out


@dataclass(frozen=True, slots=True)
class _Frame:
    venue: str
    raw: bytes
    role: str  # "noise", "open", "update", "close"


def generate(n: int, seed: int = SEED) -> tuple[list[_Frame], list[_Frame]]:
    """Snapshots (one per venue), then ``n`` update frames of the cycle in the module docstring."""
    rng = random.Random(seed)
    k, c = _KrakenVenue(rng), _CoinbaseVenue(rng)
    snapshots = [
        _Frame("kraken", k.frame(snapshot=True), "snapshot"),
        _Frame("coinbase", c.frame(snapshot=True), "snapshot"),
    ]
    frames: list[_Frame] = []
    opened: list[tuple[str, int]] = []  # the levels the open frame added, as (venue, price)
    cycle = 0

    def noise() -> _Frame:
        # Noise moves the venues' own levels, never the ones an open frame added: the books do not drift
        # into a spread that pays by itself.
        extra = {price for _, price in opened}
        if rng.random() < 0.5:
            side = k.bids if rng.random() < 0.5 else k.asks
            ranked = sorted((p for p in side if p not in extra), reverse=side is k.bids)
            r = rng.random()
            if r < 0.15:  # the touch resized
                side[ranked[0]] = _size(rng)
            elif r < 0.75:  # a level below it resized
                side[ranked[rng.randrange(1, 10)]] = _size(rng)
            elif r < 0.88:  # a level pulled (the next one enters the top ten)
                del side[ranked[rng.randrange(2, 10)]]
                far = ranked[-1] + (-3 if side is k.bids else 3)
                side[far] = _size(rng)
            else:  # a new level among the best ten (one is pushed out)
                lo, hi = sorted((ranked[1], ranked[8]))
                price = rng.randrange(lo, hi)
                if price not in side:
                    side[price] = _size(rng)
            return _Frame("kraken", k.frame(), "noise")
        name = "bid" if rng.random() < 0.5 else "ask"
        side = c.bids if name == "bid" else c.asks
        ranked = sorted((p for p in side if p not in extra), reverse=name == "bid")
        r = rng.random()
        if r < 0.15:
            c.set(name, ranked[0], _size(rng))
        elif r < 0.7:
            c.set(name, ranked[rng.randrange(1, 30)], _size(rng))
        elif r < 0.85:  # a level pulled; one further out appears (the book keeps its depth)
            c.set(name, ranked[rng.randrange(2, 30)], 0)
            c.set(name, ranked[-1] + (50 if name == "ask" else -50), _size(rng))
        else:  # a new level between two others
            price = ranked[rng.randrange(2, 30)] + (7 if name == "ask" else -7)
            if price not in side:
                c.set(name, price, _size(rng))
                c.set(name, ranked[-1], 0)
        return _Frame("coinbase", c.frame(), "noise")

    def open_spread() -> _Frame:
        if cycle % 2 == 0:  # coinbase bids jump above kraken's asks
            for price, lots in ((C_BID + 5_500, 12 * LOT // 100), (C_BID + 4_700, 20 * LOT // 100)):
                c.set("bid", price, lots)
                opened.append(("coinbase", price))
            return _Frame("coinbase", c.frame(), "open")
        for price, lots in ((K_BID + 110, 15 * LOT // 100), (K_BID + 130, 25 * LOT // 100)):  # kraken asks drop
            k.asks[price] = lots
            opened.append(("kraken", price))
        return _Frame("kraken", k.frame(), "open")

    def resize() -> _Frame:
        venue, price = opened[rng.randrange(len(opened))]
        lots = rng.choice((8, 11, 14, 18, 22)) * LOT // 100 + rng.randrange(0, 1_000_000)
        if venue == "coinbase":
            c.set("bid", price, lots)
            return _Frame("coinbase", c.frame(), "update")
        k.asks[price] = lots
        return _Frame("kraken", k.frame(), "update")

    def close_spread() -> _Frame:
        venue = opened[0][0]
        for _, price in opened:
            if venue == "coinbase":
                c.set("bid", price, 0)
            else:
                k.asks.pop(price, None)
        opened.clear()
        return _Frame(venue, c.frame() if venue == "coinbase" else k.frame(), "close")

    plan = ["noise"] * 8 + ["open"] + ["noise"] * 4 + ["update"] + ["noise"] * 4 + ["update"] + ["noise"] * 4
    plan += ["close"] + ["noise"] * 4
    while len(frames) < n:
        for step in plan:
            if len(frames) >= n and not opened:
                break
            if step == "noise":
                frames.append(noise())
            elif step == "open":
                frames.append(open_spread())
            elif step == "update":
                frames.append(resize())
            else:
                frames.append(close_spread())
        cycle += 1
    return snapshots, frames


# --- the rig ----------------------------------------------------------------------------------------


@dataclass
class _Stats:
    detected_us: list[float] = field(default_factory=list)
    updated_us: list[float] = field(default_factory=list)
    expired_us: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # Detected/Updated, in this thread's CPU time


class _Rig:
    def __init__(self, tmp: Path, coalesce: bool) -> None:
        cfg = _config()
        instruments = cfg.instruments()
        clock = LiveClock()
        self.clock = clock
        self.feeds: dict[str, BookFeed] = {}
        venues = []
        for vc in cfg.venues:
            listings = instruments.listings_for_venue(vc.name)
            make = kraken_feed if vc.kind == "kraken" else coinbase_feed
            feed = self.feeds[vc.name] = make(vc, listings, clock)
            assert vc.real is not None
            fees = vc.fees
            trader = PaperTrader(
                vc.name, listings, instruments.markets, feed.book, _fixed(fees), vc.real.paper_balances, clock
            )
            venues.append(
                LiveVenue(
                    vc.name,
                    vc.kind,
                    listings,
                    feed,
                    SupervisorConfig(url="bench:"),
                    trader,
                    fees,
                    clock,
                    mode="paper",
                    replay=True,
                )
            )
        kwargs: dict[str, Any] = {"mode": "paper"}
        if "coalesce" in inspect.signature(Engine).parameters:
            kwargs["coalesce"] = coalesce
        self.engine = Engine(cfg, clock, venues, Journal(tmp / "journal.sqlite"), **kwargs)
        self.stats = _Stats()
        self.pending: int | None = None  # arrival of the oldest frame not yet priced
        self.priced_from: int | None = None  # arrival of the oldest frame the current pricing covers
        # The same two stamps in this thread's CPU time: what the path costs when it has the core to itself.
        self.pending_cpu = 0
        self.priced_from_cpu = 0
        self.measuring = False
        # The stamp of the oldest unpriced frame moves to the pricing that covers it: the engine prices a
        # market with Detector.price_market (Detector.evaluate_market before coalescing existed).
        detector = self.engine.detector
        name = "price_market" if hasattr(detector, "price_market") else "evaluate_market"
        pricing: Callable[..., Any] = getattr(detector, name)

        def price(*args: Any) -> Any:
            self.priced_from, self.pending = self.pending, None
            self.priced_from_cpu = self.pending_cpu
            return pricing(*args)

        setattr(detector, name, price)
        self.engine.subscribe(self._on_event)

    def _on_event(self, ev: Event) -> None:
        if not isinstance(ev, (OpportunityDetected, OpportunityUpdated, OpportunityExpired)):
            return
        now = time.perf_counter_ns()
        cpu = time.thread_time_ns()
        if not self.measuring or self.priced_from is None:
            return
        us = (now - self.priced_from) / 1000
        if isinstance(ev, OpportunityDetected):
            self.stats.detected_us.append(us)
        elif isinstance(ev, OpportunityUpdated):
            self.stats.updated_us.append(us)
        else:
            self.stats.expired_us.append(us)
            return
        self.stats.cpu_us.append((cpu - self.priced_from_cpu) / 1000)

    def deliver(self, frame: _Frame, sent_ns: int | None = None) -> None:
        """Hand one frame to its venue's feed. ``sent_ns``: when the frame reached the socket, if earlier
        (a flood that the process is behind on); by default the frame arrives now."""
        if self.pending is None:
            self.pending_cpu = time.thread_time_ns()  # (~1 us on a VM: read before the wall stamp)
            self.pending = time.perf_counter_ns() if sent_ns is None else sent_ns
        self.feeds[frame.venue].on_frame(frame.raw, self.clock.now_ns())


def _fixed(fees: FeeSchedule) -> Callable[[str], FeeSchedule]:
    return lambda _market: fees


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def _scenario(mode: str, coalesce: bool, n: int, rate: int = FLOOD_RATE) -> dict[str, Any]:
    snapshots, frames = generate(n + WARMUP_FRAMES)
    with tempfile.TemporaryDirectory(prefix="arbtui-bench-") as tmp:
        rig = _Rig(Path(tmp), coalesce)
        engine = rig.engine
        await engine.start()
        for feed in rig.feeds.values():
            feed.on_open(NullLink())
        for frame in snapshots:
            rig.deliver(frame)
        await asyncio.sleep(0)
        for frame in frames[:WARMUP_FRAMES]:
            rig.deliver(frame)
            await asyncio.sleep(0)
        measured = frames[WARMUP_FRAMES:]
        det = engine.detector
        full0, same0 = getattr(det, "evaluations", 0), getattr(det, "unchanged", 0)
        priced0, deferred0 = getattr(engine, "markets_priced", 0), getattr(engine, "updates_deferred", 0)
        opens = sum(1 for f in measured if f.role == "open")
        rig.measuring = True
        cpu0, wall0 = time.process_time(), time.perf_counter()
        bursts: list[int] = []
        lag_ms = 0.0
        if mode == "sparse":
            for frame in measured:
                rig.deliver(frame)
                await asyncio.sleep(0)
        else:
            # Frame j reaches the socket at start + j / rate; each loop turn hands over every frame that
            # has arrived by then. Latency counts from the socket, so a backlog is not hidden.
            start = time.perf_counter_ns()
            i = 0
            while i < len(measured):
                due = min(len(measured), (time.perf_counter_ns() - start) * rate // 1_000_000_000)
                j = i
                while j < due:
                    rig.deliver(measured[j], start + j * 1_000_000_000 // rate)
                    j += 1
                if j > i:
                    bursts.append(j - i)
                i = j
                await asyncio.sleep(0)
            lag_ms = (time.perf_counter_ns() - start - len(measured) * 1_000_000_000 // rate) / 1e6
        await asyncio.sleep(0)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        rig.measuring = False
        counters = {name: feed.counters.as_dict() for name, feed in rig.feeds.items()}
        full = getattr(det, "evaluations", 0) - full0
        same = getattr(det, "unchanged", 0) - same0
        priced = getattr(engine, "markets_priced", 0) - priced0
        deferred = getattr(engine, "updates_deferred", 0) - deferred0
        await engine.stop()
    s = rig.stats
    events = s.detected_us + s.updated_us
    out: dict[str, Any] = {
        "frames": len(measured),
        "events": len(events),
        "p50_us": _pct(events, 0.50),
        "p99_us": _pct(events, 0.99),
        "max_us": _pct(events, 1.0),
        "cpu_p50_us": _pct(s.cpu_us, 0.50),
        "cpu_p99_us": _pct(s.cpu_us, 0.99),
        "detected": len(s.detected_us),
        "detected_p50_us": _pct(s.detected_us, 0.50),
        "detected_p99_us": _pct(s.detected_us, 0.99),
        "updated": len(s.updated_us),
        "updated_p50_us": _pct(s.updated_us, 0.50),
        "updated_p99_us": _pct(s.updated_us, 0.99),
        "expired": len(s.expired_us),
        "expired_p99_us": _pct(s.expired_us, 0.99),
        "opens": opens,
        "opens_coalesced_away": opens - len(s.detected_us),
        "frames_per_s": round(len(measured) / wall),
        "cpu_pct": round(100 * cpu / wall, 1),
        "market_pricings_per_frame": round(priced / len(measured), 3) if priced else None,
        "full_evaluations_per_frame": round(full / len(measured), 3) if full or same else None,
        "unchanged_evaluations_per_frame": round(same / len(measured), 3) if full or same else None,
        "updates_deferred": deferred,
        "integrity_failures": sum(c.get("integrity_failures", 0) for c in counters.values()),
        "malformed": sum(c.get("malformed", 0) for c in counters.values()),
    }
    if mode != "sparse":
        out["behind_at_end_ms"] = round(max(0.0, lag_ms), 1)  # how late the last frame was handed over
    if bursts:
        out["frames_per_burst_mean"] = round(statistics.fmean(bursts), 1)
        out["frames_per_burst_max"] = max(bursts)
    return out


async def _measure(quick: bool) -> dict[str, Any]:
    runs = 1 if quick else 5
    n_sparse = 1_500 if quick else 20_000
    n_flood = 6_000 if quick else 60_000
    results: dict[str, Any] = {"sparse": [], "sparse_uncoalesced": [], "flood": [], "flood_uncoalesced": []}
    for _ in range(runs):
        gc.collect()
        results["sparse"].append(await _scenario("sparse", True, n_sparse))
        gc.collect()
        results["sparse_uncoalesced"].append(await _scenario("sparse", False, n_sparse))
    for _ in range(1 if quick else 2):
        gc.collect()
        results["flood"].append(await _scenario("flood", True, n_flood))
        gc.collect()
        results["flood_uncoalesced"].append(await _scenario("flood", False, n_flood))
    return results


def _median(runs: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None
    m = statistics.median(values)
    if isinstance(m, float):
        return round(m, 1) if abs(m) >= 10 else round(m, 3)
    return m


def _loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "unknown"


def run(quick: bool) -> Figure:
    load_before = _loadavg()
    results = asyncio.run(_measure(quick))
    sparse, flood = results["sparse"], results["flood"]
    values = {
        "p50_us": _median(sparse, "p50_us"),
        "p99_us": _median(sparse, "p99_us"),
        "cpu_p50_us": _median(sparse, "cpu_p50_us"),
        "cpu_p99_us": _median(sparse, "cpu_p99_us"),
        "detected_p99_us": _median(sparse, "detected_p99_us"),
        "updated_p99_us": _median(sparse, "updated_p99_us"),
        "uncoalesced_p99_us": _median(results["sparse_uncoalesced"], "p99_us"),
        "flood_p50_us": _median(flood, "p50_us"),
        "flood_p99_us": _median(flood, "p99_us"),
        "flood_uncoalesced_p99_us": _median(results["flood_uncoalesced"], "p99_us"),
        "flood_pricings_per_frame": _median(flood, "market_pricings_per_frame"),
        "flood_uncoalesced_pricings_per_frame": _median(results["flood_uncoalesced"], "market_pricings_per_frame"),
        "flood_cpu_pct": _median(flood, "cpu_pct"),
        "flood_uncoalesced_cpu_pct": _median(results["flood_uncoalesced"], "cpu_pct"),
    }
    p99 = values["p99_us"]
    met = None if quick or p99 is None else p99 <= TARGET_P99_US
    integrity = sum(r["integrity_failures"] + r["malformed"] for rs in results.values() for r in rs)
    note = f"load average {load_before} before, {_loadavg()} after (2 cores shared); medians of {len(sparse)} runs"
    if quick:
        note = "quick run: too few events for a meaningful p99; " + note
    if integrity:
        note += f"; {integrity} frames failed their checksum or did not parse"
    return Figure(
        NAME,
        "frame to opportunity (kraken + coinbase feeds -> LiveVenue -> Engine.on_book -> Detector -> subscriber)",
        values,
        f"p99 <= {TARGET_P99_US} us from a frame's arrival to OpportunityDetected/Updated (sparse frames, one core)",
        met,
        f"arbtui bench --only {NAME}" + (" --quick" if quick else ""),
        note,
        {"scenarios": results, "flood_rate_per_s": FLOOD_RATE, "warmup_frames": WARMUP_FRAMES},
    )
