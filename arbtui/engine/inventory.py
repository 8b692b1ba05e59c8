"""Position reconciliation: what the engine's fills say each venue holds, against what the venue says.

:class:`PositionReconciler` keeps the EXPECTED change of every (venue, asset) balance since a
baseline, from the engine's own fills: each :class:`~arbtui.domain.execution.LegUpdated` carries a
leg's cumulative filled quantity, average price and fee, and only what was not counted yet for that
client order id is applied. A BUY adds the base quantity and takes the quote notional plus the fee;
a SELL takes the base and adds the notional less the fee. Fees are charged in the quote currency on
Kraken, Coinbase, the simulated venues and every paper trader; a venue whose ``fees_in_proceeds`` is
true (Polymarket's exchange: "fees are levied in the output asset (proceeds)", the CTF exchange
docs) takes a BUY's fee from the tokens received instead, converted at the fill's price.

At each good balance refresh (:mod:`arbtui.engine.balances`) it compares, per asset,

    drift = (balance now - balance at the baseline) - (expected change since the baseline)

A drift beyond the tolerance (``[account] drift_tolerance``, at least the lot size of the venue's
listing of that base asset) on :data:`CONFIRMATIONS` refreshes in a row is an alarm: a
:class:`~arbtui.domain.events.PositionDrifted` event, journaled by the engine, and new pairs
trading that asset on that venue are refused (``POSITION_DRIFT``) until a quiet refresh finds it
within the tolerance again (:class:`~arbtui.domain.events.PositionDriftCleared`) or the operator
re-bases it (:meth:`PositionReconciler.rebase`, e.g. after a deposit). Fills and balance updates
race (a venue applies a fill before its report arrives), so a refresh counts only when it is
*quiet* on that venue: no pair in flight there, and no leg update there since the refresh began.

The baseline is the venue's first good refresh. A leg sent before it (a pair an earlier run left
unfinished) is already in that balance: what it had filled when first seen here is not counted
again, only what it fills afterwards.

:class:`AccountGuard` is the one object the executor's risk ledger reads: the (venue, asset) pairs
in drift and the venues whose balances are stale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from arbtui.domain.events import Event, PositionDriftCleared, PositionDrifted
from arbtui.domain.execution import LegUpdated, LegView, PairStateChanged
from arbtui.domain.instruments import Instruments
from arbtui.domain.money import ZERO
from arbtui.domain.orders import Side

CONFIRMATIONS = 2  # refreshes in a row that must see the same drift before it is an alarm

Key = tuple[str, str]  # (venue, asset)


@dataclass(slots=True)
class _Counted:
    """What of one leg's cumulative fill is already in the expected inventory."""

    filled: Decimal = ZERO
    notional: Decimal = ZERO
    fee: Decimal = ZERO


class PositionReconciler:
    """Expected inventory per (venue, asset) from fills, checked against venue balances (see module)."""

    def __init__(
        self,
        instruments: Instruments,
        tolerance: Decimal,
        *,
        fees_in_proceeds: Callable[[str], bool] | None = None,
    ) -> None:
        self._inst = instruments
        self._tolerance = tolerance
        self._fees_in_proceeds = fees_in_proceeds or (lambda _venue: False)
        self._lots: dict[Key, Decimal] = {}
        for market in instruments.markets.values():
            for venue in instruments.venues_for_market(market.id):
                lot = instruments.listing(venue, market.id).lot_size
                key = (venue, market.base)
                self._lots[key] = max(self._lots.get(key, ZERO), lot)
        self._baseline: dict[str, dict[str, Decimal]] = {}  # venue -> the balances at its baseline
        self._baseline_ns: dict[str, int] = {}
        self._latest: dict[str, dict[str, Decimal]] = {}  # venue -> the last balances observed
        self._expected: dict[Key, Decimal] = {}  # change since the baseline the fills explain
        self._counted: dict[str, _Counted] = {}  # client order id -> already counted
        self._in_flight: dict[str, frozenset[str]] = {}  # pair id -> its venues, while not final
        self._touched_ns: dict[str, int] = {}  # venue -> the last leg update or pair change on it
        self._streak: dict[Key, int] = {}
        self._drifted: dict[Key, PositionDrifted] = {}
        self.observations = 0  # quiet refreshes compared (tests and the analytics pane)
        self.skipped = 0  # refreshes not compared: a pair was in flight on the venue

    # --- queries -------------------------------------------------------------------------------
    def blocked_assets(self) -> frozenset[Key]:
        """(venue, asset) pairs in drift: new pairs trading them are refused."""
        return frozenset(self._drifted)

    def drifts(self) -> Mapping[Key, PositionDrifted]:
        return dict(self._drifted)

    def expected_change(self, venue: str, asset: str) -> Decimal:
        """The balance change since the baseline the engine's fills explain."""
        return self._expected.get((venue, asset), ZERO)

    def tolerance(self, venue: str, asset: str) -> Decimal:
        return max(self._tolerance, self._lots.get((venue, asset), ZERO))

    def venues_in_flight(self) -> frozenset[str]:
        return frozenset(v for venues in self._in_flight.values() for v in venues)

    # --- inputs --------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Every engine event (an engine listener): fills and pair states; the rest is ignored."""
        if isinstance(event, LegUpdated):
            self._touched_ns[event.leg.venue] = event.ts_ns
            self._count(event.leg)
        elif isinstance(event, PairStateChanged):
            pair = event.pair
            venues = frozenset(leg.venue for leg in pair.legs)
            for venue in venues:
                self._touched_ns[venue] = event.ts_ns
            if pair.state.is_terminal:
                self._in_flight.pop(pair.pair_id, None)
            else:
                self._in_flight[pair.pair_id] = venues

    def observe(
        self, venue: str, balances: Mapping[str, Decimal], started_ns: int, now_ns: int
    ) -> list[PositionDrifted | PositionDriftCleared]:
        """A good refresh of ``venue`` that began at ``started_ns``: the drift events it causes."""
        if venue not in self._baseline:
            self._baseline[venue] = dict(balances)
            self._baseline_ns[venue] = now_ns
            self._latest[venue] = dict(balances)
            return []
        self._latest[venue] = dict(balances)
        if venue in self.venues_in_flight() or self._touched_ns.get(venue, -1) >= started_ns:
            self.skipped += 1
            return []  # fills and balances may not agree yet: neither confirms nor clears a drift
        self.observations += 1
        base = self._baseline[venue]
        assets = set(base) | set(balances) | {a for v, a in self._expected if v == venue}
        out: list[PositionDrifted | PositionDriftCleared] = []
        for asset in sorted(assets):
            key = (venue, asset)
            actual = balances.get(asset, ZERO) - base.get(asset, ZERO)
            expected = self._expected.get(key, ZERO)
            difference = actual - expected
            if abs(difference) <= self.tolerance(venue, asset):
                self._streak.pop(key, None)
                if key in self._drifted:
                    del self._drifted[key]
                    out.append(PositionDriftCleared(now_ns, venue, asset, difference, "balance agrees with fills"))
                continue
            streak = self._streak.get(key, 0) + 1
            self._streak[key] = streak
            if streak >= CONFIRMATIONS and key not in self._drifted:
                alarm = PositionDrifted(now_ns, venue, asset, expected, actual, difference)
                self._drifted[key] = alarm
                out.append(alarm)
        return out

    def rebase(self, venue: str, asset: str, now_ns: int) -> PositionDriftCleared | None:
        """The operator accounts for ``asset``'s balance on ``venue`` as it was last seen (a deposit,
        a withdrawal, a trade made elsewhere): it becomes the baseline; the alarm, if any, clears."""
        latest = self._latest.get(venue)
        if latest is None:
            return None
        old = self._drifted.pop((venue, asset), None)
        self._baseline[venue][asset] = latest.get(asset, ZERO)
        self._expected.pop((venue, asset), None)
        self._streak.pop((venue, asset), None)
        if old is None:
            return None
        return PositionDriftCleared(now_ns, venue, asset, old.difference, "re-based by the operator")

    # --- internals -----------------------------------------------------------------------------
    def _count(self, leg: LegView) -> None:
        counted = self._counted.get(leg.client_order_id)
        if counted is None:
            counted = _Counted()
            self._counted[leg.client_order_id] = counted
            baseline_ns = self._baseline_ns.get(leg.venue)
            if baseline_ns is None or (leg.sent_ns is not None and leg.sent_ns < baseline_ns):
                # Sent before the venue's baseline: what it filled so far is already in that balance.
                counted.filled = leg.filled
                counted.notional = _notional(leg)
                counted.fee = leg.fee
                return
        filled, notional, fee = leg.filled, _notional(leg), leg.fee
        dq, dn, dfee = filled - counted.filled, notional - counted.notional, fee - counted.fee
        if dq == 0 and dn == 0 and dfee == 0:
            return
        counted.filled, counted.notional, counted.fee = filled, notional, fee
        market = self._inst.markets.get(leg.market)
        if market is None:
            return
        base, quote = (leg.venue, market.base), (leg.venue, market.quote)
        if leg.side is Side.BUY:
            if self._fees_in_proceeds(leg.venue) and dq > 0 and dn > 0:
                # The fee comes out of the tokens received, at this fill's price.
                self._add(base, dq - dfee * dq / dn)
                self._add(quote, -dn)
            else:
                self._add(base, dq)
                self._add(quote, -dn - dfee)
        else:
            self._add(base, -dq)
            self._add(quote, dn - dfee)

    def _add(self, key: Key, amount: Decimal) -> None:
        self._expected[key] = self._expected.get(key, ZERO) + amount


def _notional(leg: LegView) -> Decimal:
    return leg.filled * leg.average_price if leg.average_price is not None else ZERO


class _StaleSource(Protocol):
    def stale_venues(self) -> frozenset[str]: ...


class AccountGuard:
    """What the risk checks need from the account: drifted positions and stale balances.

    The executor's risk ledger calls these two queries when it builds a
    :class:`~arbtui.engine.risk.RiskState`; both are cheap and change nothing.
    """

    def __init__(self, reconciler: PositionReconciler, balances: _StaleSource) -> None:
        self._reconciler = reconciler
        self._balances = balances

    def blocked_assets(self) -> frozenset[tuple[str, str]]:
        """(venue, asset) pairs whose position drifted: ``POSITION_DRIFT``."""
        return self._reconciler.blocked_assets()

    def stale_venues(self) -> frozenset[str]:
        """Venues whose balances could not be refreshed: ``BALANCE_STALE``."""
        return self._balances.stale_venues()
