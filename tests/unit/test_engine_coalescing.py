"""The engine prices sparse book updates at once and coalesces bursts (engine.py module docstring).

Frames go through the real path: a venue's feed handler (the simulated venues' wire format, read by
``SimFeed``) -> ``LiveVenue`` -> ``Engine.on_book`` -> ``Detector`` -> events. Two venues A and B list
X-USD; A's asks at 100.0 and B's bids move to open and close a spread that buys on A and sells on B.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from arbtui.config import Config, parse_config
from arbtui.domain.clock import NS_PER_MS, Clock, LiveClock, ManualClock
from arbtui.domain.events import Event, OpportunityDetected, OpportunityExpired, SpreadEvent
from arbtui.engine.engine import Engine
from arbtui.engine.journal import Journal
from arbtui.venues.connection import NullLink, SupervisorConfig
from arbtui.venues.live import LiveVenue, PaperTrader
from arbtui.venues.sim_feed import SimFeed, render_frame

D = Decimal
X = "X-USD"
Y = "Y-USD"
Z = "Z-USD"  # listed on A only: no spread uses it
AB = "X-USD A>B"
Y_AB = "Y-USD A>B"
START = 1_795_617_000 * 1_000_000_000


def config() -> Config:
    listing = {"tick_size": "0.1", "lot_size": "0.01"}

    def market(base: str) -> dict[str, object]:
        return {
            "base": base,
            "quote": "USD",
            "max_quantity": "100",
            "sim": {"start_price": "100"},
            "venues": {"A": {"symbol": f"{base}/USD", **listing}, "B": {"symbol": f"{base}-USD", **listing}},
        }

    return parse_config(
        {
            "detector": {"slippage_floor_bps": "1", "volatility_multiplier": "0", "stale_after_ms": 60_000},
            "venues": {"A": {"maker_fee": "0", "taker_fee": "0.001"}, "B": {"maker_fee": "0", "taker_fee": "0.001"}},
            "markets": {
                X: market("X"),
                Y: market("Y"),
                Z: {
                    "base": "Z",
                    "quote": "USD",
                    "max_quantity": "100",
                    "sim": {"start_price": "100"},
                    "venues": {"A": {"symbol": "Z/USD", **listing}},
                },
            },
        },
        "test",
    )


class Rig:
    """An engine on two frame-driven venues, with every spread event it emits."""

    def __init__(self, tmp_path: Path, clock: Clock, *, coalesce: bool = True) -> None:
        cfg = config()
        instruments = cfg.instruments()
        self.clock = clock
        self.feeds: dict[str, SimFeed] = {}
        venues = []
        for vc in cfg.venues:
            listings = instruments.listings_for_venue(vc.name)
            feed = self.feeds[vc.name] = SimFeed(vc.name, listings, 10)
            balances = {"USD": D("100000"), "X": D("1000"), "Y": D("1000"), "Z": D("1000")}
            fees = vc.fees
            trader = PaperTrader(
                vc.name, listings, instruments.markets, feed.book, lambda _m, f=fees: f, balances, clock
            )
            venues.append(
                LiveVenue(
                    vc.name,
                    vc.kind,
                    listings,
                    feed,
                    SupervisorConfig(url="test:"),
                    trader,
                    vc.fees,
                    clock,
                    mode="paper",
                    replay=True,
                )
            )
        self.engine = Engine(cfg, clock, venues, Journal(tmp_path / "journal.sqlite"), mode="paper", coalesce=coalesce)
        self.events: list[SpreadEvent] = []
        self.engine.subscribe(self._on_event)

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, SpreadEvent):
            self.events.append(ev)

    async def start(self) -> None:
        await self.engine.start()
        for feed in self.feeds.values():
            feed.on_open(NullLink())
        for market in (X, Y):
            self.frame("A", [("99.0", "5")], [("100.0", "1"), ("100.5", "2")], snapshot=True, market=market)
            self.frame("B", [("99.5", "3")], [("103.0", "3")], snapshot=True, market=market)
        await asyncio.sleep(0)  # close the first window
        self.events.clear()

    def frame(
        self,
        venue: str,
        bids: Sequence[tuple[str, str]],
        asks: Sequence[tuple[str, str]],
        *,
        snapshot: bool = False,
        market: str = X,
    ) -> None:
        raw = render_frame(market, [(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks], snapshot=snapshot)
        self.feeds[venue].on_frame(raw, self.clock.now_ns())
        assert self.feeds[venue].counters.malformed == 0

    def of(self, kind: type[SpreadEvent], key: str = AB) -> list[SpreadEvent]:
        return [ev for ev in self.events if isinstance(ev, kind) and ev.spread.key == key]


OPEN = [("102.0", "1.5")]  # B bids 102.0: buying A's 100.0 and selling there pays
CLOSE = [("102.0", "0")]


async def test_a_sparse_update_is_priced_before_the_feed_returns(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock())
    await rig.start()
    priced = rig.engine.markets_priced
    rig.frame("B", OPEN, [])
    detected = rig.of(OpportunityDetected)
    assert len(detected) == 1 and detected[0].spread.quantity == D("1.5")  # no loop turn needed
    assert rig.engine.markets_priced == priced + 1 and rig.engine.updates_deferred == 0
    await asyncio.sleep(0)
    rig.frame("B", CLOSE, [])  # the next turn: at once again
    assert len(rig.of(OpportunityExpired)) == 1
    assert rig.engine.updates_deferred == 0
    await rig.engine.stop()


async def test_a_burst_costs_two_pricings_and_the_latest_book_wins(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock())
    await rig.start()
    priced = rig.engine.markets_priced
    evaluations = rig.engine.detector.evaluations + rig.engine.detector.unchanged
    # One socket read delivers 50 frames of B: the spread opens and closes many times inside it,
    # and the burst ends open with 2.0 at 102.0.
    rig.frame("B", [("99.6", "1")], [])  # priced at once: nothing pays
    seen = len(rig.events)
    for i in range(48):
        rig.frame("B", OPEN if i % 2 else CLOSE, [])
    rig.frame("B", [("102.0", "2")], [])
    assert len(rig.events) == seen  # nothing priced since the first frame
    assert rig.engine.updates_deferred == 49
    await asyncio.sleep(0)  # the window closes
    assert rig.engine.markets_priced == priced + 2
    # Each pricing re-prices the market's two spreads once.
    assert rig.engine.detector.evaluations + rig.engine.detector.unchanged == evaluations + 4
    detected = rig.of(OpportunityDetected)
    assert len(detected) == 1 and detected[0].spread.quantity == D("2")  # the latest book
    assert rig.of(OpportunityExpired) == []
    spread = rig.engine.detector.spread(AB)
    assert spread is not None and spread.pays and spread.quantity == D("2")
    await rig.engine.stop()


async def test_an_opportunity_opened_and_closed_inside_one_burst_is_never_shown(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock())
    await rig.start()
    rig.frame("B", [("99.6", "1")], [])
    rig.frame("B", OPEN, [])
    rig.frame("B", CLOSE, [])
    await asyncio.sleep(0)
    assert rig.of(OpportunityDetected) == [] and rig.of(OpportunityExpired) == []
    spread = rig.engine.detector.spread(AB)
    assert spread is not None and not spread.pays
    await rig.engine.stop()


async def test_each_venue_s_first_update_in_a_turn_is_priced_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock())
    await rig.start()
    rig.frame("A", [("99.1", "1")], [])
    rig.frame("B", OPEN, [])  # another venue's book of the same market: not a repeat
    assert len(rig.of(OpportunityDetected)) == 1
    assert rig.engine.updates_deferred == 0
    await rig.engine.stop()


async def test_without_coalescing_every_update_is_priced(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock(), coalesce=False)
    await rig.start()
    priced = rig.engine.markets_priced
    for i in range(10):
        rig.frame("B", OPEN if i % 2 == 0 else CLOSE, [])
    assert rig.engine.markets_priced == priced + 10
    assert len(rig.of(OpportunityDetected)) == 5 and len(rig.of(OpportunityExpired)) == 5
    await rig.engine.stop()


async def test_on_a_manual_clock_a_window_never_spans_two_instants(tmp_path: Path) -> None:
    """A synchronous driver (a replay) moves the clock with ``set`` between frames without a loop turn:
    updates deferred at one instant are priced at that instant, before a later frame is."""
    clock = ManualClock(START)
    rig = Rig(tmp_path, clock)
    await rig.start()
    t0 = clock.now_ns()
    rig.frame("B", [("99.6", "1")], [], market=Y)  # at once
    rig.frame("B", OPEN, [], market=Y)  # deferred: same venue and market, same instant
    assert rig.of(OpportunityDetected, Y_AB) == []
    t1 = t0 + 5 * NS_PER_MS
    clock.set(t1)
    rig.frame("A", [("99.2", "1")], [])  # time moved: the window of t0 is closed first, Y priced at t0
    detected = rig.of(OpportunityDetected, Y_AB)
    assert len(detected) == 1 and detected[0].ts_ns == t0 and detected[0].spread.since_ns == t0
    t2 = t1 + 5 * NS_PER_MS
    clock.set(t2)
    rig.frame("B", CLOSE, [], market=Y)  # a new instant: priced at once
    expired = rig.of(OpportunityExpired, Y_AB)
    assert len(expired) == 1 and expired[0].ts_ns == t2
    await rig.engine.stop()


async def test_on_a_manual_clock_a_deferred_market_updated_at_a_later_instant_is_priced_then(tmp_path: Path) -> None:
    """Its book has already moved on, so it cannot be priced as it was at the earlier instant."""
    clock = ManualClock(START)
    rig = Rig(tmp_path, clock)
    await rig.start()
    t0 = clock.now_ns()
    rig.frame("B", [("99.6", "1")], [])
    rig.frame("B", OPEN, [])  # deferred
    clock.set(t0 + 5 * NS_PER_MS)
    rig.frame("A", [("99.2", "1")], [])  # the same market: priced once, now, on both latest books
    detected = rig.of(OpportunityDetected)
    assert len(detected) == 1 and detected[0].ts_ns == t0 + 5 * NS_PER_MS
    await asyncio.sleep(0)
    assert len(rig.of(OpportunityDetected)) == 1
    await rig.engine.stop()


async def test_on_a_manual_clock_the_window_closes_before_time_advances(tmp_path: Path) -> None:
    clock = ManualClock(START)
    rig = Rig(tmp_path, clock)
    await rig.start()
    t0 = clock.now_ns()
    rig.frame("B", [("99.6", "1")], [])
    rig.frame("B", OPEN, [])
    await clock.advance(100 * NS_PER_MS)  # drains the loop at t0 first
    detected = rig.of(OpportunityDetected)
    assert len(detected) == 1 and detected[0].ts_ns == t0
    await rig.engine.stop()


async def test_stop_drops_a_pending_window(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock())
    await rig.start()
    rig.frame("B", [("99.6", "1")], [])
    rig.frame("B", OPEN, [])  # deferred
    await rig.engine.stop()
    await asyncio.sleep(0)
    assert rig.of(OpportunityDetected) == []


async def test_a_listener_failing_while_the_window_closes_fails_the_engine(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock())
    await rig.start()

    def explode(ev: Event) -> None:
        if isinstance(ev, OpportunityDetected):
            raise RuntimeError("listener broke")

    rig.engine.subscribe(explode)
    rig.frame("B", [("99.6", "1")], [])
    rig.frame("B", OPEN, [])
    await asyncio.sleep(0)
    assert isinstance(rig.engine.failure, RuntimeError)
    with pytest.raises(RuntimeError, match="listener broke"):
        await rig.engine.run_until_stopped()


async def test_a_market_no_spread_uses_is_not_priced(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LiveClock())
    await rig.start()
    priced, updates = rig.engine.markets_priced, rig.engine.book_updates
    rig.frame("A", [("99.0", "5")], [("100.0", "1")], snapshot=True, market=Z)
    rig.frame("A", [("99.1", "5")], [], market=Z)
    assert rig.engine.book_updates == updates + 2  # BookUpdated as ever
    assert rig.engine.markets_priced == priced and rig.engine.updates_deferred == 0
    await rig.engine.stop()
