"""The UI bridge: folds engine events into latest-wins view state, which panes read when they
are flushed (10-20 times a second), never once per event (STYLE.md rule 9).

The bridge is a plain object subscribed to the engine's event stream; it does no rendering and
keeps only what the panes need: the latest view of every spread, which books changed, venue
statuses and feed rates.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from arbtui.domain.clock import NS_PER_S
from arbtui.domain.events import (
    BookUpdated,
    DetectionPaused,
    EngineStopped,
    Event,
    OpportunityDetected,
    OpportunityExpired,
    OpportunityUpdated,
    Spread,
    SpreadChanged,
    VenueStatus,
    VenueStatusChanged,
)
from arbtui.domain.execution import (
    ArmedChanged,
    BreakerChanged,
    ConfirmRefused,
    KillSwitchChanged,
    LegState,
    LegUpdated,
    PairState,
    PairStateChanged,
)
from arbtui.ui.formatting import clock_text

RATE_WINDOW_NS = 2 * NS_PER_S


@dataclass
class VenueView:
    status: VenueStatus = VenueStatus.CLOSED
    detail: str = ""
    # BookUpdated times; those before ``start`` have left the rate window. A list and an index
    # rather than a deque: under a busy feed (thousands of updates a second) the window's edge is
    # found by bisection instead of popping every old time one by one on every redraw.
    updates: list[int] = field(default_factory=list)
    start: int = 0
    in_order: bool = True  # times never went back (a replay restarting makes them go back)

    def note_update(self, ts_ns: int) -> None:
        updates = self.updates
        if updates and ts_ns < updates[-1]:
            self.in_order = False
        updates.append(ts_ns)

    def rate(self, now_ns: int) -> float:
        """Book updates per second over the last two seconds of engine time."""
        updates, cutoff = self.updates, now_ns - RATE_WINDOW_NS
        if self.in_order:
            self.start = bisect_right(updates, cutoff, self.start)
        else:  # as a queue: drop from the front while the oldest time has left the window
            while self.start < len(updates) and updates[self.start] <= cutoff:
                self.start += 1
        if self.start > 4096 and self.start * 2 > len(updates):
            del updates[: self.start]
            self.start = 0
            if not self.in_order:  # the times that went back may have left with the prefix
                self.in_order = all(a <= b for a, b in zip(updates, updates[1:], strict=False))
        return (len(updates) - self.start) * NS_PER_S / RATE_WINDOW_NS


class UIBridge:
    """Latest-wins view state, with dirty flags the flush reads and clears."""

    def __init__(self, venues: list[str]) -> None:
        self.spreads: dict[str, Spread] = {}
        self.venues: dict[str, VenueView] = {v: VenueView() for v in venues}
        self.dirty_books: set[tuple[str, str]] = set()
        self.spreads_dirty = False
        self.status_dirty = True
        self.last_notable = ""
        self.notable_style = ""
        self.events_seen = 0
        self.stopped_reason: str | None = None
        self.dirty_pairs: set[str] = set()
        self.armed = False
        self.halted = False
        self.paused = False
        self.tripped: dict[str, str] = {}  # venue -> reason

    def on_event(self, event: Event) -> None:
        self.events_seen += 1
        if type(event) is BookUpdated or isinstance(event, BookUpdated):  # one a frame: kept short
            venue = event.venue
            self.dirty_books.add((venue, event.market))
            view = self.venues.get(venue)
            if view is not None:  # VenueView.note_update, inlined (this runs on the engine's path)
                updates, ts = view.updates, event.ts_ns
                if updates and ts < updates[-1]:
                    view.in_order = False
                updates.append(ts)
        elif isinstance(event, (SpreadChanged, OpportunityUpdated)):
            self.spreads[event.spread.key] = event.spread
            self.spreads_dirty = True
        elif isinstance(event, OpportunityDetected):
            self.spreads[event.spread.key] = event.spread
            self.spreads_dirty = True
            s = event.spread
            self.last_notable = (
                f"{clock_text(event.ts_ns)}  {s.opportunity_id} detected: {s.key}, "
                f"net {s.net_bps:+} bp, expected PnL {s.expected_pnl:+.2f}"
            )
        elif isinstance(event, OpportunityExpired):
            self.spreads[event.spread.key] = event.spread
            self.spreads_dirty = True
            self.last_notable = f"{clock_text(event.ts_ns)}  {event.opportunity_id} expired: {event.reason}"
        elif isinstance(event, VenueStatusChanged):
            view = self.venues.setdefault(event.venue, VenueView())
            view.status = event.status
            view.detail = event.detail
            self.status_dirty = True
            if event.status in (VenueStatus.STALE, VenueStatus.ERROR):
                self.last_notable = (
                    f"{clock_text(event.ts_ns)}  {event.venue}: {event.status.value} {event.detail}".strip()
                )
        elif isinstance(event, EngineStopped):
            self.stopped_reason = event.reason
            self.status_dirty = True
        elif isinstance(event, PairStateChanged):
            self.dirty_pairs.add(event.pair.pair_id)
            p = event.pair
            if p.state in (PairState.UNWINDING, PairState.UNWOUND, PairState.BROKEN, PairState.ABORTED):
                self._notable(
                    event.ts_ns,
                    f"{p.pair_id} {p.state.value.upper()}: {p.reason or p.key}",
                    "error" if p.state is PairState.BROKEN else "warning",
                )
            elif p.state is PairState.COMPLETED:
                self._notable(event.ts_ns, f"{p.pair_id} COMPLETED {p.key}: realized {p.realized_pnl:+.2f}", "success")
        elif isinstance(event, LegUpdated):
            self.dirty_pairs.add(event.leg.pair_id)
            leg = event.leg
            if leg.state is LegState.REJECTED:
                self._notable(
                    event.ts_ns, f"{leg.pair_id} {leg.venue} {leg.side.value} rejected: {leg.reason}", "warning"
                )
            elif leg.state is LegState.UNKNOWN:
                self._notable(event.ts_ns, f"{leg.pair_id} {leg.venue} no answer: asking by client order id", "warning")
            elif leg.state is LegState.NOT_FOUND:
                self._notable(
                    event.ts_ns, f"{leg.pair_id} {leg.venue} order not found: watched for a late arrival", "warning"
                )
        elif isinstance(event, BreakerChanged):
            if event.tripped:
                self.tripped[event.venue] = event.reason
                self._notable(event.ts_ns, f"breaker TRIPPED on {event.venue}: {event.reason}", "error")
            else:
                self.tripped.pop(event.venue, None)
                self._notable(event.ts_ns, f"breaker reset on {event.venue}", "")
            self.status_dirty = True
        elif isinstance(event, KillSwitchChanged):
            self.halted = event.engaged
            self._notable(
                event.ts_ns,
                f"KILL SWITCH {'ENGAGED' if event.engaged else 'released'}: {event.detail}",
                "error" if event.engaged else "",
            )
            self.status_dirty = True
        elif isinstance(event, ArmedChanged):
            self.armed = event.armed
            self._notable(
                event.ts_ns,
                "ARMED: the engine confirms by itself" if event.armed else "SAFE: disarmed",
                "warning" if event.armed else "",
            )
            self.status_dirty = True
        elif isinstance(event, ConfirmRefused):
            self._notable(event.ts_ns, f"refused {event.target}: {event.code}: {event.detail}", "warning")
        elif isinstance(event, DetectionPaused):
            self.paused = event.paused
            self._notable(event.ts_ns, "detection PAUSED" if event.paused else "detection resumed", "")
            self.status_dirty = True

    def note_local(self, text: str, style: str = "") -> None:
        """A notable line from the console itself (a cancelled confirm, a sent pair)."""
        self.last_notable = text
        self.notable_style = style

    def _notable(self, ts_ns: int, text: str, style: str) -> None:
        self.last_notable = f"{clock_text(ts_ns)}  {text}"
        self.notable_style = style

    def take_dirty_pairs(self) -> set[str]:
        dirty, self.dirty_pairs = self.dirty_pairs, set()
        return dirty

    def take_dirty_books(self) -> set[tuple[str, str]]:
        dirty, self.dirty_books = self.dirty_books, set()
        return dirty
