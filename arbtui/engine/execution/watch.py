"""The late-fill watch: a leg the venue said it never received is not forgotten.

"Not found" at every status query does not prove an order never arrived: a request stuck in a queue,
or a taker order held in a venue's matching delay, reaches the book later and executes. So a leg
whose queries all answered :class:`~arbtui.venues.base.UnknownOrder` goes to NOT_FOUND (settled as
nothing filled, so its pair can settle) and is watched:

- its venue is asked again by client order id (Polymarket: by the order hash its connector keeps),
  with backoff on the engine clock, for ``[execution] late_fill_watch_s`` from the moment it was sent,
  or less where the venue itself refuses a late order (Kraken's ``deadline``:
  :func:`arrival_deadline_s`, plus :data:`ARRIVAL_SKEW_S` for the two clocks);
- an order that appears resting is cancelled (an arbitrage leg must not outlive its pair); what the
  venue reports, fills first, is applied and journaled;
- a fill re-opens the pair, even one that has settled (ABORTED, COMPLETED, UNWOUND): "late_fill" takes
  it to UNWINDING, and the pair process's unwind flattens the new excess (UNWOUND) or leaves it BROKEN
  with the exposure shown. A BROKEN pair (the operator's already) stays BROKEN with its exposure
  recomputed; a late order that cannot be made final (its cancel unanswered) makes the pair BROKEN;
- a window that ends with nothing found ends the leg: "watch_expired" -> REJECTED, "never arrived
  (watched N s)". The venue is asked at least once, even when the window has passed already (a leg
  watched again after a restart: what arrived while the engine was down is seen).

A re-opened pair counts in the risk ledger again (:meth:`PairProcess.reopen`), and once a watch ends
the ledger may drop a pair that can no longer change (:meth:`PairProcess.sweep`).

Every change goes through the state tables (:mod:`arbtui.engine.execution.states`) and the pair
process's transitions, so it reaches the journal and the event stream. The watch owns its tasks
(named, with a done callback); they are not pair tasks, so waiting for pairs to settle does not wait
for a watch window, and :meth:`LateFillWatch.close` stops them with the engine.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from arbtui.config import ExecutionConfig
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, Clock
from arbtui.domain.execution import LegState, PairState
from arbtui.domain.money import ZERO
from arbtui.domain.orders import OrderReport
from arbtui.engine.execution.model import Leg, Pair, believable
from arbtui.engine.execution.states import REPORT_TRIGGER
from arbtui.venues.base import UnknownOrder, Venue, VenueError

if TYPE_CHECKING:
    from arbtui.engine.execution.process import PairProcess

log = logging.getLogger(__name__)

ARRIVAL_SKEW_S = 5.0  # a venue's own arrival deadline is its clock's: allow this much difference
MAX_BACKOFF_NS = 5 * NS_PER_S  # queries at least this often once the backoff has grown
SETTLE_POLL_NS = 50 * NS_PER_MS  # how often a late fill waits for its pair's own process to finish


def arrival_deadline_s(venue: Venue) -> float | None:
    """How long after sending the venue may still take an order, when the venue itself refuses later
    arrivals (Kraken: the AddOrder ``deadline``), else None. Read from the venue's trader, through the
    session recorder's wrapper if there is one; no venue is named here."""
    inner = getattr(venue, "inner", venue)
    trader = getattr(inner, "trader", None)
    bound = getattr(trader, "arrival_deadline_s", None)
    return float(bound) if isinstance(bound, int | float) else None  # float ok: a duration


class LateFillWatch:
    """Watches NOT_FOUND legs for a late arrival (see the module docstring)."""

    def __init__(
        self,
        execution: ExecutionConfig,
        clock: Clock,
        venues: Mapping[str, Venue],
        process: PairProcess,
        pair_of: Callable[[str], Pair | None],
    ) -> None:
        self._ex = execution
        self._clock = clock
        self._venues = venues
        self._process = process
        self._pair_of = pair_of
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def watching(self) -> frozenset[str]:
        """Client order ids of the legs being watched now."""
        return frozenset(self._tasks)

    def window_ns(self, leg: Leg) -> int:
        """How long after its send ``leg`` is watched."""
        window = self._ex.late_fill_watch_s * NS_PER_S
        bound = arrival_deadline_s(self._venues[leg.request.venue])
        if bound is not None:
            window = min(window, int((bound + ARRIVAL_SKEW_S) * NS_PER_S))
        return window

    def watch(self, leg: Leg) -> None:
        """Start watching ``leg`` (just moved to NOT_FOUND). Synchronous: the caller carries on."""
        if leg.cid in self._tasks or leg.state is not LegState.NOT_FOUND:
            return
        task = asyncio.get_running_loop().create_task(self._watch(leg), name=f"late-fill-watch-{leg.cid}")
        self._tasks[leg.cid] = task
        task.add_done_callback(functools.partial(self._done, leg.cid))

    def _done(self, cid: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(cid, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("late-fill watch of %s failed", cid, exc_info=task.exception())

    async def close(self) -> None:
        """Stop every watch (the engine is stopping; a NOT_FOUND leg stays so in the journal)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self) -> None:
        """Wait until no leg is watched (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # --- one leg ---------------------------------------------------------------------------------
    async def _watch(self, leg: Leg) -> None:
        pair = self._pair_of(leg.pair_id)
        try:
            report = await self._look(leg)
            if report is None:
                seconds = self.window_ns(leg) / NS_PER_S  # float ok: a duration for the reason text
                leg.reason = f"never arrived (watched {seconds:g} s)"
                await self._process.leg_transition(leg, "watch_expired")
            else:
                await self._arrived(leg, report)
                if pair is not None and (leg.filled > 0 or not leg.state.is_terminal):
                    await self._reopen(pair, leg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("late-fill watch of %s failed", leg.cid)
            if pair is None:
                return
            if not pair.state.is_terminal:
                await self._process.fail(pair, exc)
            else:
                # Whether the order arrived is not known any more: the operator must look.
                pair.exposure = self._process.exposures(pair)
                self._process.reopen(pair)
                await self._process.transition(
                    pair, "late_fill_unknown", reason=f"late-fill watch of {leg.cid} failed: {exc}"
                )
            return
        if pair is not None:
            self._process.sweep(pair)

    async def _look(self, leg: Leg) -> OrderReport | None:
        """Ask the venue about ``leg`` until it shows the order or the window ends (None)."""
        venue = self._venues[leg.request.venue]
        start = leg.sent_ns if leg.sent_ns is not None else self._clock.now_ns()
        end = start + self.window_ns(leg)
        delay = max(1, self._ex.status_backoff_ms) * NS_PER_MS
        timeout = self._ex.order_timeout_ms * NS_PER_MS
        asked = False
        while True:
            now = self._clock.now_ns()
            if now >= end and asked:
                return None
            await self._clock.sleep(min(delay, max(0, end - now)))
            asked = True
            delay = min(delay * 2, MAX_BACKOFF_NS)
            try:
                report = await self._process.with_timeout(venue.order_status(leg.cid), timeout)
            except UnknownOrder:
                continue
            except (TimeoutError, VenueError) as exc:
                log.info("late-fill watch of %s: status query failed: %s", leg.cid, exc)
                continue
            if believable(leg, report):
                return report

    async def _arrived(self, leg: Leg, report: OrderReport) -> None:
        """The order exists after all: apply what the venue says (fills journaled first), then cancel
        what rests and see it final."""
        log.warning(
            "%s: order %s arrived late: %s, filled %s",
            leg.request.venue,
            leg.cid,
            report.status.value,
            report.filled_quantity,
        )
        leg.filled = report.filled_quantity
        leg.notional = (report.average_price or ZERO) * report.filled_quantity
        leg.fee = report.fee
        leg.reason = f"arrived late ({report.status.value})" + (f": {report.reason}" if report.reason else "")
        if leg.answered_ns is None:
            leg.answered_ns = self._clock.now_ns()
        await self._process.record_new_fills(leg, report)
        await self._process.leg_transition(leg, REPORT_TRIGGER[report.status])
        if not leg.state.is_terminal:
            # Resting (or still matching): an arbitrage leg must not outlive its pair. The cancel's
            # answer is applied (a fill may come first) and the leg asked about until it is final.
            await self._process.cancel(leg)

    async def _reopen(self, pair: Pair, leg: Leg) -> None:
        """A late fill (or a late order not final): re-open ``pair`` once its own process is done."""
        while not pair.state.is_terminal:
            await self._clock.sleep(SETTLE_POLL_NS)  # its settle or unwind sees the new fill itself
        balanced = pair.effective(0) == pair.effective(1)
        final = all(other.settled for other in pair.legs)  # another leg still watched is nothing filled
        if balanced and final and pair.state is not PairState.BROKEN:
            return  # the pair's own process already accounted for it (or the fill balanced it)
        # A BROKEN pair is always told: its exposure shown must be recomputed, even if now flat.
        what = f"{leg.request.venue} {leg.cid} filled {leg.filled} after every query said it was not there"
        self._process.reopen(pair)  # counts in the risk ledger again, before anything more is sent
        if not final:
            pair.exposure = self._process.exposures(pair)
            await self._process.transition(pair, "late_fill_unknown", reason=f"late order not final: {what}")
            return
        if pair.state is PairState.BROKEN:
            pair.exposure = self._process.exposures(pair)
            await self._process.transition(pair, "late_fill", reason=f"late fill: {what}; exposure updated")
            return
        await self._process.transition(pair, "late_fill", reason=f"late fill: {what}; unwinding the excess")
        await self._process.unwind(pair)
