"""Engine events: frozen, typed, past tense, each stamped ``ts_ns`` by the injected clock.

The UI, the recorder and the tests consume these; none of them reaches into engine state to
learn what happened. Commands (``confirm``, ``abort``, ...) are methods on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from arbtui.domain.orders import Side


class VenueStatus(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    STALE = "stale"  # connected, but no market data for longer than the stale limit
    ERROR = "error"
    CLOSED = "closed"


class SpreadKind(Enum):
    CROSS_VENUE = "cross"  # buy on one venue, sell the same market on another
    COMPLEMENT = "complement"  # buy YES and NO of one binary event for less than the payout


@dataclass(frozen=True, slots=True)
class LegPlan:
    """One leg of a spread as the detector priced it."""

    venue: str
    market: str
    side: Side
    quantity: Decimal
    vwap: Decimal
    limit_price: Decimal  # the worst level the leg must reach: an IOC at this price gets the fill
    fee: Decimal


@dataclass(frozen=True, slots=True)
class Spread:
    """The detector's current view of one directional trade (a row of the spreads pane).

    ``key`` is stable for the life of the engine, e.g. ``"BTC-USD kraken>coinbase"``. When the
    spread pays after fees and slippage it carries an ``opportunity_id`` and ``quantity`` is the
    size that maximises expected profit; when it does not, the figures are those of the best
    level (the touch) so the operator still sees how far from paying it is.
    """

    key: str
    kind: SpreadKind
    group: str  # the market (cross-venue) or event (complement) it belongs to
    legs: tuple[LegPlan, LegPlan]
    quantity: Decimal
    gross_bps: Decimal
    net_bps: Decimal
    fees: Decimal
    slippage: Decimal  # the buffer charged for price moves during execution
    expected_pnl: Decimal
    opportunity_id: str | None
    since_ns: int  # when this opportunity was detected, or this non-paying state began

    @property
    def pays(self) -> bool:
        return self.opportunity_id is not None


@dataclass(frozen=True, slots=True)
class Event:
    ts_ns: int


@dataclass(frozen=True, slots=True)
class BookUpdated(Event):
    venue: str
    market: str
    best_bid: Decimal | None
    best_ask: Decimal | None
    sequence: int


@dataclass(frozen=True, slots=True)
class SpreadChanged(Event):
    """A spread that does not pay was re-priced."""

    spread: Spread


@dataclass(frozen=True, slots=True)
class OpportunityDetected(Event):
    spread: Spread


@dataclass(frozen=True, slots=True)
class OpportunityUpdated(Event):
    spread: Spread


@dataclass(frozen=True, slots=True)
class OpportunityExpired(Event):
    """A paying spread stopped paying; ``spread`` is its new, non-paying view."""

    opportunity_id: str
    spread: Spread
    reason: str


@dataclass(frozen=True, slots=True)
class VenueStatusChanged(Event):
    venue: str
    status: VenueStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EngineStarted(Event):
    mode: str
    venues: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DetectionPaused(Event):
    paused: bool


@dataclass(frozen=True, slots=True)
class EngineStopped(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class BalancesRefreshed(Event):
    """One attempt to read a venue's balances, good or failed.

    ``stale_since_ns`` is None while the venue's balances are fresh; once an attempt fails it is
    the time of the last good refresh (or of the first failed attempt, if none ever succeeded), and
    new pairs on the venue are refused with ``BALANCE_STALE`` until a refresh succeeds.
    """

    venue: str
    ok: bool
    stale_since_ns: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PositionDrifted(Event):
    """A venue's balance of an asset moved by more (or less) than the fills explain, on two
    refreshes in a row with no pair in flight there: new pairs on that venue and asset are refused
    (``POSITION_DRIFT``) until it goes away. Amounts are changes since the reconciler's baseline."""

    venue: str
    asset: str
    expected: Decimal  # what the engine's fills say the balance moved by
    actual: Decimal  # what the venue's balance moved by
    difference: Decimal  # actual - expected


@dataclass(frozen=True, slots=True)
class PositionDriftCleared(Event):
    """A drifted position agrees with the fills again (or the operator re-based it)."""

    venue: str
    asset: str
    difference: Decimal  # what is left of it (within the tolerance), or the drift re-based away
    detail: str = ""


SpreadEvent = SpreadChanged | OpportunityDetected | OpportunityUpdated | OpportunityExpired
