"""The late-fill watch (issue 11 §2, "a fill is never forgotten"), against each loopback venue through
its real connector.

A leg whose order request gets no reply, and whose every status query then says "no such order", is
NOT_FOUND: settled as nothing filled (so its pair settles) but watched. Here the loopback's "late
arrival" fault (:mod:`arbtui.sim.loopback.late`) makes that order reach the venue after the pair has
settled; it trades there, and the watch must see it, re-open the pair and flatten the excess (or leave
it BROKEN with the exposure shown), with every change in the journal.

Time: the executor (its pair process and its watch), its journal and the loopback server share one
:class:`ManualClock`, started at the wall-clock time (Kraken's ``deadline`` is an absolute time the
server compares with its own clock); the connectors run on the live clock for their own request
timers, as in ``test_late_arrival_loopbacks.py``. :meth:`Bench.run_until` moves the manual clock one
sleeper at a time, and only while no venue call is in flight (other than the request the server holds
back), so an engine timeout never fires while a reply is on its way: nothing waits the watch window
in real time, and every outcome is decided by the clock, not by the scheduler.

Both legs of a test pair are on the one loopback venue (the pair process does not care which venues a
pair spans), sent one after the other (``legs = "sequential"``) so the first one is the request the
fault holds back: the first crosses the book (it fills when it arrives), the second asks a price no one
offers (it expires, or is refused, with nothing filled), so the pair settles ABORTED.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbtui.config import Config, RealVenueConfig, SimVenueConfig, VenueConfig, default_config, parse_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_S, LiveClock, ManualClock
from arbtui.domain.events import Event, LegPlan, Spread, SpreadKind
from arbtui.domain.execution import Exposure, LegRole, LegState, PairState, PairStateChanged
from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Instruments, Listing, Market, MarketKind
from arbtui.domain.orders import OrderReport, OrderRequest, Side, TimeInForce
from arbtui.engine.detector import Detector
from arbtui.engine.execution.executor import Executor
from arbtui.engine.execution.model import Leg, Pair, client_order_id
from arbtui.engine.execution.states import InvalidTransition, next_leg_state, next_pair_state
from arbtui.engine.journal import Journal
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.loopback.coinbase import LoopbackCoinbase
from arbtui.sim.loopback.kraken import LoopbackKraken
from arbtui.sim.loopback.late import LateArrival
from arbtui.sim.loopback.polymarket import LoopbackPolymarket
from arbtui.venues.live import LiveVenue
from arbtui.venues.secrets import Credentials, Secret
from tests.unit.venue_wrappers import DelegatingVenue, Listener, until

D = Decimal
WATCH_S = 30  # [execution] late_fill_watch_s in these tests
YES = "71321045679252212594626385532706912750332728571942532289631379312455583992563"

EXECUTION = {
    "order_timeout_ms": 1000,  # engine clock: a held request times out after 1 s
    "status_retries": 3,
    "status_backoff_ms": 100,
    "unwind_band_bps": D("200"),
    "unwind_attempts": 3,
    "unwind_backoff_ms": 100,
    "complete_missing_leg": False,
    "breaker_consecutive_failures": 50,
    "breaker_min_samples": 100,
    "legs": "sequential",
    "late_fill_watch_s": WATCH_S,
}


class Traced(DelegatingVenue):
    """A real connector's :class:`LiveVenue`, counting the calls in flight (so the bench moves the
    clock only when no reply is on its way). ``inner`` as the session recorder's wrapper has it, so the
    watch finds the trader's ``arrival_deadline_s`` through it. ``hide_book`` makes ``book()`` answer
    None (an unwind then has no price to send at)."""

    def __init__(self, inner: LiveVenue) -> None:
        super().__init__(inner)
        self.queries = 0  # status queries and cancels in flight
        self.placing: set[str] = set()  # client order ids of order requests in flight
        self.started: list[str] = []  # client order ids of every order request, in order
        self.hide_book = False

    def book(self, market: str) -> OrderBook | None:
        return None if self.hide_book else self.inner.book(market)

    async def place_order(self, request: OrderRequest) -> OrderReport:
        self.placing.add(request.client_order_id)
        self.started.append(request.client_order_id)
        try:
            return await self.inner.place_order(request)
        finally:
            self.placing.discard(request.client_order_id)

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        self.queries += 1
        try:
            return await self.inner.cancel_order(client_order_id)
        finally:
            self.queries -= 1

    async def order_status(self, client_order_id: str) -> OrderReport:
        self.queries += 1
        try:
            return await self.inner.order_status(client_order_id)
        finally:
            self.queries -= 1


# --- the bench ---------------------------------------------------------------------------------------


@dataclass
class Bench:
    clock: ManualClock
    venue: Traced
    late: list[LateArrival]  # the server's late-arrival records
    instruments: Instruments
    journal_path: Path
    executor: Executor = field(init=False)
    journal: Journal = field(init=False)
    events: list[Event] = field(default_factory=list)
    seq: int = 0
    closed: bool = False
    held_before: int = 0  # late arrivals the server recorded before this bench's venue sent anything

    async def open(self) -> None:
        """An executor (with its watch) on the journal at ``journal_path``, as the engine builds it."""
        self.held_before = len(self.late)
        self.journal = Journal(self.journal_path)
        await self.journal.open(self.clock.now_ns(), "test", "live")
        self.clock.add_settler(self.journal.wait_idle)
        config = replace(default_config(), execution=replace(default_config().execution, **EXECUTION))
        venues = {self.venue.name: self.venue}
        detector = Detector(
            config, self.instruments, {self.venue.name: self.venue.fees("")}, self._book, lambda v, a: D(10**6)
        )

        async def refresh(venue: str) -> None:
            return None

        self.executor = Executor(
            config, self.clock, venues, self.instruments, detector, self.journal, self.events.append,
            lambda v, a: D(10**6), refresh,
        )  # fmt: skip
        await self.executor.load()
        await self.executor.start()

    async def close(self) -> None:
        """What the engine's stop does with the executor: stop its pairs and its watch."""
        self.closed = True
        await self.executor.cancel_all()
        await self.executor.late_fills.close()
        await self.journal.close()

    def _book(self, venue: str, market: str) -> OrderBook | None:
        return self.venue.book(market)

    def launch(self, *legs: tuple[Side, Decimal, Decimal, TimeInForce]) -> Pair:
        """Send a pair of these two legs (what ``confirm`` builds, without a quote)."""
        market = self.venue.listings[0].market
        self.seq += 1
        seq = self.seq
        now = self.clock.now_ns()
        plans = tuple(LegPlan(self.venue.name, market, s, q, p, p, D(0)) for s, q, p, _ in legs)
        spread = Spread(
            f"{market} late-fill test", SpreadKind.CROSS_VENUE, market, (plans[0], plans[1]), plans[0].quantity,
            D(0), D(0), D(0), D(0), D(0), f"O-{seq}", now,
        )  # fmt: skip
        pair = Pair(f"P-{seq}", seq, spread, PairState.PROPOSED, now, now)
        for i, (side, qty, price, tif) in enumerate(legs):
            cid = client_order_id(self.journal.tag, seq, LegRole.ENTRY, i + 1)
            pair.legs.append(Leg(OrderRequest(cid, self.venue.name, market, side, qty, price, tif), pair.pair_id,
                                 LegRole.ENTRY, i, i))  # fmt: skip
        pair.state = next_pair_state(pair.state, "confirm")
        self.executor.pairs[pair.pair_id] = pair
        self.executor.ledger.track(pair)
        # Through the executor's own task set, as confirm does: cancel_all stops it with the engine.
        pair.task = self.executor._spawn(self.executor.process.run(pair, pair.view()), f"pair-{pair.pair_id}")
        return pair

    def quiet(self) -> bool:
        """No venue call in flight but the order requests the server holds back. The fault is armed
        before anything is sent, so the first requests are the held ones (a Polymarket record names
        the order hash, not the client order id)."""
        held = set(self.venue.started[: len(self.late) - self.held_before])
        return self.venue.queries == 0 and self.venue.placing <= held

    async def settled(self) -> None:
        """Wait until no reply is on its way and the engine has done everything it can at this time."""
        while True:
            await until(self.quiet, "no venue call in flight")
            await self.clock.advance(0)  # journal writes done; woken tasks have asked for their sleeps
            if self.quiet():
                return

    async def run_until(self, pred: Callable[[], bool], what: str, limit_s: float = 120) -> None:
        """Move the engine's clock one sleeper at a time until ``pred()`` holds (at most ``limit_s``)."""
        end = self.clock.now_ns() + int(limit_s * NS_PER_S)
        while True:
            await self.settled()
            if pred():
                return
            deadline = self.clock.next_deadline()
            assert deadline is not None and deadline <= end, f"not within {limit_s} s of engine time: {what}"
            await self.clock.advance(deadline - self.clock.now_ns())

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return await self.journal.query(sql, params)

    async def transitions(self, entity: str, entity_id: str) -> list[tuple[str | None, str, str]]:
        rows = await self.rows(
            "SELECT from_state, trigger, to_state FROM transitions WHERE entity=? AND entity_id=? ORDER BY id",
            (entity, entity_id),
        )
        return [(r[0], r[1], r[2]) for r in rows]


Opener = Callable[[Traced, list[LateArrival], ManualClock, Instruments], Awaitable[Bench]]


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Opener]:
    benches: list[Bench] = []

    async def _open(venue: Traced, late: list[LateArrival], clock: ManualClock, instruments: Instruments) -> Bench:
        b = Bench(clock, venue, late, instruments, tmp_path / "journal.sqlite")
        benches.append(b)
        await b.open()
        return b

    yield _open
    for b in benches:
        try:
            if not b.closed and hasattr(b, "executor"):
                await b.close()
        finally:
            await b.venue.close()


def wall_clock() -> ManualClock:
    return ManualClock(time.time_ns())


# --- the venues, built as the builder builds them ----------------------------------------------------

BTC_KRAKEN = {"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": "0.00000001"}
BTC_COINBASE = {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.00000001"}


def btc_config(name: str, table: dict[str, object], listing: dict[str, str]) -> Config:
    return parse_config(
        {
            "mode": "paper",
            "venues": {name: table},
            "markets": {"BTC-USD": {"base": "BTC", "quote": "USD", "max_quantity": "10", "venues": {name: listing}}},
        },
        "late-fill-test",
    )


async def kraken_venue(server: LoopbackKraken) -> tuple[Traced, Instruments]:
    from arbtui.venues.kraken import build_venue

    config = btc_config("kraken", {**server.venue_table(), "rate_tier": "pro"}, BTC_KRAKEN)
    instruments = config.instruments()
    creds = Credentials("kraken", {k: Secret(server.credentials[k]) for k in ("api_key", "api_secret")}, "test")
    venue = build_venue(
        config.venues[0], instruments.listings_for_venue("kraken"), dict(instruments.markets), LiveClock(), creds,
        live=True, tap=None,
    )  # fmt: skip
    await venue.connect(Listener())
    await until(lambda: venue.book("BTC-USD") is not None, "kraken's first snapshot")
    return Traced(venue), instruments


@pytest.fixture
async def kraken() -> AsyncIterator[tuple[LoopbackKraken, ManualClock]]:
    clock = wall_clock()
    server = LoopbackKraken(
        {"BTC/USD": LoopbackMarket("50000", "0.1", "0.00000001", level_size="0.5", depth=25)},
        seed=3,
        interval_ms=600_000,  # a still book
        balances={"USD": D("1000000"), "BTC": D("10")},
        clock=clock,
    )
    await server.start()
    yield server, clock
    await server.stop()


async def coinbase_venue(server: LoopbackCoinbase) -> tuple[Traced, Instruments]:
    from arbtui.venues.coinbase import CoinbaseTrader, build_venue

    config = btc_config("coinbase", server.venue_table(), BTC_COINBASE)
    instruments = config.instruments()
    creds = Credentials("coinbase", {k: Secret(v) for k, v in server.credentials.items()}, "test")
    venue = build_venue(
        config.venues[0], instruments.listings_for_venue("coinbase"), dict(instruments.markets), LiveClock(), creds,
        live=True, tap=None,
    )  # fmt: skip
    assert isinstance(venue.trader, CoinbaseTrader)
    venue.trader.poll_base_s = 0.005
    await venue.connect(Listener())
    await until(lambda: venue.book("BTC-USD") is not None, "coinbase's first snapshot")
    return Traced(venue), instruments


@pytest.fixture
async def coinbase() -> AsyncIterator[tuple[LoopbackCoinbase, ManualClock]]:
    clock = wall_clock()
    server = LoopbackCoinbase(
        {"BTC-USD": LoopbackMarket("60000", "0.01", "0.00000001", level_size="0.5", depth=10)},
        seed=5,
        interval_ms=600_000,
        clock=clock,
    )
    await server.start()
    yield server, clock
    await server.stop()


PM_LISTINGS = [Listing("polymarket", "FED-YES", YES, D("0.01"), D("0.01"), D("1"), 2, 2)]
PM_MARKETS = {"FED-YES": Market("FED-YES", "FED-YES", "USDC", MarketKind.OUTCOME, "FED", "YES")}


async def polymarket_venue(server: LoopbackPolymarket) -> tuple[Traced, Instruments]:
    from arbtui.venues.polymarket import build_venue

    table = server.venue_table("0.0100")
    real = replace(RealVenueConfig(str(table["ws_url"]), str(table["rest_url"])), rate_per_s=D(1000), live_fees=False)
    vc = VenueConfig(
        "polymarket", "polymarket", FeeSchedule(D(0), D("0.0100"), FeeModel.PROBABILITY), SimVenueConfig(), real=real
    )
    creds = Credentials("polymarket", {k: Secret(v) for k, v in server.credentials.items()}, "test")
    venue = build_venue(vc, PM_LISTINGS, PM_MARKETS, LiveClock(), creds, live=True, tap=None)
    await venue.connect(Listener())
    await until(lambda: venue.book("FED-YES") is not None, "polymarket's first snapshot")
    return Traced(venue), Instruments(list(PM_MARKETS.values()), PM_LISTINGS)


@pytest.fixture
async def polymarket() -> AsyncIterator[tuple[LoopbackPolymarket, ManualClock]]:
    clock = wall_clock()
    spec = LoopbackMarket("0.50", "0.01", "0.01", level_size="100", depth=8, spread_ticks=4, probability=True)
    server = LoopbackPolymarket({YES: spec}, seed=7, interval_ms=600_000, clock=clock)
    await server.start()
    yield server, clock
    await server.stop()


# --- shared checks -----------------------------------------------------------------------------------


def states_when_settled(b: Bench, pair_id: str) -> list[tuple[PairState, tuple[LegState, ...]]]:
    """Each final state the pair was published in, with its legs' states then."""
    return [
        (e.pair.state, tuple(leg.state for leg in e.pair.legs))
        for e in b.events
        if isinstance(e, PairStateChanged) and e.pair.pair_id == pair_id and e.pair.state.is_terminal
    ]


async def check_late_fill_journal(
    b: Bench, pair: Pair, late: Leg, pair_path: list[tuple[str | None, str, str]]
) -> None:
    """The journal has the late leg's fill, its way out of NOT_FOUND, and the pair's late_fill."""
    assert await b.transitions("pair", pair.pair_id) == pair_path
    leg_path = await b.transitions("leg", late.cid)
    assert leg_path[:3] == [
        ("new", "send", "sent"),
        ("sent", "timeout", "unknown"),
        ("unknown", "not_found", "not_found"),
    ]
    assert leg_path[3] == ("not_found", "fill", "filled")
    fills = await b.rows("SELECT quantity FROM fills WHERE client_order_id=?", (late.cid,))
    assert sum((D(q) for (q,) in fills), D(0)) == late.filled == late.request.quantity
    (row,) = await b.rows("SELECT state, filled FROM legs WHERE client_order_id=?", (late.cid,))
    assert row == ("filled", str(late.filled))
    (prow,) = await b.rows("SELECT state FROM pairs WHERE pair_id=?", (pair.pair_id,))
    assert prow == (pair.state.value,)


# --- the tables ------------------------------------------------------------------------------------


def test_the_state_tables_keep_a_not_found_leg_open_and_let_a_late_fill_reopen_a_pair() -> None:
    assert not LegState.NOT_FOUND.is_terminal and LegState.NOT_FOUND.value == "not_found"
    assert next_leg_state(LegState.UNKNOWN, "not_found") is LegState.NOT_FOUND  # no longer REJECTED
    reports = {
        "ack": LegState.ACKED,
        "partial_fill": LegState.PARTIALLY_FILLED,
        "fill": LegState.FILLED,
        "cancel": LegState.CANCELLED,
        "expire": LegState.EXPIRED,
        "reject": LegState.REJECTED,
    }
    for trigger, state in reports.items():
        assert next_leg_state(LegState.NOT_FOUND, trigger) is state
    assert next_leg_state(LegState.NOT_FOUND, "watch_expired") is LegState.REJECTED
    with pytest.raises(InvalidTransition):
        next_leg_state(LegState.REJECTED, "watch_expired")
    for settled in (PairState.COMPLETED, PairState.ABORTED, PairState.UNWOUND):
        assert next_pair_state(settled, "late_fill") is PairState.UNWINDING
        assert next_pair_state(settled, "late_fill_unknown") is PairState.BROKEN
    assert next_pair_state(PairState.BROKEN, "late_fill") is PairState.BROKEN
    assert next_pair_state(PairState.BROKEN, "late_fill_unknown") is PairState.BROKEN
    for live in (PairState.DISPATCHING, PairState.UNWINDING, PairState.RECONCILING):
        with pytest.raises(InvalidTransition):  # a pair not final sees the fill through its own process
            next_pair_state(live, "late_fill")


# --- a late fill on each venue -----------------------------------------------------------------------


async def test_kraken_late_fill_after_the_pair_aborted_is_unwound(
    kraken: tuple[LoopbackKraken, ManualClock], bench: Opener
) -> None:
    server, clock = kraken
    venue, instruments = await kraken_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    ask, _ = server.book("BTC/USD")[1][0]
    server.arrive_late(2.0)  # inside the 5 s deadline the connector sends: Kraken takes it
    pair = b.launch(
        (Side.BUY, D("0.01"), ask + 100, TimeInForce.IOC),  # crosses: fills when it arrives
        (Side.SELL, D("0.01"), ask * 2, TimeInForce.IOC),  # no bid that high: expires unfilled
    )
    late, other = pair.entries
    await b.run_until(lambda: pair.state is PairState.ABORTED, "the pair settled")
    assert late.state is LegState.NOT_FOUND and other.state is LegState.EXPIRED
    assert late.cid in b.executor.late_fills.watching
    assert pair.pair_id in b.executor.ledger.open  # kept open while a leg is watched
    assert not server.late_arrivals[0].arrived  # the venue has not taken it yet

    await b.run_until(lambda: pair.state is PairState.UNWOUND, "the late fill flattened")
    assert late.state is LegState.FILLED and late.filled == D("0.01")
    assert late.reason == "arrived late (filled)"
    (unwind,) = [leg for leg in pair.legs if leg.role is LegRole.UNWIND]
    assert (unwind.request.side, unwind.state, unwind.filled) == (Side.SELL, LegState.FILLED, D("0.01"))
    assert pair.exposure == () and pair.effective(0) == pair.effective(1) == 0
    assert server.free_balances()["BTC"] == D("10")  # bought late, sold back
    assert states_when_settled(b, pair.pair_id) == [
        (PairState.ABORTED, (LegState.NOT_FOUND, LegState.EXPIRED)),
        (PairState.UNWOUND, (LegState.FILLED, LegState.EXPIRED, LegState.FILLED)),
    ]
    assert pair.reason is not None and pair.reason.startswith("late fill: kraken ")
    await check_late_fill_journal(
        b,
        pair,
        late,
        [
            (None, "intent", "confirmed"),
            ("confirmed", "dispatch", "dispatching"),
            ("dispatching", "nothing_filled", "aborted"),
            ("aborted", "late_fill", "unwinding"),
            ("unwinding", "flat", "unwound"),
        ],
    )
    assert not b.executor.late_fills.watching
    assert pair.pair_id not in b.executor.ledger.open  # final for good now: swept


async def test_coinbase_late_fill_that_cannot_be_unwound_leaves_the_pair_broken_with_its_exposure(
    coinbase: tuple[LoopbackCoinbase, ManualClock], bench: Opener
) -> None:
    server, clock = coinbase
    venue, instruments = await coinbase_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    ask, ask_qty = server.book("BTC-USD")[1][0]
    qty = min(ask_qty, D("0.2"))
    server.arrive_late(3.0)  # Coinbase IOC has no arrival expiry: it executes whenever it arrives
    pair = b.launch((Side.BUY, qty, ask, TimeInForce.IOC), (Side.SELL, qty, ask * 2, TimeInForce.IOC))
    late, _ = pair.entries
    await b.run_until(lambda: pair.state is PairState.ABORTED, "the pair settled")
    assert late.state is LegState.NOT_FOUND
    b.venue.hide_book = True  # from here the unwind has no price to send at

    await b.run_until(lambda: pair.state is PairState.BROKEN, "the late fill re-opened the pair")
    assert late.state is LegState.FILLED and late.filled == qty
    assert pair.exposure == (Exposure("coinbase", "BTC-USD", Side.BUY, qty),)
    assert not [leg for leg in pair.legs if leg.role is LegRole.UNWIND]  # nothing could be sent
    risk = b.executor.risk_state()
    assert "BTC-USD" in risk.blocked_groups and risk.exposure_by_venue["coinbase"] == qty * ask
    await check_late_fill_journal(
        b,
        pair,
        late,
        [
            (None, "intent", "confirmed"),
            ("confirmed", "dispatch", "dispatching"),
            ("dispatching", "nothing_filled", "aborted"),
            ("aborted", "late_fill", "unwinding"),
            ("unwinding", "exhausted", "broken"),
        ],
    )
    (exposure,) = await b.rows("SELECT exposure FROM pairs WHERE pair_id=?", (pair.pair_id,))
    assert exposure == (f"coinbase:BTC-USD:buy:{pair.exposure[0].quantity}",)  # as the view shows it


async def test_polymarket_late_fill_of_yes_shares_is_unwound(
    polymarket: tuple[LoopbackPolymarket, ManualClock], bench: Opener
) -> None:
    server, clock = polymarket
    venue, instruments = await polymarket_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    (bid, _), (ask, _) = server.book(YES)[0][0], server.book(YES)[1][0]
    server.arrive_late(2.0)  # FAK/FOK have no arrival expiry: held in the matching delay, then it trades
    pair = b.launch(
        (Side.BUY, D(20), ask, TimeInForce.IOC),  # +20 YES when it arrives
        (Side.BUY, D(20), bid - D("0.10"), TimeInForce.IOC),  # below every ask: nothing filled
    )
    late, other = pair.entries
    await b.run_until(lambda: pair.state is PairState.ABORTED, "the pair settled")
    assert late.state is LegState.NOT_FOUND and other.filled == 0 and other.state.is_terminal
    assert server.tokens[YES] == D(10_000)

    await b.run_until(lambda: pair.state is PairState.UNWOUND, "the late fill flattened")
    assert late.state is LegState.FILLED and late.filled == D(20)
    (unwind,) = [leg for leg in pair.legs if leg.role is LegRole.UNWIND]
    assert (unwind.request.side, unwind.filled) == (Side.SELL, D(20))
    assert server.tokens[YES] == D(10_000)  # the 20 YES bought late were sold back
    assert pair.exposure == ()
    await check_late_fill_journal(
        b,
        pair,
        late,
        [
            (None, "intent", "confirmed"),
            ("confirmed", "dispatch", "dispatching"),
            ("dispatching", "nothing_filled", "aborted"),
            ("aborted", "late_fill", "unwinding"),
            ("unwinding", "flat", "unwound"),
        ],
    )


# --- a watch that finds nothing, one bounded by Kraken's deadline, a late order resting ---------------


async def test_a_watched_leg_that_never_appears_is_rejected_after_the_window(
    coinbase: tuple[LoopbackCoinbase, ManualClock], bench: Opener
) -> None:
    server, clock = coinbase
    venue, instruments = await coinbase_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    ask, _ = server.book("BTC-USD")[1][0]
    server.arrive_late(3600.0)  # long after any window
    pair = b.launch((Side.BUY, D("0.1"), ask, TimeInForce.IOC), (Side.SELL, D("0.1"), ask * 2, TimeInForce.IOC))
    late, _ = pair.entries
    await b.run_until(lambda: pair.state is PairState.ABORTED, "the pair settled")
    assert late.state is LegState.NOT_FOUND
    assert b.executor.late_fills.window_ns(late) == WATCH_S * NS_PER_S  # no venue bound: the configured one

    await b.run_until(lambda: late.state is not LegState.NOT_FOUND, "the watch ended")
    assert late.state is LegState.REJECTED and late.filled == 0
    assert late.reason == f"never arrived (watched {WATCH_S} s)"
    assert late.sent_ns is not None and clock.now_ns() - late.sent_ns == WATCH_S * NS_PER_S
    assert pair.state is PairState.ABORTED  # nothing changed for the pair
    assert (await b.transitions("leg", late.cid))[-1] == ("not_found", "watch_expired", "rejected")
    assert await b.transitions("pair", pair.pair_id) == [
        (None, "intent", "confirmed"),
        ("confirmed", "dispatch", "dispatching"),
        ("dispatching", "nothing_filled", "aborted"),
    ]
    assert not b.executor.late_fills.watching and pair.pair_id not in b.executor.ledger.open
    assert not server.late_arrivals[0].arrived


async def test_kraken_watch_window_is_bounded_by_its_deadline(
    kraken: tuple[LoopbackKraken, ManualClock], bench: Opener
) -> None:
    server, clock = kraken
    venue, instruments = await kraken_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    ask, _ = server.book("BTC/USD")[1][0]
    server.arrive_late(20.0)  # after the 5 s deadline: Kraken refuses it on arrival
    pair = b.launch((Side.BUY, D("0.01"), ask + 100, TimeInForce.IOC), (Side.SELL, D("0.01"), ask * 2, TimeInForce.IOC))
    late, _ = pair.entries
    await b.run_until(lambda: pair.state is PairState.ABORTED, "the pair settled")
    # deadline_s 5 (the connector's default) plus 5 s for the two clocks, not late_fill_watch_s = 30
    assert b.executor.late_fills.window_ns(late) == 10 * NS_PER_S

    await b.run_until(lambda: late.state is not LegState.NOT_FOUND, "the watch ended")
    assert late.state is LegState.REJECTED and late.reason == "never arrived (watched 10 s)"
    assert late.sent_ns is not None and clock.now_ns() - late.sent_ns == 10 * NS_PER_S
    await b.run_until(lambda: server.late_arrivals[0].arrived, "the late request reached Kraken")
    assert server.late_arrivals[0].refusal == "EService:Deadline elapsed", server.late_arrivals
    assert late.cid not in {order.cl_ord_id for order in server.orders.values()}  # it never traded
    assert pair.state is PairState.ABORTED and server.free_balances()["BTC"] == D("10")


async def test_a_late_order_found_resting_is_cancelled(
    kraken: tuple[LoopbackKraken, ManualClock], bench: Opener
) -> None:
    server, clock = kraken
    venue, instruments = await kraken_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    (bid, _), (ask, _) = server.book("BTC/USD")[0][0], server.book("BTC/USD")[1][0]
    server.arrive_late(2.5)  # after the last status query (1.7 s): the watch finds it
    pair = b.launch(
        (Side.BUY, D("0.01"), bid - 50, TimeInForce.GTC),  # below the book: rests when it arrives
        (Side.SELL, D("0.01"), ask * 2, TimeInForce.IOC),
    )
    late, _ = pair.entries
    await b.run_until(lambda: pair.state is PairState.ABORTED, "the pair settled")
    assert late.state is LegState.NOT_FOUND, (late, server.late_arrivals)

    await b.run_until(lambda: late.state.is_terminal, "the watch ended")
    assert late.state is LegState.CANCELLED and late.filled == 0
    assert (await b.transitions("leg", late.cid))[3:] == [
        ("not_found", "ack", "acked"),
        ("acked", "cancel", "cancelled"),
    ]
    assert server.requests["CancelOrder"] >= 1
    assert D(0) == dict(server.book("BTC/USD")[0]).get(bid - 50, D(0))  # nothing left resting
    assert pair.state is PairState.ABORTED  # nothing filled: the pair stays as it was
    assert [t for _, t, _ in await b.transitions("pair", pair.pair_id)] == ["intent", "dispatch", "nothing_filled"]


# --- restart -----------------------------------------------------------------------------------------


async def test_a_not_found_leg_from_the_journal_is_watched_again_after_a_restart(
    kraken: tuple[LoopbackKraken, ManualClock], bench: Opener
) -> None:
    server, clock = kraken
    venue, instruments = await kraken_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    ask, _ = server.book("BTC/USD")[1][0]
    server.arrive_late(3.0, n=2)  # both legs' requests are held back
    pair = b.launch((Side.BUY, D("0.01"), ask + 100, TimeInForce.IOC), (Side.SELL, D("0.01"), ask * 2, TimeInForce.IOC))
    late, second = pair.entries
    await b.run_until(lambda: len(server.late_arrivals) == 2, "the second leg sent and held")
    assert late.state is LegState.NOT_FOUND and second.state is LegState.SENT and pair.state is PairState.DISPATCHING
    await b.close()  # the engine stops here: the journal holds DISPATCHING with a NOT_FOUND leg
    sent_ns = late.sent_ns

    venue2, _ = await kraken_venue(server)
    b2 = await bench(venue2, server.late_arrivals, clock, instruments)
    await b2.settled()  # the reconcile has run as far as it can at this time
    restored = b2.executor.pairs[pair.pair_id]
    late2, second2 = restored.entries
    assert late2.state is LegState.NOT_FOUND and late2.sent_ns == sent_ns
    assert late2.cid in b2.executor.late_fills.watching  # watched again, its window from its send
    assert b2.executor.late_fills.window_ns(late2) == 10 * NS_PER_S

    await b2.run_until(lambda: restored.state is PairState.UNWOUND and not b2.executor.late_fills.watching, "done")
    assert late2.state is LegState.FILLED and late2.filled == D("0.01")
    assert second2.state.is_terminal and second2.filled == 0
    assert server.free_balances()["BTC"] == D("10")
    assert [t for _, t, _ in await b2.transitions("pair", pair.pair_id)] == [
        "intent", "dispatch", "restart", "nothing_filled", "late_fill", "flat",
    ]  # fmt: skip
    assert (await b2.transitions("leg", late2.cid))[3] == ("not_found", "fill", "filled")


# --- a Polymarket leg refused in the documented 200 shape (issue 12) --------------------------------


async def test_polymarket_leg_refused_for_balance_in_a_200_aborts_or_unwinds_the_pair(
    polymarket: tuple[LoopbackPolymarket, ManualClock], bench: Opener
) -> None:
    from arbtui.engine.balances import is_funds_refusal

    server, clock = polymarket
    server.insert_errors_in_body = True  # HTTP 200, errorMsg "not enough balance / allowance", orderID ""
    server.collateral = D(50)
    venue, instruments = await polymarket_venue(server)
    b = await bench(venue, server.late_arrivals, clock, instruments)
    (bid, _), (ask, _) = server.book(YES)[0][0], server.book(YES)[1][0]

    # One leg is refused, the other finds nothing to buy: nothing filled, nothing resting, ABORTED.
    pair = b.launch((Side.BUY, D(200), ask, TimeInForce.IOC), (Side.BUY, D(20), bid - D("0.10"), TimeInForce.IOC))
    refused, second = pair.entries
    await b.run_until(lambda: pair.state.is_terminal, "the pair settled")
    assert pair.state is PairState.ABORTED
    assert refused.state is LegState.REJECTED and refused.filled == 0  # not UNKNOWN, not NOT_FOUND
    assert refused.reason == "not enough balance / allowance" and is_funds_refusal(refused.reason)
    assert await b.transitions("leg", refused.cid) == [("new", "send", "sent"), ("sent", "reject", "rejected")]
    (row,) = await b.rows("SELECT state, filled, reason FROM legs WHERE client_order_id=?", (refused.cid,))
    assert row == ("rejected", "0", "not enough balance / allowance")
    assert await b.transitions("pair", pair.pair_id) == [
        (None, "intent", "confirmed"),
        ("confirmed", "dispatch", "dispatching"),
        ("dispatching", "nothing_filled", "aborted"),
    ]
    assert second.filled == 0 and second.state is LegState.EXPIRED and not b.executor.late_fills.watching
    assert server.collateral == D(50) and server.tokens[YES] == D(10_000)

    # The second leg is refused after the first filled: the fill is sold back, the pair UNWOUND.
    pair = b.launch((Side.BUY, D(20), ask, TimeInForce.IOC), (Side.BUY, D(200), ask, TimeInForce.IOC))
    filled, refused = pair.entries
    await b.run_until(lambda: pair.state.is_terminal, "the pair settled")
    assert pair.state is PairState.UNWOUND and filled.filled == D(20)
    assert refused.state is LegState.REJECTED and refused.reason == "not enough balance / allowance"
    assert await b.transitions("leg", refused.cid) == [("new", "send", "sent"), ("sent", "reject", "rejected")]
    (unwind,) = [leg for leg in pair.legs if leg.role is LegRole.UNWIND]
    assert (unwind.request.side, unwind.filled) == (Side.SELL, D(20))
    assert server.tokens[YES] == D(10_000) and pair.exposure == ()
    assert await b.transitions("leg", filled.cid) == [("new", "send", "sent"), ("sent", "fill", "filled")]
    assert await b.transitions("pair", pair.pair_id) == [
        (None, "intent", "confirmed"),
        ("confirmed", "dispatch", "dispatching"),
        ("dispatching", "imbalanced", "unwinding"),
        ("unwinding", "flat", "unwound"),
    ]
    (prow,) = await b.rows("SELECT state FROM pairs WHERE pair_id=?", (pair.pair_id,))
    assert prow == ("unwound",)
