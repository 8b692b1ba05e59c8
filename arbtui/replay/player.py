"""Replay a recorded session through the same parsers, books, detector and executor as live trading.

The player reads the session file (:mod:`arbtui.replay.session_format`), builds an engine from the
recorded configuration (or an override: yesterday's market with today's fees or risk limits), and
feeds every recorded frame to the venue's own feed parser at its recorded time on a replay clock (a
:class:`~arbtui.domain.clock.ManualClock` that the player moves to each event's ``t``).

Executions during a replay go to a :class:`~arbtui.venues.live.PaperTrader` that fills against the
replayed books. With ``actions=True`` the recorded operator actions are applied again at their times
and each venue answers with its recorded replies (same statuses, fills and delays): the original
pairs' outcomes are reproduced.

Pacing: ``speed=None`` runs as fast as possible; otherwise session time runs ``speed`` times faster
than the wall clock. The console drives :meth:`ReplayPlayer.pause`, :meth:`step` and the speed.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbtui.config import REAL_KINDS, Config, ConfigError, VenueConfig, parse_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_S, Clock, ManualClock
from arbtui.domain.events import Event, OpportunityDetected
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing, Market
from arbtui.domain.orders import OrderReport, OrderRequest
from arbtui.engine.engine import Engine
from arbtui.engine.execution import ConfirmRefusedError
from arbtui.engine.journal import Journal
from arbtui.replay.recorder import report_from_json
from arbtui.replay.session_format import SessionError, SessionHeader, SessionReader
from arbtui.venues.base import UnknownOrder, VenueError
from arbtui.venues.connection import NullLink, SupervisorConfig
from arbtui.venues.live import BookFeed, LiveVenue, PaperTrader, Trader
from arbtui.venues.ratelimit import BudgetView
from arbtui.venues.sim_feed import SimFeed

SETTLE_LIMIT_NS = 120 * NS_PER_S
SETTLE_STEP_NS = 100_000_000


def make_feed(vc: VenueConfig, listings: Sequence[Listing], clock: Clock) -> BookFeed:
    """The venue kind's own feed parser (a recorded Kraken frame goes through the Kraken parser):
    ``arbtui.venues.<kind>.make_feed``; simulated venues' frames go through :class:`SimFeed`."""
    if vc.kind in REAL_KINDS:
        factory: Callable[[VenueConfig, Sequence[Listing], Clock], BookFeed] = importlib.import_module(
            f"arbtui.venues.{vc.kind}"
        ).make_feed
        return factory(vc, listings, clock)
    return SimFeed(vc.name, listings, vc.sim.depth)


# --- recorded venue replies (--actions) ------------------------------------------------------------


@dataclass
class _Exchange:
    """One recorded request and its reply (None: the reply never came)."""

    t: int
    body: dict[str, Any]
    reply: dict[str, Any] | None = None


@dataclass
class _VenueTape:
    places: deque[_Exchange] = field(default_factory=deque)
    by_cid: dict[tuple[str, str], deque[_Exchange]] = field(default_factory=lambda: defaultdict(deque))
    balances: deque[_Exchange] = field(default_factory=deque)


class RecordedTrader:
    """Answers orders with the replies recorded for them (see the module docstring).

    The n-th order placed on a venue during the replay is the n-th recorded one (client order ids
    carry the journal's tag, so they differ between runs); its cancels and status queries get that
    order's recorded replies in turn, after the recorded delay. A request whose reply was never
    recorded never answers: the executor times out exactly as it did.
    """

    def __init__(self, venue: str, tape: _VenueTape, clock: ManualClock, balances: Mapping[str, Decimal]) -> None:
        self._venue = venue
        self._tape = tape
        self._clock = clock
        self._cid_map: dict[str, str] = {}
        self._balances = dict(balances)
        self.mismatches = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def on_book(self, market: str, book: OrderBook) -> None:
        return None

    def budgets(self) -> list[BudgetView]:
        return []

    async def live_fees(self) -> Mapping[str, FeeSchedule]:
        return {}

    async def balances(self) -> Mapping[str, Decimal]:
        if self._tape.balances:
            ex = self._tape.balances.popleft()
            if ex.reply is not None and "balances" in ex.reply:
                self._balances = {k: Decimal(v) for k, v in ex.reply["balances"].items()}
        return dict(self._balances)

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if not self._tape.places:
            self.mismatches += 1
            raise VenueError(self._venue, "replay: no recorded order left for this venue")
        ex = self._tape.places.popleft()
        recorded_cid = str(ex.body.get("cid"))
        self._cid_map[request.client_order_id] = recorded_cid
        if ex.body.get("market") != request.market or ex.body.get("side") != request.side.value:
            self.mismatches += 1
        return await self._answer(ex, request.client_order_id)

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        return await self._next("cancel", client_order_id)

    async def order_status(self, client_order_id: str) -> OrderReport:
        return await self._next("status", client_order_id)

    async def _next(self, op: str, cid: str) -> OrderReport:
        queue = self._tape.by_cid.get((op, self._cid_map.get(cid, cid)))
        if not queue:
            self.mismatches += 1
            raise UnknownOrder(self._venue, f"replay: no recorded {op} reply for {cid}")
        return await self._answer(queue.popleft(), cid)

    async def _answer(self, ex: _Exchange, cid: str) -> OrderReport:
        if ex.reply is None:
            await asyncio.Event().wait()  # the reply was lost in the original session too
        assert ex.reply is not None
        delay = max(0, int(ex.reply["t"]) - ex.t)
        await self._clock.sleep(delay)
        if "error" in ex.reply:
            err = ex.reply["error"]
            if err.get("type") == "unknown_order":
                raise UnknownOrder(self._venue, str(err.get("message", "")))
            raise VenueError(self._venue, str(err.get("message", "")), retryable=bool(err.get("retryable")))
        return report_from_json(self._venue, ex.reply["report"], cid)


def _scan_tapes(path: Path, skip_bad: bool) -> dict[str, _VenueTape]:
    tapes: dict[str, _VenueTape] = defaultdict(_VenueTape)
    pending: dict[tuple[str, str, str], deque[_Exchange]] = defaultdict(deque)
    for _, ev in SessionReader(path, skip_bad=skip_bad):
        kind = ev["kind"]
        if kind == "order":
            venue, op = str(ev["venue"]), str(ev["op"])
            ex = _Exchange(ev["t"], ev)
            tape = tapes[venue]
            if op == "place":
                tape.places.append(ex)
            elif op == "balances":
                tape.balances.append(ex)
            else:
                tape.by_cid[(op, str(ev.get("cid")))].append(ex)
            pending[(venue, op, str(ev.get("cid", "")))].append(ex)
        elif kind == "reply":
            key = (str(ev["venue"]), str(ev["op"]), str(ev.get("cid", "")))
            if pending.get(key):
                pending[key].popleft().reply = ev
    return tapes


# --- the player ----------------------------------------------------------------------------------


@dataclass
class ReplayStats:
    frames: int = 0
    events: int = 0
    actions_applied: int = 0
    actions_refused: int = 0
    opportunities: list[tuple[int, str, str, str]] = field(default_factory=list)  # (t, id, key, net bps)


class ReplayPlayer:
    def __init__(
        self,
        path: Path,
        *,
        config: Config | None = None,
        actions: bool = False,
        skip_bad: bool = False,
        speed: float | None = None,
        journal_path: Path | None = None,
    ) -> None:
        self.path = path
        if path.is_dir():
            raise SessionError(path, None, "is a folder; expected a session file (.jsonl or .jsonl.gz)")
        try:
            self.reader = SessionReader(path, skip_bad=skip_bad)
        except OSError as exc:
            raise SessionError(path, None, f"cannot read: {exc.strerror}") from None
        self.header: SessionHeader = self.reader.header
        self.config = config if config is not None else self._recorded_config()
        self.actions = actions
        self.speed = speed
        self.stats = ReplayStats()
        self._quote_ids: dict[str, str] = {}  # recorded quote id -> the replayed quote standing for it
        self.paused = asyncio.Event()
        self.paused.set()  # set = running
        self._step = asyncio.Event()
        self.finished = asyncio.Event()
        self._rebase = False
        self._pause_at: int | None = None
        self.started = asyncio.Event()
        self.clock = ManualClock(self.header.start_ns)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if journal_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="arbtui-replay-")
            journal_path = Path(self._tmp.name) / "journal.sqlite"
        tapes: dict[str, _VenueTape] = _scan_tapes(path, skip_bad) if actions else {}
        self.venues: dict[str, LiveVenue] = {}
        instruments = self.config.instruments()
        markets = dict(instruments.markets)
        for vc in self.config.venues:
            listings = instruments.listings_for_venue(vc.name)
            feed = make_feed(vc, listings, self.clock)
            balances = vc.real.paper_balances if vc.real is not None else vc.sim.balances
            trader: Trader
            if actions:
                trader = RecordedTrader(vc.name, tapes.get(vc.name, _VenueTape()), self.clock, balances)
            else:
                trader = _paper(vc, listings, markets, feed, self.clock, balances)
            self.venues[vc.name] = LiveVenue(
                vc.name,
                vc.kind,
                listings,
                feed,
                SupervisorConfig(url="replay:"),
                trader,
                vc.fees,
                self.clock,
                mode="replay",
                replay=True,
            )
        journal = Journal(journal_path)
        self.clock.add_settler(journal.wait_idle)
        self.engine = Engine(self.config, self.clock, list(self.venues.values()), journal, mode="replay")
        self.engine.subscribe(self._on_event)
        self.wall_s = 0.0

    def _recorded_config(self) -> Config:
        try:
            return parse_config(self.header.config, f"{self.path} (recorded configuration)")
        except ConfigError as exc:
            raise SessionError(self.path, 1, f"the recorded configuration is not valid: {exc}") from None

    def _on_event(self, event: Event) -> None:
        if isinstance(event, OpportunityDetected):
            s = event.spread
            self.stats.opportunities.append((event.ts_ns, s.opportunity_id or "", s.key, str(s.net_bps)))

    # --- controls (console) --------------------------------------------------------------------
    def pause(self) -> None:
        self.paused.clear()

    def resume(self) -> None:
        self.paused.set()

    def toggle_pause(self) -> bool:
        """Returns whether the replay is now paused."""
        if self.paused.is_set():
            self.paused.clear()
            return True
        self.paused.set()
        return False

    def pause_at(self, t_ns: int | None) -> None:
        """Pause by itself before the first event after session time ``t_ns``."""
        self._pause_at = t_ns

    def set_speed(self, speed: float | None) -> None:
        """Session seconds per wall second (None: as fast as possible); takes effect at once."""
        self.speed = speed
        self._rebase = True

    def step(self) -> None:
        """While paused: play exactly one more event."""
        self._step.set()

    @property
    def progress(self) -> float:
        """Share of the session file read so far (0..1)."""
        return 1.0 if self.finished.is_set() else self.reader.fraction()

    # --- running -------------------------------------------------------------------------------
    async def run(self, *, stop_at_end: bool = True) -> dict[str, Any]:
        """Play the whole file and return the summary. ``stop_at_end=False`` (the console) leaves the
        engine running on the final state until the operator quits."""
        wall0 = time.perf_counter()
        await self.engine.start()
        await self.clock.advance(0)  # let the engine's own tasks start and register their timers
        self.started.set()
        try:
            await self._play()
            await self._settle()
        except BaseException:
            await self.engine.stop("replay failed")
            raise
        finally:
            self.wall_s = time.perf_counter() - wall0
            self.finished.set()
        if stop_at_end:
            await self.engine.stop("replay finished")
        return self.summary()

    async def _play(self) -> None:
        """Every event at its time. The per-event path (a frame at max speed) is kept to a few
        attribute reads: the console's controls (pause, step, pause_at, speed) are each checked
        with one comparison, the clock jumps when nothing waits on it before the event, and each
        venue's feed entry point and counters are looked up once."""
        clock = self.clock
        stats = self.stats
        paused = self.paused
        executor = self.engine.executor
        link = NullLink()
        feeds = {name: (v.feed, v.feed.counters) for name, v in self.venues.items()}
        wall_anchor: float | None = None
        t_anchor = 0
        for _, ev in self.reader:
            if self._rebase:
                self._rebase = False
                wall_anchor = None
            t = ev["t"]
            if self._pause_at is not None and t > self._pause_at:
                self._pause_at = None
                self.paused.clear()
            if not paused.is_set():
                self._step.clear()
                wait_step = asyncio.ensure_future(self._step.wait())
                wait_run = asyncio.ensure_future(self.paused.wait())
                await asyncio.wait({wait_step, wait_run}, return_when=asyncio.FIRST_COMPLETED)
                wait_step.cancel()
                wait_run.cancel()
                wall_anchor = None
            now = clock.now_ns()
            if t > now:
                if self.speed is not None:
                    if wall_anchor is None:
                        wall_anchor, t_anchor = time.perf_counter(), now
                    due = wall_anchor + (t - t_anchor) / NS_PER_S / self.speed
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    now = clock.now_ns()
                # Nothing waits on the clock before t and no engine task is running, so nothing can
                # happen in between: jump. Otherwise advance, waking each sleeper at its own time.
                deadline = clock.next_deadline()
                if executor.busy or (deadline is not None and deadline <= t):
                    await clock.advance(t - now)
                else:
                    clock.set(t)
            stats.events += 1
            kind = ev["kind"]
            if kind == "frame":
                entry = feeds.get(ev["venue"])
                if entry is not None:
                    stats.frames += 1
                    feed, counters = entry
                    raw = ev["raw"]
                    counters.frames += 1
                    counters.bytes += len(raw)
                    counters.last_frame_ns = t
                    feed.on_frame(raw, t)
            elif kind == "connect":
                venue = self.venues.get(ev["venue"])
                if venue is not None:
                    venue.feed.on_close()
                    venue.feed.on_open(link)
            elif kind == "action" and self.actions:
                # In file order: an action recorded after a frame at the same time comes after it.
                self._apply(ev)
                await clock.advance(0)

    def _apply(self, ev: Mapping[str, Any]) -> None:
        action, target = str(ev.get("action")), str(ev.get("target"))
        engine = self.engine
        self.stats.actions_applied += 1
        try:
            if action in ("quote", "simulate"):
                # The detail says what was quoted ("for O-12; ..."): quote it again, and remember which
                # replayed quote stands for the recorded one.
                detail = str(ev.get("detail", ""))
                source = detail[4:].split("; ", 1)[0] if detail.startswith("for ") else target
                quote = engine.quote(source) if action == "quote" else engine.simulate(source)
                if quote is not None:
                    self._quote_ids[target] = quote.quote_id
            elif action == "confirm":
                if target.startswith("Q-"):
                    engine.confirm(self._quote_ids.get(target, target))
                else:  # a session recorded before quotes: its confirms name the opportunity
                    engine.quote_and_confirm(target)
            elif action == "confirm_cancel":
                engine.cancel_quote(self._quote_ids.get(target, target))
            elif action == "abort":
                engine.abort(target)
            elif action == "kill":
                engine.kill()
            elif action == "resume":
                engine.resume()
            elif action in ("arm", "disarm"):
                engine.set_armed(action == "arm")
            elif action == "reset_breaker":
                engine.reset_breaker(target)
            elif action == "resolve":
                engine.resolve(target, str(ev.get("detail", "")))
            else:
                self.stats.actions_applied -= 1
        except ConfirmRefusedError:
            self.stats.actions_refused += 1

    async def _settle(self) -> None:
        waited = 0
        while self.engine.executor.in_flight() and waited < SETTLE_LIMIT_NS:
            await self.clock.advance(SETTLE_STEP_NS)
            waited += SETTLE_STEP_NS

    # --- the summary ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        engine = self.engine
        ex = engine.executor
        pairs = [p.view() for p in ex.pairs.values()]
        by_state = Counter(p.state.value for p in pairs)
        realized = sum((p.realized_pnl for p in pairs if p.realized_pnl is not None), Decimal(0))
        venues: dict[str, dict[str, int]] = {}
        for name, venue in sorted(self.venues.items()):
            c = venue.feed.counters
            venues[name] = {
                "frames": c.frames,
                "book_updates": c.book_updates,
                "integrity_failures": c.integrity_failures,
                "resyncs": c.resyncs,
                "malformed": c.malformed,
            }
        frames = self.stats.frames
        return {
            "file": self.path.name,
            "format_version": self.header.version,
            "frames": frames,
            "events": self.stats.events,
            "skipped_lines": self.reader.skipped,
            "session_s": round((self.clock.now_ns() - self.header.start_ns) / NS_PER_S, 3),
            "venues": venues,
            "opportunities": len(self.stats.opportunities),
            "actions": {"applied": self.stats.actions_applied, "refused": self.stats.actions_refused}
            if self.actions
            else None,
            "pairs": {"total": len(pairs), "by_state": dict(sorted(by_state.items()))},
            "pnl": str(realized.quantize(Decimal("0.01"))),
            "elapsed_s": round(self.wall_s, 3),
            "frames_per_s": round(frames / self.wall_s) if self.wall_s > 0 else None,
        }


def _paper(
    vc: VenueConfig,
    listings: Sequence[Listing],
    markets: Mapping[str, Market],
    feed: BookFeed,
    clock: ManualClock,
    balances: Mapping[str, Decimal],
) -> PaperTrader:
    fees = vc.fees
    return PaperTrader(vc.name, listings, markets, feed.book, lambda market: fees, balances, clock)
