"""The executor: the operator's commands on pairs, over the objects that do the work.

- :class:`~arbtui.engine.execution.quotes.QuoteBook` makes the quotes the operator sees and
  re-checks one when it is confirmed (what is sent is what was shown, or less);
- :class:`~arbtui.engine.execution.ledger.RiskLedger` holds what open pairs reserve and expose and
  what settled pairs made (its queries change nothing);
- :class:`~arbtui.engine.execution.launch_guard.LaunchGuard` keeps journal writes and the garbage
  collector off the path from confirm to the wire;
- :class:`~arbtui.engine.execution.process.PairProcess` takes each pair from its durable intent to
  a known final state (dispatch, follow, settle, unwind, reconcile after a restart);
- :mod:`arbtui.engine.execution.model` is the pair and its legs.

Commands return fast; what they cause comes back as events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal

from arbtui.config import Config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_S, Clock
from arbtui.domain.events import Event, Spread
from arbtui.domain.execution import (
    ArmedChanged,
    BreakerChanged,
    ConfirmRefused,
    KillSwitchChanged,
    LegRole,
    OperatorAction,
    PairState,
    PairStateChanged,
    PairView,
    Quote,
    QuoteIssued,
    SimulationCompleted,
)
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Instruments
from arbtui.domain.orders import OrderRequest, TimeInForce
from arbtui.engine.analytics import ExecutionAnalytics
from arbtui.engine.breaker import CircuitBreaker
from arbtui.engine.detector import Detector
from arbtui.engine.execution.launch_guard import HeldAction, LaunchGuard
from arbtui.engine.execution.ledger import DAY_NS, AccountGuard, RiskLedger
from arbtui.engine.execution.model import Leg, Pair, client_order_id, restore_pair
from arbtui.engine.execution.process import PairProcess
from arbtui.engine.execution.quotes import QuoteBook
from arbtui.engine.execution.states import next_pair_state
from arbtui.engine.execution.watch import LateFillWatch
from arbtui.engine.journal import Journal
from arbtui.engine.risk import Refusal, RiskState, check_pair
from arbtui.venues.base import Venue

log = logging.getLogger(__name__)


class ConfirmRefusedError(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.code}: {refusal.detail}")
        self.refusal = refusal


class Executor:
    """Owns every pair; driven by engine commands; publishes through ``emit``."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        venues: Mapping[str, Venue],
        instruments: Instruments,
        detector: Detector,
        journal: Journal,
        emit: Callable[[Event], None],
        balance: Callable[[str, str], Decimal],
        refresh_balances: Callable[[str], Awaitable[None]],
        *,
        account_guard: AccountGuard | None = None,
    ) -> None:
        self._cfg = config
        self._ex = config.execution
        self._clock = clock
        self._venues = venues
        self._inst = instruments
        self._detector = detector
        self._journal = journal
        self._emit = emit
        self._balance = balance
        self.pairs: dict[str, Pair] = {}
        self.halted = False
        self.armed = False
        self.analytics = ExecutionAnalytics()
        self.breakers = {
            v: CircuitBreaker(
                v,
                self._ex.breaker_consecutive_failures,
                self._ex.breaker_window_s * NS_PER_S,
                self._ex.breaker_failure_rate,
                self._ex.breaker_min_samples,
            )
            for v in venues
        }
        self._next_seq = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self.ledger = RiskLedger(self._fees, self._assets, account_guard)
        self.guard = LaunchGuard(self._write_action)
        self.quotes = QuoteBook(
            instruments,
            self._book,
            self._fees,
            detector.slippage_bps,
            detector.payout,
            self._ex.quote_ttl_ms,
            config.risk.min_expected_pnl,
            config.detector.min_net_edge_bps,
            config.risk.max_notional,
        )
        self.process = PairProcess(
            self._ex,
            clock,
            venues,
            instruments,
            detector,
            journal,
            emit,
            self.ledger,
            self.guard,
            self.breakers,
            self.analytics,
            refresh_balances,
            self._spawn,
            lambda: self.halted,
        )
        # Legs the venue said it never received, watched for a late arrival (closed with the engine).
        self.late_fills = LateFillWatch(self._ex, clock, venues, self.process, pair_of=self.pairs.get)
        self.process.set_late_fill_watch(self.late_fills)
        self.ready = False  # confirms are refused until start() has run

    # --- lifecycle -----------------------------------------------------------------------------
    async def load(self) -> None:
        """Load the journal's state (pair sequence, blocked markets, today's realized PnL). Runs
        before any venue connects, so no confirm can use a stale sequence or skip a limit."""
        self._next_seq = await self._journal.next_pair_seq()
        day_start = self._clock.now_ns() // DAY_NS * DAY_NS
        self.ledger.set_earlier_realized(day_start, await self._journal.realized_since(day_start))
        for pair_id, group in await self._journal.blocked_markets():
            # An older BROKEN pair, still unresolved: keep its market blocked.
            self.ledger.blocked_from_journal[pair_id] = group
        for stored in await self._journal.unfinished_pairs():
            try:
                pair = restore_pair(stored)
            except (KeyError, IndexError, ValueError, ArithmeticError) as exc:
                # A row the engine cannot rebuild must not stop it from starting: block the market.
                log.error("cannot restore pair %s from the journal: %s", stored.row.get("pair_id"), exc)
                self.ledger.blocked_from_journal[str(stored.row.get("pair_id"))] = str(stored.row.get("grp"))
                continue
            self.pairs[pair.pair_id] = pair
            if not pair.state.is_terminal:
                # Unfinished pairs have no realized PnL in the journal yet: they count here once final.
                self.ledger.track(pair)
            # A final pair with a leg still watched is not tracked: its realized PnL is already in the
            # journal's figure for its day, and a late fill re-opens it through the ledger (reopen).

    async def start(self) -> None:
        """After the venues connect: reconcile pairs left unfinished by an earlier run, watch again the
        NOT_FOUND legs of settled ones, then accept confirms."""
        for pair in list(self.pairs.values()):
            if not pair.state.is_terminal and pair.task is None:
                pair.task = self._spawn(self.process.reconcile(pair), f"reconcile-{pair.pair_id}")
            elif pair.state.is_terminal:
                for leg in pair.legs:  # settled before the restart, a leg still watched: watched again
                    self.process.watch(leg)
        self.ready = True

    async def cancel_all(self) -> None:
        """Stop every pair task where it is (the journal keeps their state for reconciliation).

        Pending journal writes of operator actions are let finish first: they are short, and a
        record of what the operator did must not be dropped on the way out.
        """
        for pair in self.pairs.values():
            self.guard.release(pair)  # a pair stopped before its dispatch: its held confirm is written now
        writes = [t for t in self._tasks if t.get_name().startswith("journal-")]
        await asyncio.gather(*writes, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until no pair task is running (tests and the headless runner)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def busy(self) -> bool:
        """Whether any executor task (a pair, a cancel, a journal write) is still running."""
        return bool(self._tasks)

    def in_flight(self) -> list[PairView]:
        return [p.view() for p in self.ledger.in_flight()]

    # --- quotes --------------------------------------------------------------------------------
    def quote(self, target: str, *, purpose: str = "confirm") -> Quote | None:
        """A quote for the opportunity ``target`` (or a spread key: a row that does not pay), on the
        current books. ``purpose`` "confirm" is the confirm modal opening (journaled as ``quote``);
        "simulate" is a simulation (journaled as ``simulate``). None if nothing is priced there."""
        spread = self._detector.find_opportunity(target)
        if spread is None and purpose != "armed":
            spread = self._detector.spread(target)
        if spread is None:
            if purpose == "simulate":
                self._action("simulate", target, "nothing priced")
            return None
        now = self._clock.now_ns()
        quote = self.quotes.make(spread, purpose, now, self._check)
        if purpose == "armed":
            return quote  # journaled with the pair's intent (no write ahead of the sends)
        self._emit(QuoteIssued(now, quote))
        self._spawn(self._journal.record_quote(quote), f"journal-quote-{quote.quote_id}")
        # "for <what was quoted>; ..." lets a replay quote the same thing again (see replay.player).
        self._action(
            "simulate" if purpose == "simulate" else "quote", quote.quote_id, f"for {target}; {_describe(quote)}"
        )
        if purpose == "simulate":
            self._emit(SimulationCompleted(now, quote))
        return quote

    def simulate(self, target: str) -> Quote | None:
        """What confirming would do now, walking the current books. Sends nothing."""
        return self.quote(target, purpose="simulate")

    def cancel_quote(self, quote_id: str) -> None:
        """The operator answered no to the confirm modal: nothing sent (journaled)."""
        self._action("confirm_cancel", quote_id, "nothing sent")

    def confirm(self, quote_id: str, *, operator: bool = True, target: str | None = None) -> str:
        """Send the legs of quote ``quote_id`` (its quantity or less, at its limits); returns the pair
        id, or raises :class:`ConfirmRefusedError` with nothing sent. ``target`` is what the action and
        a refusal name (default: the quote id; :meth:`quote_and_confirm` names the opportunity)."""
        named = target if target is not None else quote_id
        wall = time.perf_counter_ns()
        now = self._clock.now_ns()
        quote = self.quotes.get(quote_id)
        if quote is None:
            return self._refuse(named, Refusal("QUOTE_UNKNOWN", f"no quote {quote_id}: re-quote"), operator)
        checked = self.quotes.recheck(quote, now)
        if isinstance(checked, Refusal):
            return self._refuse(named, checked, operator)
        sending, _ = checked
        refusal = _beyond_quote(sending, quote) or self._check(sending)
        if refusal is not None:
            return self._refuse(named, refusal, operator)
        self.quotes.mark_sent(quote_id)
        seq = self._next_seq
        self._next_seq += 1
        pair = Pair(f"P-{seq}", seq, sending, PairState.PROPOSED, now, now, quote=quote, confirm_wall_ns=wall)
        detail = f"{pair.pair_id} {sending.quantity} of {quote.quantity}" + (f" ({quote_id})" if target else "")
        if operator:
            self._emit(OperatorAction(now, "confirm", named, detail))  # journaled after the launch
        for i, plan in enumerate(sending.legs):
            request = OrderRequest(
                client_order_id(self._journal.tag, seq, LegRole.ENTRY, i + 1),
                plan.venue,
                plan.market,
                plan.side,
                plan.quantity,
                plan.limit_price,
                TimeInForce.IOC,
            )
            pair.legs.append(Leg(request, pair.pair_id, LegRole.ENTRY, i, i))
        pair.state = next_pair_state(pair.state, "confirm")
        self.pairs[pair.pair_id] = pair
        self.ledger.track(pair)
        self.analytics.pairs_confirmed += 1
        view = pair.view()
        self._emit(PairStateChanged(now, view, PairState.PROPOSED))
        self.guard.hold(pair, (now, "confirm", named, detail) if operator else None)
        pair.task = self._spawn(self.process.run(pair, view), f"pair-{pair.pair_id}")
        return pair.pair_id

    def quote_and_confirm(self, opportunity_id: str, *, operator: bool = True) -> str:
        """Quote ``opportunity_id`` now and confirm that quote at once (ARMED mode, scripted runs and
        replays of sessions recorded before quotes): the same path as the modal, no second look."""
        quote = self.quote(opportunity_id, purpose="armed")
        if quote is None:
            refusal = Refusal("EDGE_GONE", f"{opportunity_id} no longer pays (or never existed)")
            return self._refuse(opportunity_id, refusal, operator)
        return self.confirm(quote.quote_id, operator=operator, target=opportunity_id)

    def _refuse(self, target: str, refusal: Refusal, operator: bool) -> str:
        self.analytics.refusals[refusal.code] += 1
        if operator:
            self._action("confirm", target, f"refused {refusal.code}: {refusal.detail}")
            self._emit(ConfirmRefused(self._clock.now_ns(), target, refusal.code, refusal.detail))
        raise ConfirmRefusedError(refusal)

    # --- other commands ------------------------------------------------------------------------
    def abort(self, pair_id: str) -> bool:
        """Cancel what rests and unwind any filled imbalance. False if the pair is already final."""
        pair = self.pairs.get(pair_id)
        self._action("abort", pair_id)
        if pair is None or pair.state.is_terminal:
            return False
        pair.abort_requested = True
        self.process.cancel_resting(pair)
        return True

    def kill(self) -> None:
        """Halt new pairs, cancel every open order arbtui has, and let unwinds flatten what filled."""
        self.halted = True
        was_armed, self.armed = self.armed, False
        self._action("kill", "*")
        if was_armed:
            self._emit(ArmedChanged(self._clock.now_ns(), False))
        self._emit(KillSwitchChanged(self._clock.now_ns(), True, "new pairs halted; open orders cancelled"))
        for pair in self.ledger.in_flight():
            pair.abort_requested = True
            self.process.cancel_resting(pair)

    def resume(self) -> None:
        self.halted = False
        self._action("resume", "*")
        self._emit(KillSwitchChanged(self._clock.now_ns(), False, "resumed"))

    def set_armed(self, armed: bool) -> None:
        if armed and self.halted:
            raise ConfirmRefusedError(Refusal("HALTED", "the kill switch is engaged; resume first"))
        self.armed = armed
        self._action("arm" if armed else "disarm", "*")
        self._emit(ArmedChanged(self._clock.now_ns(), armed))

    def reset_breaker(self, venue: str) -> None:
        self.breakers[venue].reset()
        self._action("reset_breaker", venue)
        self._emit(BreakerChanged(self._clock.now_ns(), venue, False, "reset by the operator"))

    def resolve(self, pair_id: str, note: str = "") -> bool:
        """The operator has dealt with a BROKEN pair's exposure: unblock its market."""
        self._action("resolve", pair_id, note)
        self.ledger.blocked_from_journal.pop(pair_id, None)
        pair = self.pairs.get(pair_id)
        if pair is None or pair.state is not PairState.BROKEN or pair.resolved:
            return False
        pair.resolved = True
        self.ledger.sweep((pair,))
        self._emit(PairStateChanged(self._clock.now_ns(), pair.view(), pair.state))
        self._spawn(
            self._journal.record_pair(pair.view(), self._clock.now_ns(), "resolve", pair.state.value),
            f"journal-resolve-{pair_id}",
        )
        return True

    def on_opportunity(self, spread: Spread) -> None:
        """ARMED mode: confirm a paying spread above the armed edge, within the same risk limits,
        through the same quote path as the operator's confirm."""
        if not self.armed or self.halted or spread.opportunity_id is None:
            return
        if spread.net_bps < self._ex.armed_min_net_edge_bps:
            return
        if any(p.spread.key == spread.key for p in self.ledger.in_flight()):
            return
        try:
            self.quote_and_confirm(spread.opportunity_id, operator=False)
        except ConfirmRefusedError:
            pass  # counted in analytics.refusals

    # --- queries (read only) -------------------------------------------------------------------
    def check(self, spread: Spread | None) -> Refusal | None:
        """The refusal confirming ``spread`` would get now (the console greys such rows). Reads only."""
        return self._check(spread)

    def _check(self, spread: Spread | None) -> Refusal | None:
        if not self.ready:
            return Refusal("STARTING", "the engine is still loading its journal and connecting venues")
        return check_pair(
            spread,
            self._cfg.risk,
            self._cfg.detector.min_net_edge_bps,
            self.ledger.state(self._clock.now_ns(), self.halted, self._tripped()),
            self._book,
            self._balance,
            lambda venue: self._fees(venue, ""),
            self._assets,
        )

    def risk_state(self) -> RiskState:
        """The risk state now (tests and views)."""
        return self.ledger.state(self._clock.now_ns(), self.halted, self._tripped())

    def _tripped(self) -> frozenset[str]:
        return frozenset(v for v, b in self.breakers.items() if b.tripped)

    def _book(self, venue: str, market: str) -> OrderBook | None:
        v = self._venues.get(venue)
        return v.book(market) if v is not None else None

    def _fees(self, venue: str, market: str) -> FeeSchedule:
        v = self._venues[venue]
        if not market:
            market = v.listings[0].market if v.listings else ""
        return v.fees(market)

    def _assets(self, market: str) -> tuple[str, str]:
        m = self._inst.markets[market]
        return m.base, m.quote

    # --- journal and tasks -----------------------------------------------------------------------
    def _action(self, action: str, target: str, detail: str = "") -> None:
        now = self._clock.now_ns()
        self._emit(OperatorAction(now, action, target, detail))
        if not self.guard.defer((now, action, target, detail)):  # in order: see LaunchGuard
            self._write_action((now, action, target, detail))

    def _write_action(self, held: HeldAction) -> None:
        ts, action, target, detail = held
        self._spawn(self._journal.record_action(ts, action, target, detail), f"journal-{action}")

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("executor task %s failed", task.get_name(), exc_info=task.exception())


def _beyond_quote(sending: Spread, quote: Quote) -> Refusal | None:
    """What the operator approved bounds what leaves: the same legs, never a larger quantity, never
    another limit. Checked on the legs about to be sent (not an ``assert``: it must hold under -O)."""
    for plan, shown in zip(sending.legs, quote.legs, strict=True):
        same = (plan.venue, plan.market, plan.side) == (shown.venue, shown.market, shown.side)
        if not same or plan.quantity > shown.quantity or plan.limit_price != shown.limit_price:
            return Refusal(
                "QUOTE_MISMATCH",
                f"would send {plan.side.value} {plan.quantity} {plan.venue}@{plan.limit_price}, but "
                f"{quote.quote_id} showed {shown.side.value} {shown.quantity} {shown.venue}@{shown.limit_price}",
            )
    return None


def _describe(quote: Quote) -> str:
    """A quote in one line, for the actions table (the quotes table holds it in full)."""
    a, b = quote.legs
    return (
        f"{a.side.value} {a.quantity} {a.venue}@{a.limit_price} / {b.side.value} {b.quantity} {b.venue}@{b.limit_price}"
        f" pnl {quote.expected_pnl:+.2f} ({quote.net_bps:+} bp){' refused ' + quote.refusal if quote.refusal else ''}"
        f"{'' if quote.quantity else ' nothing to send'}"
    )
