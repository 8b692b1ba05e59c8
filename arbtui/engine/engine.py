"""The engine facade: venues, books, the detector and one event stream, under one clock.

Drivers (the console, the headless runner, tests) subscribe to events with :meth:`Engine.subscribe`
and call commands; they never reach into venue or detector state. Commands return fast; what they
cause comes back as events. The engine runs under an injected :class:`~arbtui.domain.clock.Clock`
and never reads the wall clock itself.

Book updates are priced as they arrive, and coalesced under load. A book update is priced at once
(the detector's events reach subscribers before the venue's callback returns) unless the same venue
already sent an update of the same market in this *window*; such updates only mark the market dirty,
and each dirty market is priced once when the window closes, on the latest books. A window is one
turn of the event loop (its first update schedules ``loop.call_soon`` to close it) and, on a
:class:`~arbtui.domain.clock.ManualClock`, one instant as well: time moves on a manual clock only
between turns (``advance`` drains the loop first) or from a synchronous driver (a replay's ``set``),
and either way the window closes before a later update is priced. Sparse updates therefore pay no
latency at all; a burst costs each market one pricing per venue that sent it updates plus one when
the window closes, however long the burst; and a replay prices the same books at the same times as
the run it recorded (a simulated run never sends one venue's market twice at one instant, so nothing
is deferred there; a live run's frames each have their own instant, so a replay of it prices every
frame, which the live run may have coalesced).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from arbtui import __version__
from arbtui.config import Config
from arbtui.domain.book import Level, OrderBook
from arbtui.domain.clock import NS_PER_MS, Clock, ManualClock
from arbtui.domain.events import (
    BookUpdated,
    DetectionPaused,
    EngineStarted,
    EngineStopped,
    Event,
    OpportunityDetected,
    OpportunityUpdated,
    PositionDriftCleared,
    PositionDrifted,
    Spread,
    VenueStatus,
    VenueStatusChanged,
)
from arbtui.domain.execution import ConfirmRefused, LegState, LegUpdated, OperatorAction, Quote
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Instruments
from arbtui.domain.money import ZERO
from arbtui.engine.balances import BalanceRefresher, is_funds_refusal
from arbtui.engine.detector import Detector
from arbtui.engine.execution import Executor
from arbtui.engine.inventory import AccountGuard, PositionReconciler
from arbtui.engine.journal import Journal
from arbtui.engine.risk import Refusal
from arbtui.venues.base import Venue

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]
Driver = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BookLadder:
    """A frozen copy of the top of one venue's book, for display."""

    venue: str
    market: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    last_update_ns: int | None
    stale: bool
    crossed: bool


class Recorder(Protocol):
    """What the engine (and the console's record key) needs of a session recorder; the replay side
    implements it (:class:`arbtui.replay.recorder.SessionRecorder`), so the engine imports no recorder."""

    @property
    def active(self) -> bool: ...

    @property
    def events(self) -> int: ...

    def start(self, path: Path) -> None: ...

    def stop(self) -> Path | None: ...


class Engine:
    """One engine per process; every driver goes through it."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        venues: Sequence[Venue],
        journal: Journal,
        *,
        mode: str = "sim",
        drivers: Sequence[tuple[str, Driver]] = (),
        coalesce: bool = True,
    ) -> None:
        """``coalesce=False`` prices every book update at once, however many arrive (for comparison)."""
        self.config = config
        self.clock = clock
        self.mode = mode
        self._starting = False
        self.recorder: Recorder | None = None  # set by arbtui.assembly; records when started
        self.instruments: Instruments = config.instruments()
        self.venues: dict[str, Venue] = {v.name: v for v in venues}
        self._drivers = list(drivers)
        self._listeners: list[Listener] = []
        # The cached free balances, kept fresh by the refresher; positions reconciled against them.
        self.balance_refresher = BalanceRefresher(
            config.account, clock, self.venues, self._emit, self._reconcile_positions
        )
        self._balances: dict[str, dict[str, Decimal]] = self.balance_refresher.balances
        self.reconciler = PositionReconciler(
            self.instruments,
            config.account.drift_tolerance,
            fees_in_proceeds=lambda v: bool(getattr(self.venues[v], "fees_in_proceeds", False)),
        )
        self.account_guard = AccountGuard(self.reconciler, self.balance_refresher)
        self._listeners.append(self._on_account_event)  # first: fills are counted before anyone reacts
        self._status: dict[str, VenueStatus] = {v: VenueStatus.CLOSED for v in self.venues}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._stale_ns = config.detector.stale_after_ms * NS_PER_MS
        fees: dict[str, FeeSchedule] = {}
        for venue in venues:
            markets = [lst.market for lst in venue.listings]
            fees[venue.name] = venue.fees(markets[0]) if markets else config.venue(venue.name).fees
        self.detector = Detector(config, self.instruments, fees, self.book, self.free_balance)
        self.book_updates = 0
        self.feed_counts: dict[str, int] = {v: 0 for v in self.venues}  # book updates per venue
        self.detection_paused = False
        self.failure: BaseException | None = None
        # Coalescing (see the module docstring).
        self.coalesce = coalesce
        self._virtual_time = isinstance(clock, ManualClock)  # windows also end when a manual clock moves
        self._window_ns: int | None = None  # the instant of the open window (manual clock only)
        self._window_seen: set[tuple[str, str]] = set()  # (venue, market) updates priced at once in it
        self._dirty: dict[str, None] = {}  # markets whose later updates wait for the window to close
        self._window_handle: asyncio.Handle | None = None
        self.markets_priced = 0  # detector passes over a market (one per update without coalescing)
        self.updates_deferred = 0  # updates that only marked their market dirty
        self.journal = journal
        self.executor = Executor(
            config,
            clock,
            self.venues,
            self.instruments,
            self.detector,
            journal,
            self._emit,
            self.free_balance,
            self.refresh_balances,
            account_guard=self.account_guard,
        )
        self._journal_open = False

    # --- events ----------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` synchronously with every event from now on; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect every venue, load balances, start the drivers; returns once connected."""
        self._stopped.clear()
        self._starting = True
        await self.journal.open(self.clock.now_ns(), __version__, self.mode)
        self._journal_open = True
        await self.executor.load()
        self._emit(EngineStarted(self.clock.now_ns(), self.mode, tuple(self.venues)))
        for venue in self.venues.values():
            self._set_status(venue.name, VenueStatus.CONNECTING, "")
            await venue.connect(self)
            for lst in venue.listings:  # a real venue may have replaced the configured fees with the account's
                self.detector.set_fees(venue.name, lst.market, venue.fees(lst.market))
            # One attempt: a venue that cannot answer starts stale (BALANCE_STALE) and is retried by the
            # periodic refresh; this good refresh is the position reconciler's baseline.
            await self.balance_refresher.refresh(venue.name, attempts=1)
        self._starting = False
        if not self.detection_paused:  # books that arrived while connecting, priced with balances known
            self._spread_events(self.detector.evaluate_all(self.clock.now_ns()))
        for name, driver in self._drivers:
            self._spawn(driver(), name)
        self._spawn(self._watchdog(), "engine-watchdog")
        self._spawn(self.balance_refresher.run_periodic(), "engine-balance-refresh")
        # Pairs a previous run left unfinished are reconciled against the venues by client order id.
        await self.executor.start()

    async def stop(self, reason: str = "stopped") -> None:
        """Stop everything. Pairs still in flight stay journaled as they are and are reconciled
        by the next start (that is what the journal is for)."""
        self._drop_window()  # first: nothing awaited below may let a pending window be priced
        await self.executor.cancel_all()
        await self.executor.late_fills.close()  # stops watching; a NOT_FOUND leg stays so in the journal
        await self.balance_refresher.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # already surfaced by the done-callback
                pass
        self._tasks.clear()
        for venue in self.venues.values():
            await venue.close()
        if self._journal_open:
            self._journal_open = False
            await self.journal.close()
        self._emit(EngineStopped(self.clock.now_ns(), reason))
        if self.recorder is not None and self.recorder.active:
            await asyncio.to_thread(self.recorder.stop)  # flushes the last buffer
        self._stopped.set()

    async def run(self) -> None:
        """Start, then run until :meth:`stop` is called or a task fails (the failure is raised)."""
        await self.start()
        await self.run_until_stopped()

    async def run_until_stopped(self) -> None:
        """Wait (after :meth:`start`) until :meth:`stop` or a failing task; a failure is raised."""
        try:
            await self._stopped.wait()
        finally:
            if self.failure is None and not self._stopped.is_set():
                await self.stop("cancelled")
        if self.failure is not None:
            failure = self.failure
            await self.stop(f"failed: {failure}")
            raise failure

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def wrapper() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(wrapper(), name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("engine task %s failed", task.get_name(), exc_info=exc)
            self.failure = exc
            self._stopped.set()

    async def _watchdog(self) -> None:
        """Mark venues whose books went quiet as stale, and re-price spreads that depend on them."""
        while True:
            await self.clock.sleep(500 * NS_PER_MS)
            now = self.clock.now_ns()
            for name, venue in self.venues.items():
                if self._status[name] not in (VenueStatus.CONNECTED, VenueStatus.STALE):
                    continue
                books = [venue.book(lst.market) for lst in venue.listings]
                stale = any(b is None or b.is_stale(now, self._stale_ns) for b in books)
                if stale and self._status[name] is VenueStatus.CONNECTED:
                    self._set_status(name, VenueStatus.STALE, "no market data")
                    for lst in venue.listings:
                        self._spread_events(self.detector.evaluate_market(lst.market, now))
                elif not stale and self._status[name] is VenueStatus.STALE:
                    self._set_status(name, VenueStatus.CONNECTED, "market data resumed")

    # --- VenueListener ---------------------------------------------------------------------
    def on_book(self, venue: str, market: str, book: OrderBook) -> None:
        now = self.clock.now_ns()
        self.book_updates += 1
        counts = self.feed_counts
        counts[venue] = counts.get(venue, 0) + 1
        # Spreads first (frame-to-opportunity is the latency that matters), then BookUpdated for the
        # displays: a listener drawing books is not on the detector's critical path.
        if not self.detection_paused and not self._starting:
            # (paused: books keep updating, spreads are re-priced when detection resumes; starting: the
            # books that arrive while venues connect are priced once balances are known, end of start)
            self._on_book_priced(venue, market, book, now)
        bid, ask = book.best_bid(), book.best_ask()
        self._emit(BookUpdated(now, venue, market, bid[0] if bid else None, ask[0] if ask else None, book.sequence))

    def _on_book_priced(self, venue: str, market: str, book: OrderBook, now: int) -> None:
        detector = self.detector
        if not detector.prices(market):
            return  # no spread uses this market (one venue lists it): nothing to price or to coalesce
        detector.observe(venue, market, book, now)  # volatility sees every update
        if not self.coalesce:
            self._price_market(market, now)
            return
        if self._virtual_time and now != self._window_ns:
            # A manual clock moved without a loop turn (a synchronous driver): that window is over. The
            # dirty markets are priced as they were then, except this update's market, whose book has
            # already moved on (it is priced below, as the first update of the new window).
            self._dirty.pop(market, None)
            self._end_window()
            self._window_ns = now
        key = (venue, market)
        if key in self._window_seen:
            self.updates_deferred += 1
            self._dirty[market] = None  # priced on the latest books when the window closes
            return
        self._window_seen.add(key)
        self._dirty.pop(market, None)  # priced now, on the latest books
        try:
            self._price_market(market, now)
        finally:  # the window is scheduled to close after pricing: the events go first
            if self._window_handle is None:
                loop = _running_loop()
                if loop is None:  # no event loop (a synchronous caller): nothing could close a window
                    self._window_seen.clear()
                else:
                    self._window_handle = loop.call_soon(self._close_window)

    def _price_market(self, market: str, now: int) -> None:
        self.markets_priced += 1
        self.detector.price_market(market, now, self._spread_event)

    def _close_window(self) -> None:
        """The loop turn is over (scheduled by its first priced update)."""
        self._window_handle = None
        self._end_window()

    def _end_window(self) -> None:
        """Price the dirty markets once each, on their latest books; a new window starts empty."""
        self._window_seen.clear()
        if not self._dirty:
            return
        dirty = list(self._dirty)
        self._dirty.clear()
        if self.detection_paused or self._starting:
            return  # resuming (or the end of start) re-prices everything anyway
        # On a manual clock, the instant the updates arrived (time does not move inside a window).
        now = self._window_ns if self._virtual_time and self._window_ns is not None else self.clock.now_ns()
        try:
            for market in dirty:
                self._price_market(market, now)
        except Exception as exc:  # a loop callback's error would only be logged: fail the engine like a task
            log.error("engine: pricing coalesced book updates failed", exc_info=exc)
            self.failure = exc
            self._stopped.set()

    def _drop_window(self) -> None:
        if self._window_handle is not None:
            self._window_handle.cancel()
            self._window_handle = None
        self._window_seen.clear()
        self._dirty.clear()

    def _spread_events(self, events: Sequence[Event]) -> None:
        for ev in events:
            self._spread_event(ev)

    def _spread_event(self, ev: Event) -> None:
        self._emit(ev)
        if isinstance(ev, OpportunityDetected | OpportunityUpdated):
            refusals = self.executor.analytics.refusals
            before = refusals.get("BALANCE", 0)
            if isinstance(ev, OpportunityDetected):
                self.executor.analytics.opportunities_detected += 1
            self.executor.on_opportunity(ev.spread)
            if refusals.get("BALANCE", 0) != before:  # ARMED mode refused for funds: no event says so
                for leg in ev.spread.legs:
                    self.balance_refresher.request(leg.venue)

    def on_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        self._set_status(venue, status, detail)

    def _set_status(self, venue: str, status: VenueStatus, detail: str) -> None:
        if self._status.get(venue) is status:
            return
        self._status[venue] = status
        self._emit(VenueStatusChanged(self.clock.now_ns(), venue, status, detail))

    # --- queries (cheap, synchronous, read-only) --------------------------------------------
    def book(self, venue: str, market: str) -> OrderBook | None:
        v = self.venues.get(venue)
        return v.book(market) if v is not None else None

    def ladder(self, venue: str, market: str, depth: int) -> BookLadder | None:
        book = self.book(venue, market)
        if book is None:
            return None
        return BookLadder(
            venue,
            market,
            tuple(book.bids.top(depth)),
            tuple(book.asks.top(depth)),
            book.last_update_ns,
            book.is_stale(self.clock.now_ns(), self._stale_ns),
            book.is_crossed(),
        )

    def free_balance(self, venue: str, asset: str) -> Decimal:
        return self._balances.get(venue, {}).get(asset, ZERO)

    def balances(self) -> Mapping[str, Mapping[str, Decimal]]:
        return self._balances

    def venue_status(self, venue: str) -> VenueStatus:
        return self._status[venue]

    def spreads(self) -> list[Spread]:
        return self.detector.spreads()

    async def refresh_balances(self, venue: str) -> None:
        """Re-read a venue's balances (retried with backoff; joins a refresh already running). Never
        raises: a refresh that keeps failing leaves the venue's balances stale, which the risk
        checks refuse (``BALANCE_STALE``), and says so in a ``BalancesRefreshed`` event."""
        await self.balance_refresher.refresh(venue)

    def stale_balances(self) -> Mapping[str, int | None]:
        """Venues whose balances are stale, with the time of their last good refresh (None: never)."""
        refresher = self.balance_refresher
        return {v: refresher.last_good_ns.get(v) for v in sorted(refresher.stale_venues())}

    def position_drifts(self) -> list[PositionDrifted]:
        """The position alarms raised and not cleared (each blocks new pairs on its venue and asset)."""
        return list(self.reconciler.drifts().values())

    # --- the account: refusals for funds, fills, reconciliation ------------------------------------
    def _on_account_event(self, event: Event) -> None:
        """Counts fills for the reconciler; a refusal for funds asks for a balance refresh."""
        self.reconciler.on_event(event)
        if isinstance(event, LegUpdated):
            leg = event.leg
            if leg.state is LegState.REJECTED and is_funds_refusal(leg.reason):
                self.balance_refresher.request(leg.venue)
        elif isinstance(event, ConfirmRefused) and event.code == "BALANCE":
            # The refusal names no venue in a field: every venue is asked (each at most once per gap).
            for venue in self.venues:
                self.balance_refresher.request(venue)

    async def _reconcile_positions(self, venue: str, balances: Mapping[str, Decimal], started: int, now: int) -> None:
        for event in self.reconciler.observe(venue, balances, started, now):
            await self._alarm(event)

    async def _alarm(self, event: PositionDrifted | PositionDriftCleared) -> None:
        """Publish a position alarm (raised or cleared) and journal it (awaited: it must not be lost)."""
        if isinstance(event, PositionDrifted):
            log.warning(
                "position drift on %s %s: expected %s, actual %s (difference %s)",
                event.venue,
                event.asset,
                event.expected,
                event.actual,
                event.difference,
            )
        self._emit(event)
        if not self._journal_open:
            return
        raised = isinstance(event, PositionDrifted)
        await self.journal.record_alarm(
            event.ts_ns,
            "position_drift",
            event.venue,
            event.asset,
            raised=raised,
            expected=event.expected if isinstance(event, PositionDrifted) else None,
            actual=event.actual if isinstance(event, PositionDrifted) else None,
            difference=event.difference,
            detail="" if raised else getattr(event, "detail", ""),
        )

    # --- commands (fast; results arrive as events) ----------------------------------------------
    def quote(self, opportunity_id: str) -> Quote | None:
        """A quote for confirming ``opportunity_id``: what the confirm modal shows (journaled as the
        modal opening). None if nothing is priced there."""
        return self.executor.quote(opportunity_id)

    def confirm(self, quote_id: str) -> str:
        """Send the legs of a quote (its quantity or less, at its limits); returns the pair id or
        raises ConfirmRefusedError with nothing sent."""
        return self.executor.confirm(quote_id)

    def cancel_quote(self, quote_id: str) -> None:
        """The confirm modal was answered no: nothing sent (journaled)."""
        self.executor.cancel_quote(quote_id)

    def quote_and_confirm(self, opportunity_id: str) -> str:
        """Quote ``opportunity_id`` and confirm that quote at once (scripted runs, replays of sessions
        recorded before quotes): the same checks, no modal."""
        return self.executor.quote_and_confirm(opportunity_id)

    def simulate(self, opportunity_id: str) -> Quote | None:
        """What confirming would do now (also accepts a spread key), as a quote. Sends nothing."""
        return self.executor.simulate(opportunity_id)

    def abort(self, pair_id: str) -> bool:
        return self.executor.abort(pair_id)

    def kill(self) -> None:
        self.executor.kill()

    def would_refuse(self, spread: Spread) -> Refusal | None:
        """The refusal a confirm of ``spread`` would get now, or None (nothing is sent)."""
        return self.executor.check(spread)

    def set_detection_paused(self, paused: bool) -> None:
        """Stop (or restart) pricing spreads; books keep updating. Resuming re-prices everything."""
        self.detection_paused = paused
        self._emit(DetectionPaused(self.clock.now_ns(), paused))
        if not paused:
            self._dirty.clear()  # every market is priced now
            self._spread_events(self.detector.evaluate_all(self.clock.now_ns()))

    def venue_counters(self, venue: str) -> Mapping[str, int]:
        """Integrity counters of a venue's feed (frames, integrity_failures, resyncs, reconnects, malformed, ...)."""
        counters: Mapping[str, int] | None = getattr(self.venues[venue], "counters", None)
        return counters if counters is not None else {"frames": self.feed_counts.get(venue, 0)}

    def resume(self) -> None:
        self.executor.resume()

    def set_armed(self, armed: bool) -> None:
        self.executor.set_armed(armed)

    def reset_breaker(self, venue: str) -> None:
        self.executor.reset_breaker(venue)

    def resolve(self, pair_id: str, note: str = "") -> bool:
        return self.executor.resolve(pair_id, note)

    def rebase_position(self, venue: str, asset: str) -> bool:
        """The operator accounts for a drifted balance (a deposit, a trade made elsewhere): the venue's
        last balance of ``asset`` becomes the reconciler's baseline and its alarm clears (journaled).
        False if there was no alarm to clear."""
        cleared = self.reconciler.rebase(venue, asset, self.clock.now_ns())
        self._emit(OperatorAction(self.clock.now_ns(), "rebase_position", f"{venue}:{asset}"))
        if cleared is None:
            return False
        task = asyncio.get_running_loop().create_task(self._alarm(cleared), name=f"journal-alarm-{venue}-{asset}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
