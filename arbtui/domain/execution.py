"""Execution values: leg and pair states, frozen views of legs and pairs, and execution events.

The transition tables live in :mod:`arbtui.engine.execution.states`; these are the values events carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from arbtui.domain.events import Event, Spread
from arbtui.domain.orders import Side, TimeInForce


class LegState(Enum):
    NEW = "new"
    SENT = "sent"
    ACKED = "acked"  # resting, nothing filled
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # IOC/FOK remainder expired (possibly after a partial fill)
    UNKNOWN = "unknown"  # timeout or transport error: NOT a rejection; the venue must be asked
    # Every status query said "no such order". Settled as nothing filled, but not final: a late
    # arrival may still execute, so the late-fill watch keeps asking (it ends REJECTED if nothing
    # shows up within its window, or takes whatever state the venue then reports).
    NOT_FOUND = "not_found"

    @property
    def is_terminal(self) -> bool:
        return self in LEG_TERMINAL


LEG_TERMINAL = frozenset({LegState.FILLED, LegState.REJECTED, LegState.CANCELLED, LegState.EXPIRED})


class PairState(Enum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"  # validated and journaled; requests built
    DISPATCHING = "dispatching"  # both legs sent, answers pending
    COMPLETING = "completing"  # (optional policy) sending the missing quantity of the short leg
    COMPLETED = "completed"  # both legs filled in equal quantity
    UNWINDING = "unwinding"  # an imbalance is being flattened on the venue that holds it
    UNWOUND = "unwound"  # flat again; the loss (or gain) is recorded
    BROKEN = "broken"  # exposure remains after every unwind attempt: the operator must act
    ABORTED = "aborted"  # nothing filled on either leg (refused by a venue, expired, or aborted)
    RECONCILING = "reconciling"  # found unfinished at start-up; asking the venues what happened

    @property
    def is_terminal(self) -> bool:
        return self in PAIR_TERMINAL


PAIR_TERMINAL = frozenset({PairState.COMPLETED, PairState.UNWOUND, PairState.BROKEN, PairState.ABORTED})


class LegRole(Enum):
    ENTRY = "entry"  # one of the two legs of the pair
    UNWIND = "unwind"  # flattens an imbalance on the venue that holds it
    COMPLETE = "complete"  # (optional policy) sends the missing quantity of the short leg


@dataclass(frozen=True, slots=True)
class LegView:
    client_order_id: str
    pair_id: str
    role: LegRole
    venue: str
    market: str
    side: Side
    quantity: Decimal
    limit_price: Decimal
    time_in_force: TimeInForce
    state: LegState
    filled: Decimal
    average_price: Decimal | None
    fee: Decimal
    sent_ns: int | None
    answered_ns: int | None  # first answer from the venue (ack, fill or reject)
    reason: str | None

    @property
    def ack_latency_ns(self) -> int | None:
        if self.sent_ns is None or self.answered_ns is None:
            return None
        return self.answered_ns - self.sent_ns


@dataclass(frozen=True, slots=True)
class Exposure:
    """Inventory left by a pair that could not be flattened: what the operator must deal with."""

    venue: str
    market: str
    side: Side  # the side of the position held: BUY = long, SELL = short
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class PairView:
    pair_id: str
    opportunity_id: str
    key: str
    group: str
    state: PairState
    legs: tuple[LegView, ...]  # entry legs first, then unwind/completion legs in order
    expected_pnl: Decimal
    realized_pnl: Decimal | None
    exposure: tuple[Exposure, ...]
    created_ns: int
    confirm_to_sent_ns: int | None  # confirm() until the later of the two entry legs was sent
    leg_skew_ns: int | None  # difference between the two entry legs' send times
    reason: str | None
    resolved: bool = False  # a BROKEN pair the operator has resolved
    slippage_bps: tuple[Decimal | None, ...] = ()  # per entry leg: average vs the detector's VWAP, + = worse
    quote_id: str | None = None  # the quote the operator (or ARMED mode) confirmed

    @property
    def entry_legs(self) -> tuple[LegView, ...]:
        return tuple(leg for leg in self.legs if leg.role is LegRole.ENTRY)


@dataclass(frozen=True, slots=True)
class PairStateChanged(Event):
    pair: PairView
    previous: PairState | None


@dataclass(frozen=True, slots=True)
class LegUpdated(Event):
    leg: LegView


@dataclass(frozen=True, slots=True)
class ConfirmRefused(Event):
    target: str  # the quote id (or, for a quote that could not be made, the opportunity id)
    code: str  # a stable reason code: EDGE_GONE, QUOTE_EXPIRED, BOOK_STALE, MAX_NOTIONAL, ...
    detail: str  # what the operator needs: the figures now against the quote's


@dataclass(frozen=True, slots=True)
class QuoteLeg:
    """One leg exactly as a confirm of its quote would send it (or less, never more, never worse)."""

    venue: str
    market: str
    side: Side
    quantity: Decimal  # the quantity that is sent
    limit_price: Decimal  # the IOC limit that is sent: the worst price this leg may fill at
    vwap: Decimal | None  # the average price the books give this quantity now, within the limit
    fee: Decimal  # the taker fee at that VWAP
    book_fills: Decimal  # how much the book holds within the limit now (>= quantity when quoted)

    @property
    def notional(self) -> Decimal:
        """The leg's expected notional (quantity at its VWAP)."""
        return self.quantity * self.vwap if self.vwap is not None else self.quantity * self.limit_price

    @property
    def notional_at_limit(self) -> Decimal:
        """The most a buy can cost (or the least a sell can raise) at its limit price."""
        return self.quantity * self.limit_price


@dataclass(frozen=True, slots=True)
class Quote:
    """What the operator is shown and approves: both legs, fees, expected PnL and the worst case.

    ``confirm(quote_id)`` sends exactly these legs or less: never a larger quantity, never a worse
    limit. It re-checks the books at these limits first, refuses once the quote has expired, and a
    quote is sent at most once. ``simulate`` shows one too (its ``purpose`` says which).
    """

    quote_id: str
    purpose: str  # "confirm" (the confirm modal), "simulate", or "armed" (ARMED mode)
    opportunity_id: str | None  # None: the spread did not pay when quoted (a simulation of a row)
    spread: Spread  # the detector's spread the quote was made from (key, kind, group, buffer)
    legs: tuple[QuoteLeg, QuoteLeg]
    fees: Decimal
    pnl_before_buffer: Decimal  # at the quoted VWAPs, fees included
    expected_pnl: Decimal  # after the slippage buffer (what the detector calls expected PnL)
    net_bps: Decimal
    worst_case_first_fails: Decimal  # PnL if leg 1 fails and leg 2 is unwound at the opposite side now
    worst_case_second_fails: Decimal
    created_ns: int
    expires_ns: int
    refusal: str | None  # the reason code confirm() would refuse with now, if any
    refusal_detail: str = ""

    @property
    def quantity(self) -> Decimal:
        return self.legs[0].quantity

    @property
    def worst_case(self) -> Decimal:
        return min(self.worst_case_first_fails, self.worst_case_second_fails)

    @property
    def sendable(self) -> bool:
        return self.opportunity_id is not None and self.refusal is None and self.quantity > 0


@dataclass(frozen=True, slots=True)
class QuoteIssued(Event):
    """A quote was made (the confirm modal opened on it, a simulation, or ARMED mode)."""

    quote: Quote


@dataclass(frozen=True, slots=True)
class SimulationCompleted(Event):
    quote: Quote


@dataclass(frozen=True, slots=True)
class KillSwitchChanged(Event):
    engaged: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ArmedChanged(Event):
    armed: bool


@dataclass(frozen=True, slots=True)
class BreakerChanged(Event):
    venue: str
    tripped: bool
    reason: str


@dataclass(frozen=True, slots=True)
class OperatorAction(Event):
    # quote (a confirm modal opened), confirm, confirm_cancel (the modal answered no), simulate, abort,
    # kill, resume, arm, disarm, reset_breaker, resolve
    action: str
    target: str
    detail: str = ""
