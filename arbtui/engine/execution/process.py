"""The pair process: a confirmed pair from its durable intent to a known, journaled final state.

Two orders on two venues are not atomic. One can fill while the other is rejected, times out or
fills partly, and a cancel cannot undo a fill. The process therefore:

1. commits the intent to the journal (the pair, its quote and both legs with their client order
   ids) before either leaves: the only work between confirm and the wire (see
   :mod:`arbtui.engine.execution.launch_guard`);
2. sends both legs concurrently (two tasks started back to back, so neither waits on the other), or
   with ``[execution] legs = "sequential"`` the second only once the first has its answer;
3. treats a missing answer as UNKNOWN, never as a rejection, and asks the venue by client order id
   with bounded retries; a late fill is applied. A leg the venue says it never received is
   NOT_FOUND: settled as nothing filled, and handed to the late-fill watch
   (:mod:`arbtui.engine.execution.watch`), which re-opens the pair if it fills after all;
4. settles: equal fills -> COMPLETED; nothing filled -> ABORTED; any imbalance -> UNWINDING, where
   the excess is flattened on the venue that holds it with IOC orders inside a price band, with
   bounded retries and backoff -> UNWOUND (loss recorded) or BROKEN (exposure remains, the market is
   blocked until the operator resolves it). An optional policy sends the missing quantity instead
   when the spread still pays.

Every state change goes through the tables in :mod:`arbtui.engine.execution.states`, is journaled
(awaited) and published as an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from arbtui.config import ExecutionConfig
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS, Clock
from arbtui.domain.events import Event
from arbtui.domain.execution import (
    BreakerChanged,
    Exposure,
    LegRole,
    LegState,
    LegUpdated,
    PairState,
    PairStateChanged,
    PairView,
)
from arbtui.domain.instruments import Instruments
from arbtui.domain.money import BPS, ZERO, ceil_to_step, floor_to_step
from arbtui.domain.orders import OrderReport, OrderRequest, Side, TimeInForce
from arbtui.engine.analytics import ExecutionAnalytics
from arbtui.engine.breaker import CircuitBreaker
from arbtui.engine.detector import Detector
from arbtui.engine.execution.launch_guard import LaunchGuard
from arbtui.engine.execution.ledger import RiskLedger
from arbtui.engine.execution.model import Leg, Pair, believable, client_order_id
from arbtui.engine.execution.states import REPORT_TRIGGER, next_leg_state, next_pair_state
from arbtui.engine.journal import Journal
from arbtui.venues.base import UnknownOrder, Venue, VenueError

if TYPE_CHECKING:
    from arbtui.engine.execution.watch import LateFillWatch

log = logging.getLogger(__name__)
T = TypeVar("T")


class PairProcess:
    """Drives pairs (dispatch, follow, settle, unwind, reconcile). One per executor."""

    def __init__(
        self,
        execution: ExecutionConfig,
        clock: Clock,
        venues: Mapping[str, Venue],
        instruments: Instruments,
        detector: Detector,
        journal: Journal,
        emit: Callable[[Event], None],
        ledger: RiskLedger,
        guard: LaunchGuard,
        breakers: Mapping[str, CircuitBreaker],
        analytics: ExecutionAnalytics,
        refresh_balances: Callable[[str], Awaitable[None]],
        spawn: Callable[[Awaitable[None], str], asyncio.Task[None]],
        halted: Callable[[], bool],
    ) -> None:
        self._ex = execution
        self._clock = clock
        self._venues = venues
        self._inst = instruments
        self._detector = detector
        self._journal = journal
        self._emit = emit
        self._ledger = ledger
        self._guard = guard
        self._breakers = breakers
        self._analytics = analytics
        self._refresh_balances = refresh_balances
        self._spawn = spawn
        self._halted = halted
        self._late_fills: LateFillWatch | None = None

    def set_late_fill_watch(self, watch: LateFillWatch) -> None:
        """Where NOT_FOUND legs go to be watched (the executor builds both; the watch needs this)."""
        self._late_fills = watch

    def watch(self, leg: Leg) -> None:
        """Hand a NOT_FOUND leg to the late-fill watch (if any)."""
        if self._late_fills is not None and leg.state is LegState.NOT_FOUND:
            self._late_fills.watch(leg)

    # --- the pair ------------------------------------------------------------------------------
    async def run(self, pair: Pair, intent: PairView) -> None:
        """``intent``: the pair as confirmed (both legs NEW, with their client order ids)."""
        try:
            # The one write the sends wait for (the safety rule: the intent, with both client order
            # ids and the quote the operator approved, is durable before anything leaves). Nothing
            # else is queued on the journal's thread ahead of it: see LaunchGuard.
            await self._journal.record_intent(
                intent, pair.seq, pair.spread.kind.value, self._clock.now_ns(), pair.quote
            )
            pair.intent_written = True
            if pair.abort_requested:
                self._guard.release(pair)
                await self.transition(pair, "abort", reason="aborted before dispatch")
                return
            await self._dispatch(pair)
            await self._settle(pair)
        except Exception as exc:  # an internal error must not leave a pair silently half-done
            self._guard.release(pair)
            log.exception("pair %s failed", pair.pair_id)
            await self.fail(pair, exc)
        finally:
            self._guard.release(pair)  # cancelled (the engine stopping) before its legs left

    def _launch(self, leg: Leg) -> asyncio.Future[OrderReport]:
        """Start sending one leg now. Synchronous, so two legs launched back to back go out together:
        neither waits on the other's journal write or on anything else."""
        venue = self._venues[leg.request.venue]
        leg.sent_ns = self._clock.now_ns()
        leg.state = next_leg_state(leg.state, "send")  # journaled by _follow, after the launch
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

    async def send(self, pair: Pair, leg: Leg) -> None:
        await self._follow(pair, leg, self._launch(leg))

    async def _follow(self, pair: Pair, leg: Leg, placing: asyncio.Future[OrderReport]) -> None:
        """See a launched leg to a known state (or to UNKNOWN after every status query)."""
        now = self._clock.now_ns()
        self._emit(LegUpdated(now, leg.view()))
        await self._journal.record_leg(leg.view(), leg.idx, leg.target, now, "send", LegState.NEW.value)
        try:
            report = await self.with_timeout(placing, self._ex.order_timeout_ms * NS_PER_MS)
        except (TimeoutError, VenueError) as exc:
            self.breaker(leg.request.venue, failed=True)
            leg.reason = f"no answer: {exc}" if str(exc) else "no answer within the order timeout"
            await self.leg_transition(leg, "timeout")
            await self.query_until_known(leg)
            return
        leg.answered_ns = self._clock.now_ns()
        assert leg.sent_ns is not None
        self._analytics.ack(leg.request.venue, leg.answered_ns - leg.sent_ns)
        if not believable(leg, report):
            # A report that cannot be about this order (another id, more filled than asked): the venue's
            # answer is not understood, so the outcome is unknown; ask again by client order id.
            self.breaker(leg.request.venue, failed=True)
            leg.reason = f"unbelievable report: {report.client_order_id} filled {report.filled_quantity}"
            await self.leg_transition(leg, "timeout")
            await self.query_until_known(leg)
            return
        self.breaker(leg.request.venue, failed=report.status.value == "rejected")
        await self.apply(leg, report)
        if pair.abort_requested and not leg.state.is_terminal:
            await self.cancel(leg)
        elif not leg.state.is_terminal and leg.request.time_in_force is not TimeInForce.GTC:
            # An IOC/FOK answer must be final; one that is not (a venue still matching) is asked about
            # until it is, and cancelled if it still rests: never left to go BROKEN unasked.
            await self.query_until_known(leg)

    async def _dispatch(self, pair: Pair) -> None:
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
        self._guard.release(pair)
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
                self._analytics.confirm_to_sent.add(both_sent - pair.confirm_wall_ns)
                self._analytics.send_skew.add(abs(first.sent_wall_ns - second.sent_wall_ns))
            if first.answered_ns is not None and second.answered_ns is not None:
                self._analytics.ack_skew.add(abs(first.answered_ns - second.answered_ns))

    async def query_until_known(self, leg: Leg) -> None:
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
                report = await self.with_timeout(venue.order_status(leg.cid), self._ex.order_timeout_ms * NS_PER_MS)
            except UnknownOrder:
                not_found = True
                continue
            except (TimeoutError, VenueError):
                not_found = False
                continue
            not_found = False
            if not believable(leg, report):
                continue
            await self.apply(leg, report)
            if leg.state.is_terminal:
                return
            if leg.state is not LegState.UNKNOWN and not cancel_sent:
                cancel_sent = True
                await self.cancel(leg, query_after=False)
                if leg.state.is_terminal:
                    return
        if not_found and leg.state is LegState.UNKNOWN:
            # Not proof that it never arrived: nothing filled for settling, but watched.
            leg.reason = "the venue never received it"
            await self.leg_transition(leg, "not_found")
            self.watch(leg)
        elif not leg.state.is_terminal:
            leg.reason = f"outcome not final after {self._ex.status_retries} status queries"

    async def cancel(self, leg: Leg, *, query_after: bool = True) -> None:
        """Ask the venue to cancel; what it answers (a fill may have come first) is applied."""
        venue = self._venues[leg.request.venue]
        try:
            report = await self.with_timeout(venue.cancel_order(leg.cid), self._ex.order_timeout_ms * NS_PER_MS)
        except (TimeoutError, VenueError):
            if query_after:
                await self.query_until_known(leg)
            return
        if not believable(leg, report):
            if query_after:
                await self.query_until_known(leg)
            return
        await self.apply(leg, report)
        if query_after and not leg.state.is_terminal:
            await self.query_until_known(leg)

    def cancel_resting(self, pair: Pair) -> int:
        """Cancel every leg of ``pair`` that rests on a venue; how many cancels were sent."""
        sent = 0
        for leg in pair.legs:
            if leg.state in (LegState.ACKED, LegState.PARTIALLY_FILLED):
                self._spawn(self.cancel(leg), f"cancel-{leg.cid}")
                sent += 1
        return sent

    async def apply(self, leg: Leg, report: OrderReport) -> None:
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
        await self.record_new_fills(leg, report)
        trigger = REPORT_TRIGGER[report.status]
        if trigger == "ack" and leg.state is LegState.ACKED:
            return
        await self.leg_transition(leg, trigger)

    async def record_new_fills(self, leg: Leg, report: OrderReport) -> None:
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

    async def _settle(self, pair: Pair) -> None:
        entries = pair.entries
        if any(not leg.settled for leg in entries):
            await self.broken(pair, "a leg's outcome is still not final after every status query")
            return
        q0, q1 = pair.effective(0), pair.effective(1)
        if q0 == q1:
            if q0 == 0:
                reasons = "; ".join(f"{leg.request.venue}: {leg.reason}" for leg in entries if leg.reason)
                await self.transition(pair, "nothing_filled", reason=reasons or "nothing filled")
            else:
                await self.finish(pair, "balanced")
            return
        if self._ex.complete_missing_leg and not pair.abort_requested and not self._halted():
            if await self._complete_missing(pair):
                return
        await self.transition(
            pair, "imbalanced", reason=f"filled {q0} vs {q1}: unwinding {abs(q0 - q1)} on the heavier leg"
        )
        await self.unwind(pair)

    async def _complete_missing(self, pair: Pair) -> bool:
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
        leg = Leg(req, pair.pair_id, LegRole.COMPLETE, short, len(pair.legs))
        pair.legs.append(leg)
        await self.transition(pair, "complete_missing", reason=f"sending the missing {missing} on {plan.venue}")
        await self._journal.record_leg(leg.view(), leg.idx, leg.target, self._clock.now_ns(), "intent", None)
        await self.send(pair, leg)
        if not leg.settled:
            # It may have filled: sending an unwind now could create the opposite position.
            await self.broken(pair, "the completion's outcome is unknown after every status query")
            return True
        if pair.effective(0) == pair.effective(1):
            await self.finish(pair, "balanced")
            return True
        await self.transition(pair, "imbalanced", reason="the completion did not fill: unwinding")
        await self.unwind(pair)
        return True

    async def unwind(self, pair: Pair) -> None:
        """Flatten the excess on the venue that holds it: IOC inside the band, bounded retries."""
        backoff = self._ex.unwind_backoff_ms * NS_PER_MS
        band = self._ex.unwind_band_bps / BPS
        for attempt in range(self._ex.unwind_attempts):
            if any(not leg.settled for leg in pair.legs):
                break  # a leg's outcome is unknown: the position is unknown, so nothing more is sent
            q0, q1 = pair.effective(0), pair.effective(1)
            if q0 == q1:
                break
            heavy = 0 if q0 > q1 else 1
            excess = abs(q0 - q1)
            entry = pair.entries[heavy].request
            listing = self._inst.listing(entry.venue, entry.market)
            side = entry.side.opposite
            book = self.book(entry.venue, entry.market)
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
            leg = Leg(req, pair.pair_id, LegRole.UNWIND, heavy, len(pair.legs))
            pair.legs.append(leg)
            await self._journal.record_leg(leg.view(), leg.idx, leg.target, self._clock.now_ns(), "intent", None)
            await self.send(pair, leg)
            if not leg.settled or leg.state is LegState.NOT_FOUND:
                # We cannot know the position: stop sending more. An unwind the venue says it never
                # saw may still arrive (the late-fill watch follows it); sending another could flatten
                # twice, so the pair is left BROKEN with its exposure shown until the watch knows.
                break
            if pair.effective(0) != pair.effective(1):
                await self._clock.sleep(backoff << attempt)
        if pair.effective(0) == pair.effective(1) and all(leg.settled for leg in pair.legs):
            await self.finish(pair, "flat")
        else:
            attempts = sum(1 for leg in pair.legs if leg.role is LegRole.UNWIND)
            await self.broken(pair, f"exposure remains after {attempts} unwind attempt(s)")

    async def finish(self, pair: Pair, trigger: str) -> None:
        pair.realized_pnl = pair.realized()
        if trigger == "balanced":
            self._analytics.pairs_completed += 1
            if pair.spread.opportunity_id:
                self._analytics.captured.add(pair.spread.opportunity_id)
            self._analytics.expected_pnl += pair.spread.expected_pnl
            for slip in pair.view().slippage_bps:
                if slip is not None:
                    self._analytics.slippage_bps.append(slip)
        self._analytics.realized_pnl += pair.realized_pnl
        # Refresh the cached balances while the pair still holds its reservation, so no confirm in
        # between sees the funds twice (reserved and not yet spent in the cache) or not at all.
        await self._after_terminal(pair)
        await self.transition(pair, trigger)

    def exposures(self, pair: Pair) -> tuple[Exposure, ...]:
        """What ``pair`` holds that nothing flattened: per entry leg, its excess over the other, plus
        what a leg still live that adds to it may yet fill."""
        exposures = []
        for i, entry in enumerate(pair.entries):
            other = pair.effective(1 - i)
            mine = pair.effective(i)
            # A leg still live that ADDS to this side (entry, completion) may add up to its remainder;
            # a live unwind can only reduce the excess, which is already counted in full. A NOT_FOUND
            # leg counts as nothing filled: if it fills late, the watch recomputes the exposure.
            unknown = [
                leg for leg in pair.legs if leg.target == i and not leg.settled and leg.role is not LegRole.UNWIND
            ]
            if mine > other or unknown:
                qty = mine - other if mine > other else ZERO
                qty += sum((leg.request.quantity - leg.filled for leg in unknown), ZERO)
                if qty > 0:
                    exposures.append(Exposure(entry.request.venue, entry.request.market, entry.request.side, qty))
        return tuple(exposures)

    async def broken(self, pair: Pair, reason: str) -> None:
        pair.exposure = self.exposures(pair)
        trigger = "exhausted" if pair.state is PairState.UNWINDING else "outcome_unknown"
        await self._after_terminal(pair)
        await self.transition(pair, trigger, reason=reason)

    async def fail(self, pair: Pair, exc: BaseException) -> None:
        """An internal error mid-pair: the pair's state is not trusted any more. BROKEN (exposure
        unknown, the operator must look), through the table and into the journal; or ABORTED when
        the journal refused the intent itself (then nothing was sent)."""
        if pair.state.is_terminal:
            return
        if not pair.intent_written:
            reason = f"not sent: the journal refused the intent ({exc})"
            try:
                await self.transition(pair, "intent_refused", reason=reason)
            except Exception:  # the journal is what failed: the event still tells the operator
                log.exception("pair %s: the journal refused its abort too", pair.pair_id)
            return
        pair.exposure = self.exposures(pair)
        try:
            await self._after_terminal(pair)
        except Exception:
            log.exception("pair %s: balance refresh after an internal error failed", pair.pair_id)
        await self.transition(pair, "internal_error", reason=f"internal error: {exc}")

    def reopen(self, pair: Pair) -> None:
        """A late fill re-opens ``pair`` (final until now): the ledger counts it as open again (its
        reservations and exposure), its realized PnL is taken back out of the totals until it is final
        again, and a resolved BROKEN pair is no longer resolved (the new exposure is not dealt with)."""
        self._ledger.reopen(pair)
        if pair.realized_pnl is not None:
            self._analytics.realized_pnl -= pair.realized_pnl  # added again, recomputed, when it is final
        if pair.state is PairState.COMPLETED:
            # It no longer completed as expected: taken back out of the captured figures (its slippage
            # samples stay: those legs did fill at those prices).
            self._analytics.pairs_completed -= 1
            self._analytics.expected_pnl -= pair.spread.expected_pnl
            if pair.spread.opportunity_id:
                self._analytics.captured.discard(pair.spread.opportunity_id)
        pair.resolved = False

    def sweep(self, pair: Pair) -> None:
        """Let the ledger drop ``pair`` if nothing about it can change any more (a watch ended)."""
        self._ledger.sweep((pair,))

    async def _after_terminal(self, pair: Pair) -> None:
        for venue in {leg.request.venue for leg in pair.legs}:
            await self._refresh_balances(venue)

    # --- state changes ---------------------------------------------------------------------------
    async def transition(self, pair: Pair, trigger: str, reason: str | None = None) -> None:
        """Move ``pair`` through the table on ``trigger``; published at once, journaled (awaited).

        The event goes out even when the journal write fails (the operator must see the state),
        and the failure is raised to the caller."""
        previous = pair.state
        pair.state = next_pair_state(previous, trigger)
        if reason is not None:
            pair.reason = reason
        now = self._clock.now_ns()
        view = pair.view()
        try:
            await self._journal.record_pair(view, now, trigger, previous.value)
        finally:
            self._emit(PairStateChanged(now, view, previous))
            self._ledger.sweep((pair,))

    async def leg_transition(self, leg: Leg, trigger: str) -> None:
        previous = leg.state
        leg.state = next_leg_state(previous, trigger)
        now = self._clock.now_ns()
        view = leg.view()
        self._emit(LegUpdated(now, view))
        await self._journal.record_leg(view, leg.idx, leg.target, now, trigger, previous.value)

    # --- reconciliation after a restart ----------------------------------------------------------
    async def reconcile(self, pair: Pair) -> None:
        """Ask the venues what happened to every leg not known to be final, then settle."""
        try:
            resume_unwind = pair.state is PairState.UNWINDING
            if not resume_unwind:
                await self.transition(pair, "restart")  # any unfinished state restarts here
            for leg in pair.legs:
                if leg.state.is_terminal:
                    continue
                if leg.state is LegState.NOT_FOUND:
                    # Settled as nothing filled before the restart: watched again, its window counted
                    # from when it was sent (what arrived meanwhile is seen at the watch's first query).
                    self.watch(leg)
                    continue
                if leg.state is LegState.NEW:
                    # The intent was journaled; whether it was sent is unknown: treat it as sent.
                    await self.leg_transition(leg, "send")
                if leg.state is LegState.SENT:
                    await self.leg_transition(leg, "timeout")
                await self.query_until_known(leg)
            if resume_unwind:
                await self.unwind(pair)
                return
            if any(not leg.settled for leg in pair.legs):
                await self.broken(pair, "reconciliation could not learn a leg's final outcome")
                return
            q0, q1 = pair.effective(0), pair.effective(1)
            if q0 == q1 == 0:
                await self.transition(pair, "nothing_filled", reason="reconciled: nothing filled")
            elif q0 == q1:
                pair.reason = "reconciled: both legs filled"
                await self.finish(pair, "balanced")
            else:
                await self.transition(pair, "imbalanced", reason=f"reconciled: filled {q0} vs {q1}")
                await self.unwind(pair)
        except Exception as exc:
            log.exception("reconciling pair %s failed", pair.pair_id)
            await self.fail(pair, exc)

    # --- collaborators ---------------------------------------------------------------------------
    def book(self, venue: str, market: str) -> OrderBook | None:
        v = self._venues.get(venue)
        return v.book(market) if v is not None else None

    def breaker(self, venue: str, *, failed: bool) -> None:
        breaker = self._breakers[venue]
        if breaker.record(self._clock.now_ns(), failed):
            self._emit(BreakerChanged(self._clock.now_ns(), venue, True, breaker.reason))

    async def with_timeout(self, aw: Awaitable[T], timeout_ns: int) -> T:
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
