"""Execution values: leg and pair states, frozen views of legs and pairs, and execution events.

The transition tables live in :mod:`arbtui.engine.states`; these are the values events carry.
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
    opportunity_id: str
    code: str  # a stable reason code: EDGE_GONE, BOOK_STALE, MAX_NOTIONAL, ...
    detail: str


@dataclass(frozen=True, slots=True)
class LegSimulation:
    venue: str
    market: str
    side: Side
    quantity: Decimal  # what the book can fill now
    vwap: Decimal | None
    limit_price: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What confirming an opportunity would do now; nothing is sent."""

    opportunity_id: str
    spread: Spread
    legs: tuple[LegSimulation, LegSimulation]
    fees: Decimal
    expected_pnl: Decimal
    worst_case_first_fails: Decimal  # PnL if leg 1 fails and leg 2 is unwound at the opposite side now
    worst_case_second_fails: Decimal
    refusal: str | None  # the reason code confirm() would refuse with, if any

    @property
    def worst_case(self) -> Decimal:
        return min(self.worst_case_first_fails, self.worst_case_second_fails)


@dataclass(frozen=True, slots=True)
class SimulationCompleted(Event):
    result: SimulationResult


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
    action: str  # confirm, abort, simulate, kill, resume, arm, disarm, reset_breaker, resolve
    target: str
    detail: str = ""
