"""The risk ledger: what the pairs hold (reservations, exposure, in-flight count) and what they made.

It keeps the pairs that can still change the risk state (not final, or BROKEN and unresolved, or
with a leg still watched for a late fill) and today's realized PnL of the others. Its queries have
no side effects: :meth:`RiskLedger.state` only reads. Pairs leave the open set only through
:meth:`RiskLedger.sweep`, which the pair process calls after a state change, and come back through
:meth:`RiskLedger.reopen` (a late fill re-opens a settled pair).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Protocol

from arbtui.domain.clock import NS_PER_S
from arbtui.domain.execution import PairState
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.money import ZERO
from arbtui.domain.orders import Side
from arbtui.engine.execution.model import Pair
from arbtui.engine.risk import RiskState

DAY_NS = 86_400 * NS_PER_S


class AccountGuard(Protocol):
    """What the position reconciler and the balance refresher tell the risk checks."""

    def blocked_assets(self) -> frozenset[tuple[str, str]]: ...

    def stale_venues(self) -> frozenset[str]: ...


def final_for_good(pair: Pair) -> bool:
    """A final pair that can no longer change the risk state: not an unresolved BROKEN pair, and
    no leg of it still open or watched (a leg not final may still fill)."""
    if not pair.state.is_terminal:
        return False
    if pair.state is PairState.BROKEN and not pair.resolved:
        return False
    return all(leg.state.is_terminal for leg in pair.legs)


class RiskLedger:
    def __init__(
        self,
        fees: Callable[[str, str], FeeSchedule],
        assets: Callable[[str], tuple[str, str]],
        account_guard: AccountGuard | None = None,
    ) -> None:
        self._fees = fees
        self._assets = assets
        self._guard = account_guard
        self.open: dict[str, Pair] = {}
        self._settled_realized: dict[int, Decimal] = {}  # day -> realized PnL of swept pairs created that day
        self._earlier_realized: tuple[int, Decimal] = (0, ZERO)  # (day start, realized) from the journal
        self.blocked_from_journal: dict[str, str] = {}  # pair id -> group: unresolved BROKEN pairs of earlier runs

    def set_earlier_realized(self, day_start_ns: int, realized: Decimal) -> None:
        self._earlier_realized = (day_start_ns, realized)

    def track(self, pair: Pair) -> None:
        self.open[pair.pair_id] = pair

    def sweep(self, pairs: Iterable[Pair] | None = None) -> None:
        """Move the pairs that are final for good out of the open set, keeping their realized PnL by
        the day they were created (so a confirm costs the same after ten thousand pairs as after ten)."""
        for pair in list(pairs if pairs is not None else self.open.values()):
            if pair.pair_id not in self.open or not final_for_good(pair):
                continue
            del self.open[pair.pair_id]
            if pair.realized_pnl is not None:
                day = pair.created_ns // DAY_NS
                self._settled_realized[day] = self._settled_realized.get(day, ZERO) + pair.realized_pnl

    def reopen(self, pair: Pair) -> None:
        """A settled pair changes again (a late fill): it counts as open, its realized PnL taken back
        out of the settled total until it is final again."""
        if pair.pair_id in self.open:
            return
        if pair.realized_pnl is not None:
            day = pair.created_ns // DAY_NS
            self._settled_realized[day] = self._settled_realized.get(day, ZERO) - pair.realized_pnl
        self.open[pair.pair_id] = pair

    def in_flight(self) -> list[Pair]:
        return [p for p in self.open.values() if not p.state.is_terminal]

    def state(self, now: int, halted: bool, tripped: frozenset[str]) -> RiskState:
        """The risk state now. Reads only."""
        reserved: dict[tuple[str, str], Decimal] = {}
        by_venue: dict[str, Decimal] = {}
        by_market: dict[str, Decimal] = {}
        in_flight = 0
        day = now // DAY_NS
        earlier_day, earlier = self._earlier_realized
        realized_today = earlier if earlier_day // DAY_NS == day else ZERO
        realized_today += self._settled_realized.get(day, ZERO)
        blocked = set(self.blocked_from_journal.values())
        keys: set[str] = set()
        for pair in self.open.values():
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
            keys.add(pair.spread.key)
            for leg in pair.entries:
                r = leg.request
                notional = r.quantity * r.limit_price
                by_venue[r.venue] = by_venue.get(r.venue, ZERO) + notional
                by_market[r.market] = by_market.get(r.market, ZERO) + notional
                # Held until the pair ends, filled or not: the cached balances are refreshed only
                # then, so a filled leg's spend is not in them yet (conservative for a rejected leg).
                base, quote = self._assets(r.market)
                if r.side is Side.BUY:
                    key = (r.venue, quote)
                    amount = notional + self._fees(r.venue, r.market).fee(r.limit_price, r.quantity)
                else:
                    key = (r.venue, base)
                    amount = r.quantity
                reserved[key] = reserved.get(key, ZERO) + amount
        guard = self._guard
        return RiskState(
            now,
            halted,
            frozenset(blocked),
            tripped,
            reserved,
            by_venue,
            by_market,
            in_flight,
            realized_today,
            frozenset(keys),
            guard.blocked_assets() if guard is not None else frozenset(),
            guard.stale_venues() if guard is not None else frozenset(),
        )
