"""Pre-trade risk checks. Each refusal has a stable reason code the operator can read.

Checked before every pair (operator confirms and ARMED confirms alike), in this order, the first
failure wins:

- ``HALTED``: the kill switch is engaged.
- ``EDGE_GONE``: the opportunity no longer pays (or never existed).
- ``MARKET_BLOCKED``: a BROKEN pair on this market has not been resolved by the operator.
- ``POSITION_DRIFT``: a venue's balance of an asset the pair trades there (base or quote) moved
  unexplained by fills (position reconciliation, :mod:`arbtui.engine.inventory`); cleared when the
  balance agrees with the fills again.
- ``BREAKER_TRIPPED``: a venue of the pair has its circuit breaker tripped.
- ``BOOK_STALE`` / ``BOOK_CROSSED``: a book is older than ``risk.max_book_age_ms`` or crossed.
- ``MIN_NET_EDGE``: the net edge is below the configured minimum.
- ``MAX_NOTIONAL``: a leg's notional at its limit price exceeds ``risk.max_notional``.
- ``BALANCE_STALE``: a venue's balances could not be refreshed (every retry failed): sizing
  against them would trust figures that may be wrong; cleared by the next good refresh.
- ``BALANCE``: a venue lacks the quote (buy, fees included) or base (sell) the leg needs, after
  what pairs in flight already hold.
- ``EXPOSURE_VENUE`` / ``EXPOSURE_MARKET``: open exposure would exceed its limit.
- ``MAX_IN_FLIGHT``: too many pairs not yet final.
- ``DAILY_LOSS``: today's realized loss has reached ``risk.daily_loss_limit``.
- ``STARTING``: the engine has not finished loading its journal (checked by the executor).
- ``DUPLICATE``: a pair for this same spread is still in flight (a second confirm is a misfire;
  checked last, so a limit that binds anyway is the reason shown).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from arbtui.config import RiskConfig
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.events import Spread
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.money import ZERO
from arbtui.domain.orders import Side


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class RiskState:
    """What the checks need to know about the engine right now."""

    now_ns: int
    halted: bool
    blocked_groups: frozenset[str]
    tripped_venues: frozenset[str]
    reserved: Mapping[tuple[str, str], Decimal]  # (venue, asset) held by pairs in flight
    exposure_by_venue: Mapping[str, Decimal]
    exposure_by_market: Mapping[str, Decimal]
    pairs_in_flight: int
    realized_today: Decimal
    keys_in_flight: frozenset[str] = frozenset()
    # From the account guard (position reconciliation and balance refreshes, arbtui.engine.inventory):
    blocked_assets: frozenset[tuple[str, str]] = frozenset()  # (venue, asset) whose position drifted
    stale_venues: frozenset[str] = frozenset()  # venues whose balances could not be refreshed


def check_pair(
    spread: Spread | None,
    risk: RiskConfig,
    min_net_edge_bps: Decimal,
    state: RiskState,
    books: Callable[[str, str], OrderBook | None],
    balance: Callable[[str, str], Decimal],
    fees: Callable[[str], FeeSchedule],
    assets: Callable[[str], tuple[str, str]],
) -> Refusal | None:
    """The first refusal for confirming ``spread`` now, or None if every check passes."""
    if state.halted:
        return Refusal("HALTED", "the kill switch is engaged; resume first")
    if spread is None or not spread.pays:
        return Refusal("EDGE_GONE", "the opportunity no longer pays after fees and slippage")
    if spread.group in state.blocked_groups:
        return Refusal("MARKET_BLOCKED", f"a BROKEN pair on {spread.group} is unresolved")
    if state.blocked_assets:
        for leg in spread.legs:
            for asset in assets(leg.market):
                if (leg.venue, asset) in state.blocked_assets:
                    return Refusal(
                        "POSITION_DRIFT", f"{leg.venue} {asset}: the balance moved unexplained by fills (see alarms)"
                    )
    for leg in spread.legs:
        if leg.venue in state.tripped_venues:
            return Refusal("BREAKER_TRIPPED", f"{leg.venue}'s circuit breaker is tripped")
    max_age = risk.max_book_age_ms * NS_PER_MS
    for leg in spread.legs:
        book = books(leg.venue, leg.market)
        if book is None or book.is_stale(state.now_ns, max_age):
            return Refusal("BOOK_STALE", f"{leg.venue} {leg.market} book older than {risk.max_book_age_ms} ms")
        if book.is_crossed():
            return Refusal("BOOK_CROSSED", f"{leg.venue} {leg.market} book is crossed")
    if spread.net_bps < min_net_edge_bps:
        return Refusal("MIN_NET_EDGE", f"net edge {spread.net_bps} bp is below {min_net_edge_bps} bp")
    for leg in spread.legs:
        notional = leg.quantity * leg.vwap  # what the detector sized against the limit
        if notional > risk.max_notional:
            return Refusal("MAX_NOTIONAL", f"{leg.venue} leg notional {notional:.2f} exceeds {risk.max_notional}")
    for leg in spread.legs:
        if leg.venue in state.stale_venues:
            return Refusal("BALANCE_STALE", f"{leg.venue}'s balances could not be refreshed; sizing refused")
    needs: dict[tuple[str, str], Decimal] = {}
    for leg in spread.legs:
        base, quote = assets(leg.market)
        if leg.side is Side.BUY:
            key = (leg.venue, quote)
            amount = leg.quantity * leg.limit_price + fees(leg.venue).fee(leg.limit_price, leg.quantity)
        else:
            key = (leg.venue, base)
            amount = leg.quantity
        needs[key] = needs.get(key, ZERO) + amount
    for (venue, asset), amount in needs.items():
        free = balance(venue, asset) - state.reserved.get((venue, asset), ZERO)
        if free < amount:
            return Refusal("BALANCE", f"{venue} has {free} {asset} free, the leg needs {amount:.8f}")
    # Both legs count together: a cross-venue pair puts two legs in one market, a complement two
    # legs on one venue.
    new_by_venue: dict[str, Decimal] = {}
    new_by_market: dict[str, Decimal] = {}
    for leg in spread.legs:
        notional = leg.quantity * leg.limit_price
        new_by_venue[leg.venue] = new_by_venue.get(leg.venue, ZERO) + notional
        new_by_market[leg.market] = new_by_market.get(leg.market, ZERO) + notional
    for venue, notional in new_by_venue.items():
        if state.exposure_by_venue.get(venue, ZERO) + notional > risk.max_open_exposure_per_venue:
            return Refusal(
                "EXPOSURE_VENUE", f"open exposure on {venue} would exceed {risk.max_open_exposure_per_venue}"
            )
    for market, notional in new_by_market.items():
        if state.exposure_by_market.get(market, ZERO) + notional > risk.max_open_exposure_per_market:
            return Refusal(
                "EXPOSURE_MARKET", f"open exposure on {market} would exceed {risk.max_open_exposure_per_market}"
            )
    if state.pairs_in_flight >= risk.max_pairs_in_flight:
        return Refusal("MAX_IN_FLIGHT", f"{state.pairs_in_flight} pairs in flight (limit {risk.max_pairs_in_flight})")
    if -state.realized_today >= risk.daily_loss_limit:
        return Refusal(
            "DAILY_LOSS", f"today's realized loss {-state.realized_today:.2f} reached the limit {risk.daily_loss_limit}"
        )
    if spread.key in state.keys_in_flight:
        return Refusal("DUPLICATE", f"a pair for {spread.key} is still in flight")
    return None
