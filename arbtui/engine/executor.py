"""The pair executor: two legs sent in parallel, and everything that can happen after.

Two orders on two venues are not atomic. One can fill while the other is rejected, times out or
fills partly, and a cancel cannot undo a fill. The executor therefore:

1. re-validates the opportunity against the current books and the risk checks (a refusal has a
   reason code);
2. builds both requests (client order ids derived from the pair and leg), and commits the intent
   to the journal before either leaves: the only work between confirm and the wire (no other journal
   write is queued ahead of it or beside the sends, and the cyclic GC waits; see ``_hold``);
3. sends both legs concurrently (two tasks started back to back, so neither waits on the other), or
   with ``[execution] legs = "sequential"`` the second only once the first has its answer;
4. treats a missing answer as UNKNOWN, never as a rejection, and asks the venue by client order id
   with bounded retries; a late fill is applied;
5. settles: equal fills -> COMPLETED; nothing filled -> ABORTED; any imbalance -> UNWINDING, where
   the excess is flattened on the venue that holds it with IOC orders inside a price band, with
   bounded retries and backoff -> UNWOUND (loss recorded) or BROKEN (exposure remains, the market is
   blocked until the operator resolves it). An optional policy sends the missing quantity instead
   when the spread still pays.

Every state change goes through the tables in :mod:`arbtui.engine.states`, is journaled (awaited)
and published as an event.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from arbtui.config import Config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, Clock
from arbtui.domain.events import Event, Spread, SpreadKind
from arbtui.domain.execution import (
    ArmedChanged,
    BreakerChanged,
    ConfirmRefused,
    Exposure,
    KillSwitchChanged,
    LegRole,
    LegSimulation,
    LegState,
    LegUpdated,
    LegView,
    OperatorAction,
    PairState,
    PairStateChanged,
    PairView,
    SimulationCompleted,
    SimulationResult,
)
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Instruments
from arbtui.domain.money import BPS, ZERO, ceil_to_step, floor_to_step
from arbtui.domain.orders import OrderReport, OrderRequest, Side, TimeInForce
from arbtui.engine.analytics import ExecutionAnalytics
from arbtui.engine.breaker import CircuitBreaker
from arbtui.engine.detector import Detector
from arbtui.engine.journal import Journal, StoredPair
from arbtui.engine.risk import Refusal, RiskState, check_pair
from arbtui.engine.states import REPORT_TRIGGER, next_leg_state, next_pair_state
from arbtui.venues.base import UnknownOrder, Venue, VenueError

log = logging.getLogger(__name__)
T = TypeVar("T")

DAY_NS = 86_400 * NS_PER_S
CLORDID_MAX = 18  # Kraken's cl_ord_id free text allows at most 18 ASCII characters
_ROLE_CODE = {LegRole.ENTRY: "e", LegRole.UNWIND: "u", LegRole.COMPLETE: "c"}
_ROLE_OF_CODE = {v: k for k, v in _ROLE_CODE.items()}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class ConfirmRefusedError(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.code}: {refusal.detail}")
        self.refusal = refusal


def client_order_id(tag: str, seq: int, role: LegRole, n: int) -> str:
    """``a`` + journal tag (3) + pair sequence (7, base 36) + role + leg number (2, base 36).

    Unique per journal, alphanumeric, 14 characters: valid for Kraken (<= 18), Coinbase and
    Polymarket. It is written to the journal before the request leaves.
    """
    digits = ""
    s = seq
    for _ in range(7):
        s, r = divmod(s, 36)
        digits = _B36[r] + digits
    if s:
        raise ValueError("pair sequence too large for a client order id")
    if not 0 <= n < 36 * 36:
        raise ValueError(f"leg number {n} out of range for a client order id")
    cid = f"a{tag}{digits}{_ROLE_CODE[role]}{_B36[n // 36]}{_B36[n % 36]}"
    assert len(cid) <= CLORDID_MAX and cid.isascii() and cid.isalnum()
    return cid


@dataclass
class _Leg:
    request: OrderRequest
    pair_id: str
    role: LegRole
    target: int  # which entry leg (0 or 1) this leg adds to (completion) or takes from (unwind)
    idx: int
    state: LegState = LegState.NEW
    filled: Decimal = ZERO
    notional: Decimal = ZERO
    fee: Decimal = ZERO
    sent_ns: int | None = None
    answered_ns: int | None = None
    reason: str | None = None
    fills_recorded: int = 0
    sent_wall_ns: int | None = None  # perf_counter at hand-off to the venue (latency figures only)

    @property
    def cid(self) -> str:
        return self.request.client_order_id

    def view(self) -> LegView:
        r = self.request
        return LegView(
            r.client_order_id,
            self.pair_id,
            self.role,
            r.venue,
            r.market,
            r.side,
            r.quantity,
            r.limit_price,
            r.time_in_force,
            self.state,
            self.filled,
            self.notional / self.filled if self.filled else None,
            self.fee,
            self.sent_ns,
            self.answered_ns,
            self.reason,
        )


@dataclass
class _Pair:
    pair_id: str
    seq: int
    spread: Spread
    state: PairState
    created_ns: int
    confirm_ns: int
    legs: list[_Leg] = field(default_factory=list)
    realized_pnl: Decimal | None = None
    exposure: tuple[Exposure, ...] = ()
    reason: str | None = None
    resolved: bool = False
    abort_requested: bool = False
    intent_written: bool = False
    task: asyncio.Task[None] | None = None
    confirm_wall_ns: int = 0  # perf_counter at confirm() (latency figures only, never logic)
    launching: bool = False  # confirmed, its legs not on their way yet (see Executor._hold)

    @property
    def entries(self) -> list[_Leg]:
        return [leg for leg in self.legs if leg.role is LegRole.ENTRY]

    def effective(self, i: int) -> Decimal:
        """Entry leg i's position after completions (added) and unwinds (taken away)."""
        total = ZERO
        for leg in self.legs:
            if leg.target != i:
                continue
            total += -leg.filled if leg.role is LegRole.UNWIND else leg.filled
        return total

    def view(self) -> PairView:
        entries = self.entries
        sent = [leg.sent_ns for leg in entries if leg.sent_ns is not None]
        return PairView(
            self.pair_id,
            self.spread.opportunity_id or "",
            self.spread.key,
            self.spread.group,
            self.state,
            tuple(leg.view() for leg in self.legs),
            self.spread.expected_pnl,
            self.realized_pnl,
            self.exposure,
            self.created_ns,
            max(sent) - self.confirm_ns if len(sent) == 2 else None,
            abs(sent[0] - sent[1]) if len(sent) == 2 else None,
            self.reason,
            self.resolved,
            tuple(_slippage_bps(leg, plan.vwap) for leg, plan in zip(entries, self.spread.legs, strict=False)),
        )


def _slippage_bps(leg: _Leg, expected_vwap: Decimal) -> Decimal | None:
    """How much worse than the detector's VWAP the leg filled, in bps (negative: better)."""
    if not leg.filled or not expected_vwap:
        return None
    avg = leg.notional / leg.filled
    worse = avg - expected_vwap if leg.request.side is Side.BUY else expected_vwap - avg
    return (worse / expected_vwap * BPS).quantize(Decimal("0.01"))


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
        self._refresh_balances = refresh_balances
        self.pairs: dict[str, _Pair] = {}
        # The pairs that can still change the risk state: not final, or BROKEN and unresolved. The
        # others are swept out by _risk_state (their realized PnL kept per day), so a confirm costs
        # the same after ten thousand pairs as after ten.
        self._open: dict[str, _Pair] = {}
        self._settled_realized: dict[int, Decimal] = {}  # day -> realized PnL of swept pairs created that day
        # While a confirmed pair is launching (see _hold): how many are, the operator actions
        # waiting to be journaled (in order), and whether the cyclic GC was on before.
        self._launching = 0
        self._held_actions: list[tuple[int, str, str, str]] = []
        self._gc_was_enabled = True
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
        self._blocked_from_journal: dict[str, str] = {}  # unresolved BROKEN pairs of earlier runs
        self._earlier_realized: tuple[int, Decimal] = (0, ZERO)
        self.ready = False  # confirms are refused until start() has run

    # --- lifecycle -----------------------------------------------------------------------------
    async def load(self) -> None:
        """Load the journal's state (pair sequence, blocked markets, today's realized PnL). Runs
        before any venue connects, so no confirm can use a stale sequence or skip a limit."""
        self._next_seq = await self._journal.next_pair_seq()
        day_start = self._clock.now_ns() // DAY_NS * DAY_NS
        self._earlier_realized = (day_start, await self._journal.realized_since(day_start))
        for pair_id, group in await self._journal.blocked_markets():
            # An older BROKEN pair, still unresolved: keep its market blocked.
            self._blocked_from_journal[pair_id] = group
        for stored in await self._journal.unfinished_pairs():
            try:
                pair = self._restore(stored)
            except (KeyError, IndexError, ValueError, ArithmeticError) as exc:
                # A row the engine cannot rebuild must not stop it from starting: block the market.
                log.error("cannot restore pair %s from the journal: %s", stored.row.get("pair_id"), exc)
                self._blocked_from_journal[str(stored.row.get("pair_id"))] = str(stored.row.get("grp"))
                continue
            # Unfinished pairs have no realized PnL in the journal yet: they count here once final.
            self.pairs[pair.pair_id] = pair
            self._open[pair.pair_id] = pair

    async def start(self) -> None:
        """After the venues connect: reconcile pairs left unfinished by an earlier run, then accept
        confirms."""
        for pair in list(self.pairs.values()):
            if not pair.state.is_terminal and pair.task is None:
                pair.task = self._spawn(self._reconcile(pair), f"reconcile-{pair.pair_id}")
        self.ready = True

    async def cancel_all(self) -> None:
        """Stop every pair task where it is (the journal keeps their state for reconciliation).

        Pending journal writes of operator actions are let finish first: they are short, and a
        record of what the operator did must not be dropped on the way out.
        """
        for pair in self.pairs.values():
            self._release(pair)  # a pair stopped before its dispatch: its held confirm is written now
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
        return [p.view() for p in self._open.values() if not p.state.is_terminal]

    # --- commands ------------------------------------------------------------------------------
    def confirm(self, opportunity_id: str, *, operator: bool = True) -> str:
        """Validate and launch a pair; returns its id, or raises :class:`ConfirmRefusedError`."""
        wall = time.perf_counter_ns()
        now = self._clock.now_ns()
        spread = self._detector.find_opportunity(opportunity_id)
        refusal = self._check(spread)
        if refusal is not None:
            if operator:
                self._action("confirm", opportunity_id, refusal.code)
            self.analytics.refusals[refusal.code] += 1
            if operator:
                self._emit(ConfirmRefused(now, opportunity_id, refusal.code, refusal.detail))
            raise ConfirmRefusedError(refusal)
        assert spread is not None
        seq = self._next_seq
        self._next_seq += 1
        pair = _Pair(f"P-{seq}", seq, spread, PairState.PROPOSED, now, now, confirm_wall_ns=wall)
        if operator:
            self._emit(OperatorAction(now, "confirm", opportunity_id, ""))  # journaled after the launch
        for i, plan in enumerate(spread.legs):
            request = OrderRequest(
                client_order_id(self._journal.tag, seq, LegRole.ENTRY, i + 1),
                plan.venue,
                plan.market,
                plan.side,
                plan.quantity,
                plan.limit_price,
                TimeInForce.IOC,
            )
            pair.legs.append(_Leg(request, pair.pair_id, LegRole.ENTRY, i, i))
        pair.state = next_pair_state(pair.state, "confirm")
        self.pairs[pair.pair_id] = pair
        self._open[pair.pair_id] = pair
        self.analytics.pairs_confirmed += 1
        view = pair.view()
        self._emit(PairStateChanged(now, view, PairState.PROPOSED))
        self._hold(pair, (now, "confirm", opportunity_id, "") if operator else None)
        pair.task = self._spawn(self._run(pair, view), f"pair-{pair.pair_id}")
        return pair.pair_id

    def simulate(self, opportunity_id: str) -> SimulationResult | None:
        """What confirming would do now, walking the current books. Sends nothing."""
        spread = self._detector.find_opportunity(opportunity_id)
        if spread is None:
            spread = self._detector.spread(opportunity_id)  # also accepts a spread key (non-paying rows)
        self._action("simulate", opportunity_id)
        if spread is None:
            return None
        sims: list[LegSimulation] = []
        for plan in spread.legs:
            book = self._book(plan.venue, plan.market)
            est = book.estimate_fill(plan.side, plan.quantity, plan.limit_price) if book else None
            qty = est.quantity if est else ZERO
            fee = self._fees(plan.venue).fee(est.vwap, qty) if est and est.vwap is not None else ZERO
            sims.append(
                LegSimulation(plan.venue, plan.market, plan.side, qty, est.vwap if est else None, plan.limit_price, fee)
            )
        first, second = sims
        fees = first.fee + second.fee
        q = min(first.quantity, second.quantity)
        pnl = self._pnl_of(spread.kind, [(s.side, q, (s.vwap or ZERO) * q) for s in sims], fees)
        result = SimulationResult(
            opportunity_id,
            spread,
            (first, second),
            fees,
            pnl,
            self._unwind_cost(spread.legs[1].venue, spread.legs[1].market, spread.legs[1].side, second),
            self._unwind_cost(spread.legs[0].venue, spread.legs[0].market, spread.legs[0].side, first),
            refusal.code if (refusal := self._check(spread)) else None,
        )
        self._emit(SimulationCompleted(self._clock.now_ns(), result))
        return result

    def abort(self, pair_id: str) -> bool:
        """Cancel what rests and unwind any filled imbalance. False if the pair is already final."""
        pair = self.pairs.get(pair_id)
        self._action("abort", pair_id)
        if pair is None or pair.state.is_terminal:
            return False
        pair.abort_requested = True
        self._cancel_resting(pair)
        return True

    def kill(self) -> None:
        """Halt new pairs, cancel every open order arbtui has, and let unwinds flatten what filled."""
        self.halted = True
        was_armed, self.armed = self.armed, False
        self._action("kill", "*")
        if was_armed:
            self._emit(ArmedChanged(self._clock.now_ns(), False))
        self._emit(KillSwitchChanged(self._clock.now_ns(), True, "new pairs halted; open orders cancelled"))
        for pair in self._open.values():
            if not pair.state.is_terminal:
                pair.abort_requested = True
                self._cancel_resting(pair)

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
        self._blocked_from_journal.pop(pair_id, None)
        pair = self.pairs.get(pair_id)
        if pair is None or pair.state is not PairState.BROKEN or pair.resolved:
            return False
        pair.resolved = True
        self._emit(PairStateChanged(self._clock.now_ns(), pair.view(), pair.state))
        self._spawn(
            self._journal.record_pair(pair.view(), self._clock.now_ns(), "resolve", pair.state.value),
            f"journal-resolve-{pair_id}",
        )
        return True

    def on_opportunity(self, spread: Spread) -> None:
        """ARMED mode: confirm a paying spread above the armed edge, within the same risk limits."""
        if not self.armed or self.halted or spread.opportunity_id is None:
            return
        if spread.net_bps < self._ex.armed_min_net_edge_bps:
            return
        if any(p.spread.key == spread.key and not p.state.is_terminal for p in self._open.values()):
            return
        try:
            self.confirm(spread.opportunity_id, operator=False)
        except ConfirmRefusedError:
            pass  # counted in analytics.refusals

    # --- the pair ------------------------------------------------------------------------------
    async def _run(self, pair: _Pair, intent: PairView) -> None:
        """``intent``: the pair as confirmed (both legs NEW, with their client order ids)."""
        try:
            # The one write the sends wait for (the safety rule: the intent, with both client order
            # ids, is durable before anything leaves). Nothing else is queued on the journal's
            # thread ahead of it: see _hold.
            await self._journal.record_intent(intent, pair.seq, pair.spread.kind.value, self._clock.now_ns())
            pair.intent_written = True
            if pair.abort_requested:
                self._release(pair)
                await self._transition(pair, "abort", reason="aborted before dispatch")
                return
            await self._dispatch(pair)
            await self._settle(pair)
        except Exception as exc:  # an internal error must not leave a pair silently half-done
            self._release(pair)
            log.exception("pair %s failed", pair.pair_id)
            await self._fail(pair, exc)
        finally:
            self._release(pair)  # cancelled (the engine stopping) before its legs left

    def _hold(self, pair: _Pair, confirm: tuple[int, str, str, str] | None) -> None:
        """From confirm until ``pair``'s legs are on their way, keep work off the send path:

        - operator actions (this confirm first) wait to be journaled: the journal has one writer
          thread, so a write queued ahead of the pair's intent would delay the sends, and one
          running beside them would take the GIL from them. They keep their order (the actions
          table is an audit trail) and are written as soon as no pair is launching;
        - the cyclic garbage collector waits: a collection costs 0.3 ms (young) to 50 ms (full)
          here, and would land inside a launch about once in a hundred. It runs right after
          instead; the window is a millisecond or two (the intent's write and two loop turns).

        Always ended by :meth:`_release` (after the dispatch, or in ``_run``'s ``finally``)."""
        pair.launching = True
        self._launching += 1
        if self._launching == 1:
            self._gc_was_enabled = gc.isenabled()
            gc.disable()
        if confirm is not None:
            self._held_actions.append(confirm)

    def _release(self, pair: _Pair) -> None:
        """``pair`` is no longer launching (once; a no-op if it was not)."""
        if not pair.launching:
            return
        pair.launching = False
        self._launching -= 1
        if self._launching:
            return
        if self._gc_was_enabled:
            gc.enable()
        held, self._held_actions = self._held_actions, []
        for ts, action, target, detail in held:
            self._spawn(self._journal.record_action(ts, action, target, detail), f"journal-{action}")

    def _launch(self, leg: _Leg) -> asyncio.Future[OrderReport]:
        """Start sending one leg now. Synchronous, so two legs launched back to back go out together:
        neither waits on the other's journal write or on anything else."""
        venue = self._venues[leg.request.venue]
        leg.sent_ns = self._clock.now_ns()
        leg.state = next_leg_state(leg.state, "send")
        leg.sent_wall_ns = time.perf_counter_ns()  # handed to the venue (latency figures only)
        return asyncio.ensure_future(venue.place_order(leg.request))

    @staticmethod
    async def _let_sends_out() -> None:
        """Yield until launched legs are on the wire, before queueing any journal write behind them.

        A launched leg's task starts on the next turn of the loop, and aiohttp writes a request body
        from a task of its own one turn later (Python < 3.12 has no eager tasks). A journal write
        queued before then would run on the journal's thread during the sends, and that thread and
        the loop share the GIL. Two turns cost microseconds; nothing waits for a reply here."""
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def _send(self, pair: _Pair, leg: _Leg) -> None:
        await self._follow(pair, leg, self._launch(leg))

    async def _follow(self, pair: _Pair, leg: _Leg, placing: asyncio.Future[OrderReport]) -> None:
        """See a launched leg to a known state (or to UNKNOWN after every status query)."""
        now = self._clock.now_ns()
        self._emit(LegUpdated(now, leg.view()))
        await self._journal.record_leg(leg.view(), leg.idx, leg.target, now, "send", LegState.NEW.value)
        try:
            report = await self._with_timeout(placing, self._ex.order_timeout_ms * NS_PER_MS)
        except (TimeoutError, VenueError) as exc:
            self._breaker(leg.request.venue, failed=True)
            leg.reason = f"no answer: {exc}" if str(exc) else "no answer within the order timeout"
            await self._leg_transition(leg, "timeout")
            await self._query_until_known(leg)
            return
        leg.answered_ns = self._clock.now_ns()
        assert leg.sent_ns is not None
        self.analytics.ack(leg.request.venue, leg.answered_ns - leg.sent_ns)
        if not _believable(leg, report):
            # A report that cannot be about this order (another id, more filled than asked): the venue's
            # answer is not understood, so the outcome is unknown; ask again by client order id.
            self._breaker(leg.request.venue, failed=True)
            leg.reason = f"unbelievable report: {report.client_order_id} filled {report.filled_quantity}"
            await self._leg_transition(leg, "timeout")
            await self._query_until_known(leg)
            return
        self._breaker(leg.request.venue, failed=report.status.value == "rejected")
        await self._apply(leg, report)
        if pair.abort_requested and not leg.state.is_terminal:
            await self._cancel(leg)
        elif not leg.state.is_terminal and leg.request.time_in_force is not TimeInForce.GTC:
            # An IOC/FOK answer must be final; one that is not (a venue still matching) is asked about
            # until it is, and cancelled if it still rests: never left to go BROKEN unasked.
            await self._query_until_known(leg)

    async def _dispatch(self, pair: _Pair) -> None:
        """Both entry legs: launched back to back, then followed concurrently (``legs = "parallel"``),
        or the second launched only once the first has its answer (``legs = "sequential"``)."""
        first, second = pair.entries
        sequential = self._ex.legs == "sequential"
        placing = self._launch(first)
        placing_second = None if sequential else self._launch(second)
        await self._let_sends_out()
        # Recorded after the launch: the intent (with both client order ids) is already durable,
        # and these writes must not sit between confirm and the wire. The state changes in the
        # same step as its write is queued, so a journal read that sees DISPATCHING finds it.
        previous = pair.state
        pair.state = next_pair_state(previous, "dispatch")
        now = self._clock.now_ns()
        view = pair.view()
        self._emit(PairStateChanged(now, view, previous))
        self._release(pair)
        try:
            await self._journal.record_pair(view, now, "dispatch", previous.value)
            if placing_second is not None:
                await asyncio.gather(self._follow(pair, first, placing), self._follow(pair, second, placing_second))
            else:
                # Sequential: the second leg leaves after the first's answer (or its timeout and
                # status queries), whatever it was; settling is the same as for parallel legs.
                await self._follow(pair, first, placing)
                await self._follow(pair, second, self._launch(second))
        finally:
            if first.sent_wall_ns is not None and second.sent_wall_ns is not None:
                both_sent = max(first.sent_wall_ns, second.sent_wall_ns)
                self.analytics.confirm_to_sent.add(both_sent - pair.confirm_wall_ns)
                self.analytics.send_skew.add(abs(first.sent_wall_ns - second.sent_wall_ns))
            if first.answered_ns is not None and second.answered_ns is not None:
                self.analytics.ack_skew.add(abs(first.answered_ns - second.answered_ns))

    async def _query_until_known(self, leg: _Leg) -> None:
        """Unknown is not rejected: ask by client order id, with bounded retries and backoff.

        An order found still live (resting, or not yet matched) is cancelled: an arbitrage leg
        must not outlive its pair. Polling goes on until the venue reports a final state.
        """
        venue = self._venues[leg.request.venue]
        backoff = self._ex.status_backoff_ms * NS_PER_MS
        not_found = False
        cancel_sent = False
        for attempt in range(self._ex.status_retries):
            await self._clock.sleep(backoff << attempt)
            try:
                report = await self._with_timeout(venue.order_status(leg.cid), self._ex.order_timeout_ms * NS_PER_MS)
            except UnknownOrder:
                not_found = True
                continue
            except (TimeoutError, VenueError):
                not_found = False
                continue
            not_found = False
            if not _believable(leg, report):
                continue
            await self._apply(leg, report)
            if leg.state.is_terminal:
                return
            if leg.state is not LegState.UNKNOWN and not cancel_sent:
                cancel_sent = True
                await self._cancel(leg, query_after=False)
                if leg.state.is_terminal:
                    return
        if not_found and leg.state is LegState.UNKNOWN:
            leg.reason = "the venue never received it"
            await self._leg_transition(leg, "not_found")
        elif not leg.state.is_terminal:
            leg.reason = f"outcome not final after {self._ex.status_retries} status queries"

    async def _cancel(self, leg: _Leg, *, query_after: bool = True) -> None:
        """Ask the venue to cancel; what it answers (a fill may have come first) is applied."""
        venue = self._venues[leg.request.venue]
        try:
            report = await self._with_timeout(venue.cancel_order(leg.cid), self._ex.order_timeout_ms * NS_PER_MS)
        except (TimeoutError, VenueError):
            if query_after:
                await self._query_until_known(leg)
            return
        if not _believable(leg, report):
            if query_after:
                await self._query_until_known(leg)
            return
        await self._apply(leg, report)
        if query_after and not leg.state.is_terminal:
            await self._query_until_known(leg)

    async def _apply(self, leg: _Leg, report: OrderReport) -> None:
        """Apply a venue report: fills (never lost), then the state the venue says.

        A report about a leg already final, or older than what is known (fewer fills), changes
        nothing: two answers can race (a cancel and a status query), and the later one may be stale.
        """
        if leg.state.is_terminal or report.filled_quantity < leg.filled:
            log.info(
                "ignoring a stale report for %s (%s, filled %s)", leg.cid, report.status.value, report.filled_quantity
            )
            return
        if REPORT_TRIGGER[report.status] == "ack" and leg.state is LegState.PARTIALLY_FILLED:
            return
        leg.filled = report.filled_quantity
        leg.notional = (report.average_price or ZERO) * report.filled_quantity
        leg.fee = report.fee
        if report.reason:
            leg.reason = report.reason
        if leg.answered_ns is None:
            leg.answered_ns = self._clock.now_ns()
        new_fills = report.fills[leg.fills_recorded :]
        if new_fills:
            await self._journal.record_fills(
                leg.cid,
                [
                    (leg.fills_recorded + i, str(f.quantity), str(f.price), str(f.fee), f.liquidity.value, f.ts_ns)
                    for i, f in enumerate(new_fills)
                ],
            )
            leg.fills_recorded += len(new_fills)
        trigger = REPORT_TRIGGER[report.status]
        if trigger == "ack" and leg.state is LegState.ACKED:
            return
        await self._leg_transition(leg, trigger)

    async def _settle(self, pair: _Pair) -> None:
        entries = pair.entries
        if any(not leg.state.is_terminal for leg in entries):
            await self._broken(pair, "a leg's outcome is still not final after every status query")
            return
        q0, q1 = pair.effective(0), pair.effective(1)
        if q0 == q1:
            if q0 == 0:
                reasons = "; ".join(f"{leg.request.venue}: {leg.reason}" for leg in entries if leg.reason)
                await self._transition(pair, "nothing_filled", reason=reasons or "nothing filled")
            else:
                await self._finish(pair, "balanced")
            return
        if self._ex.complete_missing_leg and not pair.abort_requested and not self.halted:
            if await self._complete_missing(pair):
                return
        await self._transition(
            pair, "imbalanced", reason=f"filled {q0} vs {q1}: unwinding {abs(q0 - q1)} on the heavier leg"
        )
        await self._unwind(pair)

    async def _complete_missing(self, pair: _Pair) -> bool:
        """Policy: send the short leg's missing quantity if the spread still pays. True if balanced."""
        current = self._detector.spread(pair.spread.key)
        if current is None or not current.pays:
            return False
        short = 0 if pair.effective(0) < pair.effective(1) else 1
        missing = abs(pair.effective(0) - pair.effective(1))
        plan = current.legs[short]
        n = sum(1 for leg in pair.legs if leg.role is LegRole.COMPLETE) + 1
        req = OrderRequest(
            client_order_id(self._journal.tag, pair.seq, LegRole.COMPLETE, n),
            plan.venue,
            plan.market,
            plan.side,
            missing,
            plan.limit_price,
            TimeInForce.IOC,
        )
        leg = _Leg(req, pair.pair_id, LegRole.COMPLETE, short, len(pair.legs))
        pair.legs.append(leg)
        await self._transition(pair, "complete_missing", reason=f"sending the missing {missing} on {plan.venue}")
        await self._journal.record_leg(leg.view(), leg.idx, leg.target, self._clock.now_ns(), "intent", None)
        await self._send(pair, leg)
        if not leg.state.is_terminal:
            # It may have filled: sending an unwind now could create the opposite position.
            await self._broken(pair, "the completion's outcome is unknown after every status query")
            return True
        if pair.effective(0) == pair.effective(1):
            await self._finish(pair, "balanced")
            return True
        await self._transition(pair, "imbalanced", reason="the completion did not fill: unwinding")
        await self._unwind(pair)
        return True

    async def _unwind(self, pair: _Pair) -> None:
        """Flatten the excess on the venue that holds it: IOC inside the band, bounded retries."""
        backoff = self._ex.unwind_backoff_ms * NS_PER_MS
        band = self._ex.unwind_band_bps / BPS
        for attempt in range(self._ex.unwind_attempts):
            if any(not leg.state.is_terminal for leg in pair.legs):
                break  # a leg's outcome is unknown: the position is unknown, so nothing more is sent
            q0, q1 = pair.effective(0), pair.effective(1)
            if q0 == q1:
                break
            heavy = 0 if q0 > q1 else 1
            excess = abs(q0 - q1)
            entry = pair.entries[heavy].request
            listing = self._inst.listing(entry.venue, entry.market)
            side = entry.side.opposite
            book = self._book(entry.venue, entry.market)
            touch = (book.best_bid() if side is Side.SELL else book.best_ask()) if book else None
            if touch is None:
                await self._clock.sleep(backoff << attempt)
                continue
            if side is Side.SELL:
                limit = ceil_to_step(touch[0] * (1 - band), listing.tick_size)
            else:
                limit = floor_to_step(touch[0] * (1 + band), listing.tick_size)
            n = sum(1 for leg in pair.legs if leg.role is LegRole.UNWIND) + 1
            req = OrderRequest(
                client_order_id(self._journal.tag, pair.seq, LegRole.UNWIND, n),
                entry.venue,
                entry.market,
                side,
                excess,
                limit,
                TimeInForce.IOC,
            )
            leg = _Leg(req, pair.pair_id, LegRole.UNWIND, heavy, len(pair.legs))
            pair.legs.append(leg)
            await self._journal.record_leg(leg.view(), leg.idx, leg.target, self._clock.now_ns(), "intent", None)
            await self._send(pair, leg)
            if not leg.state.is_terminal:
                break  # we cannot know the position: stop sending more
            if pair.effective(0) != pair.effective(1):
                await self._clock.sleep(backoff << attempt)
        if pair.effective(0) == pair.effective(1) and all(leg.state.is_terminal for leg in pair.legs):
            await self._finish(pair, "flat")
        else:
            attempts = sum(1 for leg in pair.legs if leg.role is LegRole.UNWIND)
            await self._broken(pair, f"exposure remains after {attempts} unwind attempt(s)")

    async def _finish(self, pair: _Pair, trigger: str) -> None:
        pair.realized_pnl = self._realized(pair)
        if trigger == "balanced":
            self.analytics.pairs_completed += 1
            if pair.spread.opportunity_id:
                self.analytics.captured.add(pair.spread.opportunity_id)
            self.analytics.expected_pnl += pair.spread.expected_pnl
            for slip in pair.view().slippage_bps:
                if slip is not None:
                    self.analytics.slippage_bps.append(slip)
        self.analytics.realized_pnl += pair.realized_pnl
        # Refresh the cached balances while the pair still holds its reservation, so no confirm in
        # between sees the funds twice (reserved and not yet spent in the cache) or not at all.
        await self._after_terminal(pair)
        await self._transition(pair, trigger)

    async def _broken(self, pair: _Pair, reason: str) -> None:
        exposures = []
        for i, entry in enumerate(pair.entries):
            other = pair.effective(1 - i)
            mine = pair.effective(i)
            # A leg still live that ADDS to this side (entry, completion) may add up to its remainder;
            # a live unwind can only reduce the excess, which is already counted in full.
            unknown = [
                leg
                for leg in pair.legs
                if leg.target == i and not leg.state.is_terminal and leg.role is not LegRole.UNWIND
            ]
            if mine > other or unknown:
                qty = mine - other if mine > other else ZERO
                qty += sum((leg.request.quantity - leg.filled for leg in unknown), ZERO)
                if qty > 0:
                    exposures.append(Exposure(entry.request.venue, entry.request.market, entry.request.side, qty))
        pair.exposure = tuple(exposures)
        trigger = "exhausted" if pair.state is PairState.UNWINDING else "outcome_unknown"
        await self._after_terminal(pair)
        await self._transition(pair, trigger, reason=reason)

    async def _fail(self, pair: _Pair, exc: BaseException) -> None:
        if pair.state.is_terminal:
            return
        if not pair.intent_written:
            # Nothing was sent and nothing of this pair is in the journal: do not write over it.
            previous = pair.state
            pair.state = PairState.ABORTED
            pair.reason = f"not sent: the journal refused the intent ({exc})"
            self._emit(PairStateChanged(self._clock.now_ns(), pair.view(), previous))
            return
        pair.reason = f"internal error: {exc}"
        try:
            await self._broken(pair, pair.reason)  # exposure unknown: the operator must look
        except Exception:  # the state table refused: record BROKEN directly, loudly
            log.exception("pair %s could not be marked broken through the table", pair.pair_id)
            previous = pair.state
            pair.state = PairState.BROKEN
            self._emit(PairStateChanged(self._clock.now_ns(), pair.view(), previous))

    async def _after_terminal(self, pair: _Pair) -> None:
        for venue in {leg.request.venue for leg in pair.legs}:
            await self._refresh_balances(venue)

    # --- state changes ---------------------------------------------------------------------------
    async def _transition(self, pair: _Pair, trigger: str, reason: str | None = None) -> None:
        previous = pair.state
        pair.state = next_pair_state(previous, trigger)
        if reason is not None:
            pair.reason = reason
        now = self._clock.now_ns()
        view = pair.view()
        await self._journal.record_pair(view, now, trigger, previous.value)
        self._emit(PairStateChanged(now, view, previous))

    async def _leg_transition(self, leg: _Leg, trigger: str) -> None:
        previous = leg.state
        leg.state = next_leg_state(previous, trigger)
        now = self._clock.now_ns()
        view = leg.view()
        self._emit(LegUpdated(now, view))
        await self._journal.record_leg(view, leg.idx, leg.target, now, trigger, previous.value)

    # --- reconciliation ------------------------------------------------------------------------
    def _restore(self, stored: StoredPair) -> _Pair:
        row = stored.row
        kind = SpreadKind(row["kind"])
        legs_rows = stored.legs
        from arbtui.domain.events import LegPlan

        plans = tuple(
            LegPlan(
                r["venue"],
                r["market"],
                Side(r["side"]),
                Decimal(r["quantity"]),
                Decimal(r["limit_price"]),
                Decimal(r["limit_price"]),
                ZERO,
            )
            for r in legs_rows
            if r["role"] == LegRole.ENTRY.value
        )
        spread = Spread(
            row["spread_key"],
            kind,
            row["grp"],
            (plans[0], plans[1]),
            plans[0].quantity,
            ZERO,
            ZERO,
            ZERO,
            ZERO,
            Decimal(row["expected_pnl"]),
            row["opportunity_id"],
            row["created_ns"],
        )
        pair = _Pair(
            row["pair_id"],
            row["seq"],
            spread,
            PairState(row["state"]),
            row["created_ns"],
            row["created_ns"],
            intent_written=True,
        )
        for r in legs_rows:
            req = OrderRequest(
                r["client_order_id"],
                r["venue"],
                r["market"],
                Side(r["side"]),
                Decimal(r["quantity"]),
                Decimal(r["limit_price"]),
                TimeInForce(r["tif"]),
            )
            leg = _Leg(
                req,
                pair.pair_id,
                LegRole(r["role"]),
                r["target"],
                r["idx"],
                LegState(r["state"]),
                Decimal(r["filled"]),
                Decimal(r["filled"]) * Decimal(r["average_price"] or 0),
                Decimal(r["fee"]),
                r["sent_ns"],
                r["answered_ns"],
                r["reason"],
            )
            pair.legs.append(leg)
        return pair

    async def _reconcile(self, pair: _Pair) -> None:
        """Ask the venues what happened to every leg not known to be final, then settle."""
        try:
            resume_unwind = pair.state is PairState.UNWINDING
            if not resume_unwind:
                previous = pair.state
                pair.state = PairState.RECONCILING  # any unfinished state restarts here (journaled below)
                now = self._clock.now_ns()
                await self._journal.record_pair(pair.view(), now, "restart", previous.value)
                self._emit(PairStateChanged(now, pair.view(), previous))
            for leg in pair.legs:
                if leg.state.is_terminal:
                    continue
                if leg.state is LegState.NEW:
                    # The intent was journaled; whether it was sent is unknown: treat it as sent.
                    await self._leg_transition(leg, "send")
                if leg.state is LegState.SENT:
                    await self._leg_transition(leg, "timeout")
                await self._query_until_known(leg)
            if resume_unwind:
                await self._unwind(pair)
                return
            if any(not leg.state.is_terminal for leg in pair.legs):
                await self._broken(pair, "reconciliation could not learn a leg's final outcome")
                return
            q0, q1 = pair.effective(0), pair.effective(1)
            if q0 == q1 == 0:
                await self._transition(pair, "nothing_filled", reason="reconciled: nothing filled")
            elif q0 == q1:
                pair.reason = "reconciled: both legs filled"
                await self._finish(pair, "balanced")
            else:
                await self._transition(pair, "imbalanced", reason=f"reconciled: filled {q0} vs {q1}")
                await self._unwind(pair)
        except Exception as exc:
            log.exception("reconciling pair %s failed", pair.pair_id)
            await self._fail(pair, exc)

    # --- helpers -------------------------------------------------------------------------------
    def check(self, spread: Spread | None) -> Refusal | None:
        """The refusal confirming ``spread`` would get now (public: the console greys such rows)."""
        return self._check(spread)

    def _check(self, spread: Spread | None) -> Refusal | None:
        if not self.ready:
            return Refusal("STARTING", "the engine is still loading its journal and connecting venues")
        return check_pair(
            spread,
            self._cfg.risk,
            self._cfg.detector.min_net_edge_bps,
            self._risk_state(),
            self._book,
            self._balance,
            self._fees,
            self._assets,
        )

    def _risk_state(self) -> RiskState:
        reserved: dict[tuple[str, str], Decimal] = {}
        by_venue: dict[str, Decimal] = {}
        by_market: dict[str, Decimal] = {}
        in_flight = 0
        now = self._clock.now_ns()
        day = now // DAY_NS
        earlier_day, earlier = self._earlier_realized
        realized_today = earlier if earlier_day // DAY_NS == day else ZERO
        realized_today += self._settled_realized.get(day, ZERO)
        blocked = set(self._blocked_from_journal.values())
        for pair in list(self._open.values()):
            if pair.state.is_terminal and (pair.state is not PairState.BROKEN or pair.resolved):
                # Final for good (a final state has no way out; a resolved BROKEN pair stays
                # resolved): only its realized PnL still counts, kept by the day it was created.
                del self._open[pair.pair_id]
                if pair.realized_pnl is not None:
                    created_day = pair.created_ns // DAY_NS
                    settled = self._settled_realized.get(created_day, ZERO) + pair.realized_pnl
                    self._settled_realized[created_day] = settled
                    if created_day == day:
                        realized_today += pair.realized_pnl
                continue
            if pair.created_ns // DAY_NS == day and pair.realized_pnl is not None:
                realized_today += pair.realized_pnl
            if pair.state is PairState.BROKEN and not pair.resolved:
                blocked.add(pair.spread.group)
                for e in pair.exposure:
                    price = next(
                        (
                            leg.request.limit_price
                            for leg in pair.entries
                            if leg.request.venue == e.venue and leg.request.market == e.market
                        ),
                        ZERO,
                    )
                    by_venue[e.venue] = by_venue.get(e.venue, ZERO) + e.quantity * price
                    by_market[e.market] = by_market.get(e.market, ZERO) + e.quantity * price
            if pair.state.is_terminal:
                continue
            in_flight += 1
            for leg in pair.entries:
                r = leg.request
                notional = r.quantity * r.limit_price
                by_venue[r.venue] = by_venue.get(r.venue, ZERO) + notional
                by_market[r.market] = by_market.get(r.market, ZERO) + notional
                # Held until the pair ends, filled or not: the cached balances are refreshed only
                # then, so a filled leg's spend is not in them yet (conservative for a rejected leg).
                base, quote = self._assets(r.market)
                key = (r.venue, quote) if r.side is Side.BUY else (r.venue, base)
                amount = (
                    notional + self._fees(r.venue).fee(r.limit_price, r.quantity)
                    if r.side is Side.BUY
                    else (r.quantity)
                )
                reserved[key] = reserved.get(key, ZERO) + amount
        tripped = frozenset(v for v, b in self.breakers.items() if b.tripped)
        return RiskState(
            now,
            self.halted,
            frozenset(blocked),
            tripped,
            reserved,
            by_venue,
            by_market,
            in_flight,
            realized_today,
            frozenset(p.spread.key for p in self._open.values() if not p.state.is_terminal),
        )

    def _book(self, venue: str, market: str) -> OrderBook | None:
        v = self._venues.get(venue)
        return v.book(market) if v is not None else None

    def _fees(self, venue: str) -> FeeSchedule:
        lst = self._venues[venue].listings
        return self._venues[venue].fees(lst[0].market if lst else "")

    def _assets(self, market: str) -> tuple[str, str]:
        m = self._inst.markets[market]
        return m.base, m.quote

    def _breaker(self, venue: str, *, failed: bool) -> None:
        breaker = self.breakers[venue]
        if breaker.record(self._clock.now_ns(), failed):
            self._emit(BreakerChanged(self._clock.now_ns(), venue, True, breaker.reason))

    def _cancel_resting(self, pair: _Pair) -> None:
        for leg in pair.legs:
            if leg.state in (LegState.ACKED, LegState.PARTIALLY_FILLED):
                self._spawn(self._cancel(leg), f"cancel-{leg.cid}")

    def _action(self, action: str, target: str, detail: str = "") -> None:
        now = self._clock.now_ns()
        self._emit(OperatorAction(now, action, target, detail))
        if self._launching:
            self._held_actions.append((now, action, target, detail))  # in order: see _hold
        else:
            self._spawn(self._journal.record_action(now, action, target, detail), f"journal-{action}")

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

    async def _with_timeout(self, aw: Awaitable[T], timeout_ns: int) -> T:
        """Await ``aw`` for at most ``timeout_ns`` of engine-clock time (replays and tests included)."""
        work: asyncio.Future[T] = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self._clock.sleep(timeout_ns))
        try:
            waiting: set[asyncio.Future[Any]] = {work, timer}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            timer.cancel()
            raise
        if work.done():
            timer.cancel()
            return work.result()
        work.cancel()
        try:
            await work
        except (asyncio.CancelledError, Exception):  # the abandoned request's fate is asked separately
            pass
        raise TimeoutError(f"no answer within {timeout_ns // NS_PER_MS} ms")

    def _pnl_of(self, kind: SpreadKind, flows: list[tuple[Side, Decimal, Decimal]], fees: Decimal) -> Decimal:
        """Cash PnL of (side, quantity, notional) flows; a complement also holds matched YES+NO pairs."""
        cash = sum(((n if s is Side.SELL else -n) for s, _, n in flows), ZERO) - fees
        if kind is SpreadKind.COMPLEMENT:
            matched = min(q for _, q, _ in flows) if flows else ZERO
            cash += matched  # each YES+NO pair pays 1 at resolution
        return cash

    def _realized(self, pair: _Pair) -> Decimal:
        cash = ZERO
        for leg in pair.legs:
            cash += leg.notional if leg.request.side is Side.SELL else -leg.notional
            cash -= leg.fee
        if pair.spread.kind is SpreadKind.COMPLEMENT:
            cash += min(pair.effective(0), pair.effective(1))
        return cash

    def _unwind_cost(self, venue: str, market: str, side: Side, leg: LegSimulation) -> Decimal:
        """PnL if only this leg filled and it was flattened at once at the opposite side of its book."""
        book = self._book(venue, market)
        if book is None or leg.vwap is None or leg.quantity == 0:
            return ZERO
        back = book.estimate_fill(side.opposite, leg.quantity)
        if back.vwap is None:
            return -(leg.vwap * leg.quantity)  # nothing to unwind into: the whole notional is at risk
        fee_back = self._fees(venue).fee(back.vwap, back.quantity)
        if side is Side.BUY:
            return back.notional - leg.vwap * leg.quantity - leg.fee - fee_back
        return leg.vwap * leg.quantity - back.notional - leg.fee - fee_back


def _believable(leg: _Leg, report: OrderReport) -> bool:
    """A report can be about this leg: its client order id, and no more filled than was ordered."""
    ok = report.client_order_id == leg.cid and report.filled_quantity <= leg.request.quantity
    if not ok:
        log.error(
            "venue report for %s names %s and %s filled of %s ordered: not applied",
            leg.cid,
            report.client_order_id,
            report.filled_quantity,
            leg.request.quantity,
        )
    return ok
