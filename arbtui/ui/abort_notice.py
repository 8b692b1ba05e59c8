"""What an abort can really do to a pair, told to the operator from the pair's published view.

An abort cancels what *rests* on a venue and lets the unwind flatten what filled. It cannot recall
an IOC or FOK leg already on its way: the venue fills what it can at once and the rest expires,
whatever arbtui asks meanwhile. So the console must not say "abort requested" as if something was
cancelled when nothing could be: it says which legs are cancelled, which cannot be recalled, and
that a pair already final has nothing left to abort.

Decided from :class:`~arbtui.domain.execution.PairView` alone (states and time in force), taken
just before the abort was asked for; the engine's answer (``abort`` returns False for a pair
already final) is the authority on finality.
"""

from __future__ import annotations

from dataclasses import dataclass

from arbtui.domain.execution import LegRole, LegState, LegView, PairState, PairView
from arbtui.domain.orders import TimeInForce

# A leg in one of these states sits on the venue's book: a cancel can take it back.
_RESTING = frozenset({LegState.ACKED, LegState.PARTIALLY_FILLED})
# Sent, no final answer yet (or the answer was lost and the venue is being asked, or it said it has no
# such order and the leg is watched for a late arrival: nothing to cancel until it shows up).
_OUT = frozenset({LegState.SENT, LegState.UNKNOWN, LegState.NOT_FOUND})
_ROLE = {LegRole.ENTRY: "entry leg", LegRole.UNWIND: "unwind order", LegRole.COMPLETE: "completion order"}


@dataclass(frozen=True, slots=True)
class AbortNotice:
    text: str
    effective: bool  # the abort takes something back (a resting leg, legs not yet sent)


def _leg(leg: LegView) -> str:
    return f"{leg.venue} {leg.side.value}"


def _tif(legs: list[LegView]) -> str:
    kinds = sorted({leg.time_in_force.value.upper() for leg in legs})
    return "/".join(kinds)


def describe_abort(pair_id: str, view: PairView | None, accepted: bool) -> AbortNotice:
    """The toast (and event-strip line) for aborting ``pair_id``.

    ``view`` is the pair as it was when the abort was asked for (its latest view if the engine
    refused); ``accepted`` is what ``engine.abort`` answered.
    """
    if view is None:
        return AbortNotice(f"{pair_id}: no such pair; nothing to abort", effective=False)
    if not accepted or view.state.is_terminal:
        text = f"{pair_id} is already final ({view.state.value.upper()}): nothing to abort"
        if view.state is PairState.BROKEN and not view.resolved:
            text += "; its exposure stays until you flatten it by hand and resolve it (palette)"
        return AbortNotice(text, effective=False)

    open_legs = [leg for leg in view.legs if not leg.state.is_terminal]
    resting = [leg for leg in open_legs if leg.state in _RESTING]
    unsent = [leg for leg in open_legs if leg.state is LegState.NEW]
    out = [leg for leg in open_legs if leg.state in _OUT]
    # A GTC leg still unanswered is cancelled once its answer shows it resting; IOC/FOK never rest.
    awaited = [leg for leg in out if leg.time_in_force is TimeInForce.GTC]
    gone = [leg for leg in out if leg.time_in_force is not TimeInForce.GTC]
    entries_gone = [leg for leg in gone if leg.role is LegRole.ENTRY]

    if unsent and len(unsent) == len(open_legs) and view.state in (PairState.PROPOSED, PairState.CONFIRMED):
        return AbortNotice(f"{pair_id}: aborted before its legs were sent; nothing has left arbtui", effective=True)

    if not resting and not awaited and not unsent:
        if gone and len(entries_gone) == len(gone) == 2:
            return AbortNotice(
                f"{pair_id}: both {_tif(gone)} legs are already out and cannot be recalled; "
                "any imbalance will be unwound",
                effective=False,
            )
        if gone and len(entries_gone) == len(gone):
            (leg,) = gone
            return AbortNotice(
                f"{pair_id}: the {_leg(leg)} {_tif(gone)} leg is already out and cannot be recalled; "
                "any imbalance will be unwound",
                effective=False,
            )
        if gone:
            roles = " and ".join(sorted({_ROLE[leg.role] for leg in gone}))
            return AbortNotice(
                f"{pair_id}: the {roles} ({', '.join(_leg(leg) for leg in gone)}, {_tif(gone)}) is already "
                "out and cannot be recalled; the pair goes on until flat",
                effective=False,
            )
        if view.state is PairState.UNWINDING:
            return AbortNotice(
                f"{pair_id} is already unwinding: nothing rests to cancel; the unwind goes on until flat",
                effective=False,
            )
        return AbortNotice(
            f"{pair_id}: nothing rests to cancel (every leg has its answer); any imbalance will be unwound",
            effective=False,
        )

    parts: list[str] = []
    if resting:
        parts.append(f"cancelling {', '.join(_leg(leg) for leg in resting)} (resting)")
    if awaited:
        parts.append(f"{', '.join(_leg(leg) for leg in awaited)} cancelled if it rests once answered")
    if gone:
        parts.append(f"{', '.join(_leg(leg) for leg in gone)} ({_tif(gone)}) already out: cannot be recalled")
    if unsent:
        parts.append(f"{', '.join(_leg(leg) for leg in unsent)} not sent yet")
    # Effective only if something is really taken back: an unsent leg may still leave (the
    # executor decides), and an IOC leg out cannot be recalled.
    effective = bool(resting or awaited)
    return AbortNotice(f"{pair_id} abort: {'; '.join(parts)}; any imbalance will be unwound", effective=effective)
