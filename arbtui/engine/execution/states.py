"""Leg and pair state machines, as tables.

Every allowed transition is an entry of a ``dict[(state, trigger)] -> state``; anything else raises
:class:`InvalidTransition`. The UI shows ``pair.state``; it never infers it.
"""

from __future__ import annotations

from enum import Enum

from arbtui.domain.execution import PAIR_TERMINAL, LegState, PairState
from arbtui.domain.orders import OrderStatus


class InvalidTransition(Exception):
    def __init__(self, kind: str, state: Enum, trigger: str) -> None:
        super().__init__(f"{kind}: no transition from {state.name} on {trigger!r}")
        self.state = state
        self.trigger = trigger


# Triggers are what the venue told us (the report's status), plus "send", "timeout", "not_found" (every
# status query said "no such order") and "watch_expired" (the late-fill watch saw nothing in its window).
REPORT_TRIGGER = {
    OrderStatus.OPEN: "ack",
    OrderStatus.PARTIALLY_FILLED: "partial_fill",
    OrderStatus.FILLED: "fill",
    OrderStatus.CANCELLED: "cancel",
    OrderStatus.EXPIRED: "expire",
    OrderStatus.REJECTED: "reject",
}

_FROM_LIVE = {
    "ack": LegState.ACKED,
    "partial_fill": LegState.PARTIALLY_FILLED,
    "fill": LegState.FILLED,
    "cancel": LegState.CANCELLED,
    "expire": LegState.EXPIRED,
}

LEG_TRANSITIONS: dict[tuple[LegState, str], LegState] = {
    (LegState.NEW, "send"): LegState.SENT,
    # The first answer can be any final or resting state: an IOC answers filled/expired at once.
    **{(LegState.SENT, t): s for t, s in _FROM_LIVE.items()},
    (LegState.SENT, "reject"): LegState.REJECTED,
    (LegState.SENT, "timeout"): LegState.UNKNOWN,  # no answer: we do not know, so we must ask
    **{(LegState.ACKED, t): s for t, s in _FROM_LIVE.items()},
    (LegState.ACKED, "timeout"): LegState.ACKED,  # a status query that timed out changes nothing
    # A resting order can be partially filled again, then filled, cancelled or expire;
    # "cancel after a partial fill" keeps the fill: a cancel cannot undo one.
    (LegState.PARTIALLY_FILLED, "partial_fill"): LegState.PARTIALLY_FILLED,
    (LegState.PARTIALLY_FILLED, "fill"): LegState.FILLED,
    (LegState.PARTIALLY_FILLED, "cancel"): LegState.CANCELLED,
    (LegState.PARTIALLY_FILLED, "expire"): LegState.EXPIRED,
    (LegState.PARTIALLY_FILLED, "timeout"): LegState.PARTIALLY_FILLED,
    # From UNKNOWN the venue's answer to a status query decides, including a late fill.
    **{(LegState.UNKNOWN, t): s for t, s in _FROM_LIVE.items()},
    (LegState.UNKNOWN, "reject"): LegState.REJECTED,
    (LegState.UNKNOWN, "timeout"): LegState.UNKNOWN,
    # The venue has no order with that id after every retry. That does not prove it never arrived
    # (a request stuck in a queue, a taker order in a matching delay, reaches the book later), so
    # the leg is settled as nothing filled but stays watched (arbtui.engine.execution.watch).
    (LegState.UNKNOWN, "not_found"): LegState.NOT_FOUND,
    # What the venue reports about a watched leg once it shows up decides, a late fill included;
    # a late order found resting is then cancelled, so "ack" too is a way out of NOT_FOUND.
    **{(LegState.NOT_FOUND, t): s for t, s in _FROM_LIVE.items()},
    (LegState.NOT_FOUND, "reject"): LegState.REJECTED,  # refused on arrival (Kraken: deadline elapsed)
    # The watch window ended with the venue still saying "no such order": it never arrived.
    (LegState.NOT_FOUND, "watch_expired"): LegState.REJECTED,
}


PAIR_TRANSITIONS: dict[tuple[PairState, str], PairState] = {
    (PairState.PROPOSED, "confirm"): PairState.CONFIRMED,
    (PairState.CONFIRMED, "dispatch"): PairState.DISPATCHING,
    (PairState.CONFIRMED, "abort"): PairState.ABORTED,  # aborted before anything was sent
    (PairState.DISPATCHING, "balanced"): PairState.COMPLETED,
    (PairState.DISPATCHING, "nothing_filled"): PairState.ABORTED,
    (PairState.DISPATCHING, "imbalanced"): PairState.UNWINDING,
    (PairState.DISPATCHING, "complete_missing"): PairState.COMPLETING,
    (PairState.COMPLETING, "balanced"): PairState.COMPLETED,
    (PairState.COMPLETING, "imbalanced"): PairState.UNWINDING,  # the completion did not fill: unwind
    (PairState.UNWINDING, "flat"): PairState.UNWOUND,
    (PairState.UNWINDING, "exhausted"): PairState.BROKEN,
    # After a restart, the venues' answers decide, exactly as after a dispatch.
    (PairState.RECONCILING, "balanced"): PairState.COMPLETED,
    (PairState.RECONCILING, "nothing_filled"): PairState.ABORTED,
    (PairState.RECONCILING, "imbalanced"): PairState.UNWINDING,
    # A leg whose outcome stays unknown after every status query: the position cannot be known,
    # so nothing is sent to flatten it; the operator must look (exposure shown, market blocked).
    (PairState.DISPATCHING, "outcome_unknown"): PairState.BROKEN,
    (PairState.COMPLETING, "outcome_unknown"): PairState.BROKEN,
    (PairState.RECONCILING, "outcome_unknown"): PairState.BROKEN,
    (PairState.UNWINDING, "outcome_unknown"): PairState.BROKEN,
    # An internal error mid-pair: same reasoning, the state is not trusted any more.
    **{(s, "outcome_unknown"): PairState.BROKEN for s in (PairState.PROPOSED, PairState.CONFIRMED)},
    # An internal error (an exception in the pair's own code) from any state not final: BROKEN, so the
    # operator looks; the exposure shown is what the legs' known fills and live remainders allow.
    **{
        (s, "internal_error"): PairState.BROKEN
        for s in (
            PairState.PROPOSED,
            PairState.CONFIRMED,
            PairState.DISPATCHING,
            PairState.COMPLETING,
            PairState.UNWINDING,
            PairState.RECONCILING,
        )
    },
    # The journal refused the intent: nothing was sent (the intent is written before any send).
    (PairState.CONFIRMED, "intent_refused"): PairState.ABORTED,
    # Found unfinished at start-up: the venues are asked what happened (UNWINDING resumes its unwind
    # instead, so it has no "restart").
    **{
        (s, "restart"): PairState.RECONCILING
        for s in (PairState.PROPOSED, PairState.CONFIRMED, PairState.DISPATCHING, PairState.COMPLETING)
    },
    (PairState.RECONCILING, "restart"): PairState.RECONCILING,  # restarted again while reconciling
    # A leg settled as NOT_FOUND (nothing filled) filled after all: a final pair is re-opened to
    # flatten the new excess. A BROKEN pair is the operator's already: it stays BROKEN, its exposure
    # recomputed. Surprising on purpose: these are the only edges out of a final state.
    **{(s, "late_fill"): PairState.UNWINDING for s in (PairState.COMPLETED, PairState.ABORTED, PairState.UNWOUND)},
    (PairState.BROKEN, "late_fill"): PairState.BROKEN,
    # A late order that cannot be made final (its cancel unanswered): the position is unknown.
    **{(s, "late_fill_unknown"): PairState.BROKEN for s in PAIR_TERMINAL},
}

# Pairs found in these states at start-up are reconciled; UNWINDING resumes its unwind.
RESUMABLE = frozenset(
    {
        PairState.PROPOSED,
        PairState.CONFIRMED,
        PairState.DISPATCHING,
        PairState.COMPLETING,
        PairState.RECONCILING,
        PairState.UNWINDING,
    }
)


def next_leg_state(state: LegState, trigger: str) -> LegState:
    try:
        return LEG_TRANSITIONS[(state, trigger)]
    except KeyError:
        raise InvalidTransition("leg", state, trigger) from None


def next_pair_state(state: PairState, trigger: str) -> PairState:
    try:
        return PAIR_TRANSITIONS[(state, trigger)]
    except KeyError:
        raise InvalidTransition("pair", state, trigger) from None
