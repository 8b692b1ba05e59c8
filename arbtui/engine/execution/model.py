"""The pair and leg model: what a pair is, its legs with their client order ids, and its rebuild
from the journal.

A :class:`Pair` is the engine's record of one arbitrage: the quote the operator confirmed, its two
entry legs, and whatever unwind or completion legs followed. A :class:`Leg` is one order. Neither
sends anything: :mod:`arbtui.engine.execution.process` drives them, and every state change goes
through the tables in :mod:`arbtui.engine.execution.states`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from arbtui.domain.events import LegPlan, Spread, SpreadKind
from arbtui.domain.execution import Exposure, LegRole, LegState, LegView, PairState, PairView, Quote
from arbtui.domain.money import BPS, ZERO
from arbtui.domain.orders import OrderReport, OrderRequest, Side, TimeInForce
from arbtui.engine.journal import StoredPair

log = logging.getLogger(__name__)

CLORDID_MAX = 18  # Kraken's cl_ord_id free text allows at most 18 ASCII characters
_ROLE_CODE = {LegRole.ENTRY: "e", LegRole.UNWIND: "u", LegRole.COMPLETE: "c"}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def client_order_id(tag: str, seq: int, role: LegRole, n: int) -> str:
    """``a`` + journal tag (3) + pair sequence (7, base 36) + role + leg number (2, base 36).

    Unique per journal, alphanumeric, 14 characters: valid for Kraken (<= 18), Coinbase and
    Polymarket. It is written to the journal before the request leaves.
    """
    digits = ""
    s = seq
    for _ in range(7):
        s, r = divmod(s, 36)
        digits = _B36[r] + digits
    if s:
        raise ValueError("pair sequence too large for a client order id")
    if not 0 <= n < 36 * 36:
        raise ValueError(f"leg number {n} out of range for a client order id")
    cid = f"a{tag}{digits}{_ROLE_CODE[role]}{_B36[n // 36]}{_B36[n % 36]}"
    assert len(cid) <= CLORDID_MAX and cid.isascii() and cid.isalnum()
    return cid


@dataclass
class Leg:
    request: OrderRequest
    pair_id: str
    role: LegRole
    target: int  # which entry leg (0 or 1) this leg adds to (completion) or takes from (unwind)
    idx: int
    state: LegState = LegState.NEW
    filled: Decimal = ZERO
    notional: Decimal = ZERO
    fee: Decimal = ZERO
    sent_ns: int | None = None
    answered_ns: int | None = None
    reason: str | None = None
    fills_recorded: int = 0
    sent_wall_ns: int | None = None  # perf_counter at hand-off to the venue (latency figures only)

    @property
    def cid(self) -> str:
        return self.request.client_order_id

    @property
    def settled(self) -> bool:
        """Final, or NOT_FOUND: every status query said the venue has no such order, so it counts as
        nothing filled for settling its pair (it is still watched for a late arrival)."""
        return self.state.is_terminal or self.state is LegState.NOT_FOUND

    def view(self) -> LegView:
        r = self.request
        return LegView(
            r.client_order_id,
            self.pair_id,
            self.role,
            r.venue,
            r.market,
            r.side,
            r.quantity,
            r.limit_price,
            r.time_in_force,
            self.state,
            self.filled,
            self.notional / self.filled if self.filled else None,
            self.fee,
            self.sent_ns,
            self.answered_ns,
            self.reason,
        )


@dataclass
class Pair:
    pair_id: str
    seq: int
    spread: Spread
    state: PairState
    created_ns: int
    confirm_ns: int
    legs: list[Leg] = field(default_factory=list)
    quote: Quote | None = None  # what the operator saw and approved (None: restored from an old journal)
    realized_pnl: Decimal | None = None
    exposure: tuple[Exposure, ...] = ()
    reason: str | None = None
    resolved: bool = False
    abort_requested: bool = False
    intent_written: bool = False
    task: asyncio.Task[None] | None = None
    confirm_wall_ns: int = 0  # perf_counter at confirm() (latency figures only, never logic)
    launching: bool = False  # confirmed, its legs not on their way yet (see LaunchGuard)

    @property
    def entries(self) -> list[Leg]:
        return [leg for leg in self.legs if leg.role is LegRole.ENTRY]

    def effective(self, i: int) -> Decimal:
        """Entry leg i's position after completions (added) and unwinds (taken away)."""
        total = ZERO
        for leg in self.legs:
            if leg.target != i:
                continue
            total += -leg.filled if leg.role is LegRole.UNWIND else leg.filled
        return total

    def view(self) -> PairView:
        entries = self.entries
        sent = [leg.sent_ns for leg in entries if leg.sent_ns is not None]
        return PairView(
            self.pair_id,
            self.spread.opportunity_id or "",
            self.spread.key,
            self.spread.group,
            self.state,
            tuple(leg.view() for leg in self.legs),
            self.spread.expected_pnl,
            self.realized_pnl,
            self.exposure,
            self.created_ns,
            max(sent) - self.confirm_ns if len(sent) == 2 else None,
            abs(sent[0] - sent[1]) if len(sent) == 2 else None,
            self.reason,
            self.resolved,
            tuple(slippage_bps(leg, plan.vwap) for leg, plan in zip(entries, self.spread.legs, strict=False)),
            self.quote.quote_id if self.quote is not None else None,
        )

    def realized(self) -> Decimal:
        """Cash PnL of every leg's fills, fees included; a complement also holds matched YES+NO pairs."""
        cash = ZERO
        for leg in self.legs:
            cash += leg.notional if leg.request.side is Side.SELL else -leg.notional
            cash -= leg.fee
        if self.spread.kind is SpreadKind.COMPLEMENT:
            cash += min(self.effective(0), self.effective(1))
        return cash


def slippage_bps(leg: Leg, expected_vwap: Decimal) -> Decimal | None:
    """How much worse than the quoted VWAP the leg filled, in bps (negative: better)."""
    if not leg.filled or not expected_vwap:
        return None
    avg = leg.notional / leg.filled
    worse = avg - expected_vwap if leg.request.side is Side.BUY else expected_vwap - avg
    return (worse / expected_vwap * BPS).quantize(Decimal("0.01"))


def believable(leg: Leg, report: OrderReport) -> bool:
    """A report can be about this leg: its client order id, and no more filled than was ordered."""
    ok = report.client_order_id == leg.cid and report.filled_quantity <= leg.request.quantity
    if not ok:
        log.error(
            "venue report for %s names %s and %s filled of %s ordered: not applied",
            leg.cid,
            report.client_order_id,
            report.filled_quantity,
            leg.request.quantity,
        )
    return ok


def restore_pair(stored: StoredPair) -> Pair:
    """Rebuild a pair (and its legs) from its journal rows, to reconcile it after a restart."""
    row = stored.row
    kind = SpreadKind(row["kind"])
    legs_rows = stored.legs
    plans = tuple(
        LegPlan(
            r["venue"],
            r["market"],
            Side(r["side"]),
            Decimal(r["quantity"]),
            Decimal(r["limit_price"]),
            Decimal(r["limit_price"]),
            ZERO,
        )
        for r in legs_rows
        if r["role"] == LegRole.ENTRY.value
    )
    spread = Spread(
        row["spread_key"],
        kind,
        row["grp"],
        (plans[0], plans[1]),
        plans[0].quantity,
        ZERO,
        ZERO,
        ZERO,
        ZERO,
        Decimal(row["expected_pnl"]),
        row["opportunity_id"],
        row["created_ns"],
    )
    pair = Pair(
        row["pair_id"],
        row["seq"],
        spread,
        PairState(row["state"]),
        row["created_ns"],
        row["created_ns"],
        intent_written=True,
    )
    for r in legs_rows:
        req = OrderRequest(
            r["client_order_id"],
            r["venue"],
            r["market"],
            Side(r["side"]),
            Decimal(r["quantity"]),
            Decimal(r["limit_price"]),
            TimeInForce(r["tif"]),
        )
        pair.legs.append(
            Leg(
                req,
                pair.pair_id,
                LegRole(r["role"]),
                r["target"],
                r["idx"],
                LegState(r["state"]),
                Decimal(r["filled"]),
                Decimal(r["filled"]) * Decimal(r["average_price"] or 0),
                Decimal(r["fee"]),
                r["sent_ns"],
                r["answered_ns"],
                r["reason"],
            )
        )
    return pair
