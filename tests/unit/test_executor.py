"""The pair executor, end to end through the engine facade (test layer (a): plain asyncio, no UI).

Every test runs the seeded simulated demo on a :class:`ManualClock`: the venues' fault rates are 0
in the configuration, and a test switches on exactly the fault it is about on one venue (with
``SimulatedVenue.configure_faults``) before it confirms, so each outcome is deterministic. The
first paying BTC-USD opportunity of seed 7 is ``coinbase>kraken`` (buy on coinbase, sell on
kraken) about 1.25 s in; tests pick opportunities by filter rather than by that id.

Each execution test checks four things: the pair's final state, its legs' states, what the journal
holds (pairs, legs with their client order ids, transitions, fills, operator actions), and the
exposure left (``PairView.exposure``).
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from arbtui.assembly import build_engine
from arbtui.config import Config, default_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, ManualClock
from arbtui.domain.events import Event, OpportunityExpired, Spread, SpreadKind
from arbtui.domain.execution import (
    ArmedChanged,
    BreakerChanged,
    ConfirmRefused,
    Exposure,
    KillSwitchChanged,
    LegRole,
    LegState,
    LegUpdated,
    LegView,
    OperatorAction,
    PairState,
    PairStateChanged,
    PairView,
    SimulationCompleted,
)
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.orders import OrderReport, OrderRequest, OrderStatus, Side
from arbtui.engine.engine import Engine
from arbtui.engine.execution import CLORDID_MAX, ConfirmRefusedError
from arbtui.engine.execution.model import _ROLE_CODE
from arbtui.engine.journal import Journal
from arbtui.engine.risk import RiskState, check_pair
from arbtui.headless import run_headless
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.base import Venue
from arbtui.venues.simulated import SimulatedVenue
from tests.unit.venue_wrappers import DelegatingVenue

D = Decimal
E = TypeVar("E", bound=Event)
START_NS = 1_795_617_000 * NS_PER_S  # the headless runner's fixed start
STEP_NS = 100 * NS_PER_MS
MARKET_STEP_NS = 10 * NS_PER_MS  # the simulated market's grid: books change only on it
BTC = "BTC-USD"
ZERO_FAULTS: dict[str, Any] = {"reject_rate": D(0), "timeout_rate": D(0), "partial_fill_rate": D(0)}
ZERO = D(0)
REJECT = {**ZERO_FAULTS, "reject_rate": D(1)}
TIMEOUT = {**ZERO_FAULTS, "timeout_rate": D(1)}
PARTIAL = {**ZERO_FAULTS, "partial_fill_rate": D(1)}
UNWIND_CODE = _ROLE_CODE[LegRole.UNWIND]  # the role character of a client order id (index 11)
BIG = {"max_open_exposure_per_venue": D("1000000"), "max_open_exposure_per_market": D("1000000")}


# --- configuration ------------------------------------------------------------------------------


def quiet_config(
    *,
    risk: Mapping[str, Any] | None = None,
    execution: Mapping[str, Any] | None = None,
    balances: Mapping[str, Mapping[str, str]] | None = None,
) -> Config:
    """The built-in demo with every fault rate at 0, plus overrides of risk, execution and balances."""
    cfg = default_config()
    venues = []
    for v in cfg.venues:
        sim = replace(v.sim, **ZERO_FAULTS)
        if balances and v.name in balances:
            sim = replace(sim, balances={**sim.balances, **{k: D(x) for k, x in balances[v.name].items()}})
        venues.append(replace(v, sim=sim))
    return replace(
        cfg,
        venues=tuple(venues),
        risk=replace(cfg.risk, **(risk or {})),
        execution=replace(cfg.execution, **(execution or {})),
    )


# --- venues wrapped for the tests that need a venue to misbehave -------------------------------


class SilentVenue(DelegatingVenue):
    """Takes orders and status queries and never answers either (a venue gone dark mid-order)."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self._never = asyncio.Event()  # never set
        self.placed: list[str] = []
        self.status_queries: list[str] = []

    async def place_order(self, request: OrderRequest) -> OrderReport:
        self.placed.append(request.client_order_id)
        await self._never.wait()
        raise AssertionError("unreachable")

    async def order_status(self, client_order_id: str) -> OrderReport:
        self.status_queries.append(client_order_id)
        await self._never.wait()
        raise AssertionError("unreachable")


class LosingVenue(DelegatingVenue):
    """Loses every order on the way in (it never reaches the venue, and no answer comes back);
    status queries are answered by the venue, which has never heard of the order."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self._never = asyncio.Event()  # never set

    async def place_order(self, request: OrderRequest) -> OrderReport:
        await self._never.wait()
        raise AssertionError("unreachable")


class JournalWitness(DelegatingVenue):
    """Before forwarding an order, reads the journal file from a separate connection: what it finds
    there was committed before the request left."""

    def __init__(self, inner: SimulatedVenue, path: Path) -> None:
        super().__init__(inner)
        self.path = path
        self.seen: dict[str, tuple[Any, ...] | None] = {}

    async def place_order(self, request: OrderRequest) -> OrderReport:
        conn = sqlite3.connect(self.path)
        try:
            self.seen[request.client_order_id] = conn.execute(
                "SELECT l.pair_id, l.venue, l.side, l.quantity, l.limit_price, p.state FROM legs l"
                " JOIN pairs p ON p.pair_id = l.pair_id WHERE l.client_order_id = ?",
                (request.client_order_id,),
            ).fetchone()
        finally:
            conn.close()
        return await super().place_order(request)


class DimmableVenue(DelegatingVenue):
    """Forwards everything until ``dark`` is set; from then on answers neither orders nor queries."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self.dark = False
        self._never = asyncio.Event()  # never set

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if self.dark:
            await self._never.wait()
        return await super().place_order(request)

    async def order_status(self, client_order_id: str) -> OrderReport:
        if self.dark:
            await self._never.wait()
        return await super().order_status(client_order_id)


# --- the harness ----------------------------------------------------------------------------------


@dataclass
class Run:
    clock: ManualClock
    engine: Engine
    path: Path
    events: list[Event] = field(default_factory=list)
    stopped: bool = False

    def sim(self, name: str) -> SimulatedVenue:
        venue = self.engine.venues[name]
        inner = venue.inner if isinstance(venue, DelegatingVenue) else venue
        inner = getattr(inner, "inner", inner)  # the session recorder's wrapper
        assert isinstance(inner, SimulatedVenue)
        return inner

    def faults(self, name: str, faults: Mapping[str, Any]) -> None:
        self.sim(name).configure_faults(**faults)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def view(self, pair_id: str) -> PairView:
        return self.engine.executor.pairs[pair_id].view()

    def sent(self) -> dict[str, int]:
        return {name: self.sim(name).orders_received for name in self.engine.venues}

    async def run_until(self, predicate: Callable[[], bool], limit_s: float = 30, step_ns: int = STEP_NS) -> None:
        """Advance simulated time in small steps until ``predicate()`` holds; fail after ``limit_s``."""
        waited = 0
        while not predicate():
            assert waited < limit_s * NS_PER_S, f"not reached within {limit_s} s of simulated time"
            await self.clock.advance(step_ns)
            waited += step_ns

    async def paying(self, *, group: str | None = BTC, venue: str | None = None, limit_s: float = 30) -> Spread:
        """Advance until a paying opportunity (of ``group``, with a leg on ``venue``) is current."""

        def find() -> Spread | None:
            for s in self.engine.detector.spreads():
                if not s.pays or (group is not None and s.group != group):
                    continue
                if venue is not None and venue not in (leg.venue for leg in s.legs):
                    continue
                return s
            return None

        await self.run_until(lambda: find() is not None, limit_s, MARKET_STEP_NS)
        spread = find()
        assert spread is not None and spread.opportunity_id is not None
        assert self.engine.detector.find_opportunity(spread.opportunity_id) == spread
        return spread

    async def settle(self, pair_id: str, limit_s: float = 30) -> PairView:
        """Advance until the pair is final; its view."""
        await self.run_until(lambda: self.engine.executor.pairs[pair_id].state.is_terminal, limit_s)
        return self.view(pair_id)

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return await self.engine.journal.query(sql, params)

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.engine.stop()


Starter = Callable[..., Awaitable[Run]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Starter]:
    """``await start(config, wrap={"kraken": SilentVenue})``: a started engine; stopped at teardown.

    ``journal`` reuses a journal file (a restart); each run has its own by default."""
    runs: list[Run] = []

    async def _start(
        config: Config | None = None,
        *,
        wrap: Mapping[str, Callable[[SimulatedVenue], Venue]] | None = None,
        journal: Path | None = None,
        start_ns: int = START_NS,
    ) -> Run:
        cfg = config if config is not None else quiet_config()
        clock = ManualClock(start_ns)
        path = journal if journal is not None else tmp_path / f"j{len(runs)}.sqlite"
        if wrap:
            # builder.py's wiring, with some venues replaced by wrappers.
            market = SimulatedMarket(cfg, clock)
            book_of_record = Journal(path)
            clock.add_settler(book_of_record.wait_idle)
            venues = [wrap[v.name](v) if v.name in wrap else v for v in market.venues]
            engine = Engine(cfg, clock, venues, book_of_record, mode="sim", drivers=[("sim-market", market.run)])
        else:
            engine, _ = build_engine(cfg, clock, path)
        run = Run(clock, engine, path)
        engine.subscribe(run.events.append)
        runs.append(run)
        await engine.start()
        return run

    yield _start
    for run in runs:
        await run.stop()


# --- shared assertions ------------------------------------------------------------------------------


def fills_pnl(fills: Sequence[tuple[str, str, str, str]]) -> Decimal:
    """Cash PnL of (side, quantity, price, fee) fills, exactly."""
    cash = D(0)
    for side, qty, price, fee in fills:
        notional = D(qty) * D(price)
        cash += notional if side == Side.SELL.value else -notional
        cash -= D(fee)
    return cash


async def check_journal(run: Run, view: PairView) -> dict[str, list[tuple[Any, ...]]]:
    """The journal agrees with the pair's view: pair row, every leg row, transitions and fills."""
    pid = view.pair_id
    (pair_row,) = await run.rows(
        "SELECT state, expected_pnl, realized_pnl, exposure, opportunity_id, grp FROM pairs WHERE pair_id=?", (pid,)
    )
    state, expected, realized, exposure, opportunity_id, grp = pair_row
    assert state == view.state.value
    assert D(expected) == view.expected_pnl
    assert (None if realized is None else D(realized)) == view.realized_pnl
    expected_exposure = ";".join(f"{e.venue}:{e.market}:{e.side.value}:{e.quantity}" for e in view.exposure)
    assert exposure == (expected_exposure or None)
    assert (opportunity_id, grp) == (view.opportunity_id, view.group)

    legs = await run.rows(
        "SELECT client_order_id, role, venue, side, quantity, state, filled FROM legs WHERE pair_id=? ORDER BY idx",
        (pid,),
    )
    assert [r[0] for r in legs] == [leg.client_order_id for leg in view.legs]
    for row, leg in zip(legs, view.legs, strict=True):
        assert row[1:] == (
            leg.role.value,
            leg.venue,
            leg.side.value,
            str(leg.quantity),
            leg.state.value,
            str(leg.filled),
        )

    pair_transitions = await run.rows(
        "SELECT from_state, trigger, to_state FROM transitions WHERE entity='pair' AND entity_id=? ORDER BY id", (pid,)
    )
    assert pair_transitions[0] == (None, "intent", PairState.CONFIRMED.value)
    assert pair_transitions[-1][2] == view.state.value
    for prev, nxt in zip(pair_transitions, pair_transitions[1:], strict=False):
        assert nxt[0] == prev[2], "each transition starts where the previous one ended"

    leg_transitions: dict[str, list[tuple[Any, ...]]] = {}
    for leg in view.legs:
        rows = await run.rows(
            "SELECT from_state, trigger, to_state FROM transitions WHERE entity='leg' AND entity_id=? ORDER BY id",
            (leg.client_order_id,),
        )
        leg_transitions[leg.client_order_id] = rows
        if leg.state is LegState.NEW:
            assert rows in ([], [(None, "intent", "new")])
            continue
        assert rows, f"no transition journaled for leg {leg.client_order_id}"
        assert rows[-1][2] == leg.state.value
        fills = await run.rows(
            "SELECT quantity, price, fee FROM fills WHERE client_order_id=? ORDER BY seq", (leg.client_order_id,)
        )
        assert sum((D(q) for q, _, _ in fills), D(0)) == leg.filled
        assert bool(fills) == (leg.filled > 0)
        assert sum((D(f) for _, _, f in fills), D(0)) == leg.fee
    return leg_transitions


async def check_realized(run: Run, view: PairView) -> None:
    """realized_pnl is exactly the cash of the pair's fills (Decimal all the way)."""
    fills = await run.rows(
        "SELECT l.side, f.quantity, f.price, f.fee FROM fills f JOIN legs l ON l.client_order_id=f.client_order_id"
        " WHERE l.pair_id=?",
        (view.pair_id,),
    )
    assert view.realized_pnl is not None
    exact = fills_pnl(fills)
    assert view.realized_pnl == exact


async def pair_triggers(run: Run, pair_id: str) -> list[str]:
    rows = await run.rows("SELECT trigger FROM transitions WHERE entity='pair' AND entity_id=? ORDER BY id", (pair_id,))
    return [r[0] for r in rows]


async def raw_actions(run: Run) -> list[tuple[str, str, str]]:
    return [(a, t, d) for a, t, d in await run.rows("SELECT action, target, detail FROM actions ORDER BY id")]


async def actions(run: Run) -> list[tuple[str, str, str]]:
    """The journal's operator actions, a confirm's detail shortened to what the tests compare: "" for
    one that launched a pair ("P-1 <sent> of <quoted> (Q-1)"), the code for a refusal ("refused
    CODE: why")."""

    def short(action: str, detail: str) -> str:
        if action != "confirm":
            return detail
        if detail.startswith("refused "):
            return detail.removeprefix("refused ").split(":", 1)[0]
        assert detail.startswith("P-"), detail
        return ""

    return [(a, t, short(a, d)) for a, t, d in await raw_actions(run)]


def refused(run: Run, opportunity_id: str) -> str:
    """Confirm, expecting a refusal: its code, checked against the ConfirmRefused event."""
    before = len(run.of(ConfirmRefused))
    try:
        pair_id = run.engine.quote_and_confirm(opportunity_id)
    except ConfirmRefusedError as exc:
        refusal = exc.refusal
    else:
        pytest.fail(f"confirm({opportunity_id!r}) was accepted as {pair_id}")
    new = run.of(ConfirmRefused)[before:]
    assert [(e.target, e.code, e.detail) for e in new] == [(opportunity_id, refusal.code, refusal.detail)]
    return refusal.code


def entries(view: PairView) -> tuple[LegView, ...]:
    return view.entry_legs


def unwinds(view: PairView) -> list[LegView]:
    return [leg for leg in view.legs if leg.role is LegRole.UNWIND]


# --- 1. both legs fill -------------------------------------------------------------------------------


async def test_both_legs_fill_completes_with_pnl_and_no_exposure(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.COMPLETED
    assert [leg.state for leg in view.legs] == [LegState.FILLED, LegState.FILLED]
    assert all(leg.filled == leg.quantity == spread.quantity for leg in view.legs)
    assert [(leg.venue, leg.side) for leg in view.legs] == [(p.venue, p.side) for p in spread.legs]
    assert view.exposure == ()
    assert view.expected_pnl == spread.expected_pnl
    assert view.realized_pnl is not None and view.realized_pnl > 0
    await check_realized(run, view)

    leg_transitions = await check_journal(run, view)
    for rows in leg_transitions.values():
        assert rows == [("new", "send", "sent"), ("sent", "fill", "filled")]
    (row,) = await run.rows("SELECT expected_pnl, realized_pnl FROM pairs WHERE pair_id=?", (pid,))
    assert D(row[0]) == spread.expected_pnl and D(row[1]) == view.realized_pnl  # side by side
    assert await actions(run) == [("confirm", spread.opportunity_id, "")]
    (quote_id,) = [r[0] for r in await run.rows("SELECT quote_id FROM quotes WHERE pair_id=?", (pid,))]
    qty = entries(view)[0].quantity
    assert await raw_actions(run) == [("confirm", spread.opportunity_id, f"{pid} {qty} of {qty} ({quote_id})")]

    # Client order ids: short enough for Kraken, alphanumeric, unique in the journal.
    cids = [r[0] for r in await run.rows("SELECT client_order_id FROM legs")]
    assert len(cids) == 2 and len(set(cids)) == 2
    assert all(len(c) <= CLORDID_MAX and c.isascii() and c.isalnum() for c in cids)


async def test_intent_is_committed_before_either_leg_leaves(start: Starter, tmp_path: Path) -> None:
    path = tmp_path / "witnessed.sqlite"
    witnesses: dict[str, JournalWitness] = {}

    def witness(v: SimulatedVenue) -> Venue:
        witnesses[v.name] = JournalWitness(v, path)
        return witnesses[v.name]

    run = await start(wrap={"kraken": witness, "coinbase": witness}, journal=path)
    spread = await run.paying()
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)
    assert view.state is PairState.COMPLETED

    seen = {cid: row for w in witnesses.values() for cid, row in w.seen.items()}
    assert set(seen) == {leg.client_order_id for leg in view.legs}
    for leg in view.legs:
        row = seen[leg.client_order_id]
        assert row is not None, f"{leg.client_order_id} left before its intent was committed"
        assert row[:5] == (pid, leg.venue, leg.side.value, str(leg.quantity), str(leg.limit_price))
        assert row[5] in (PairState.CONFIRMED.value, PairState.DISPATCHING.value)


# --- 2. one leg rejected, the other fills: unwound -----------------------------------------------


async def test_one_leg_rejected_other_filled_is_unwound(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    # coinbase>kraken: the buy on coinbase fills, the sell on kraken is rejected.
    assert [(p.venue, p.side) for p in spread.legs] == [("coinbase", Side.BUY), ("kraken", Side.SELL)]
    run.faults("kraken", REJECT)
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.UNWOUND
    assert PairState.UNWINDING in [e.pair.state for e in run.of(PairStateChanged) if e.pair.pair_id == pid]
    buy, sell = entries(view)
    assert (buy.state, buy.filled) == (LegState.FILLED, spread.quantity)
    assert (sell.state, sell.filled) == (LegState.REJECTED, D(0))
    (unwind,) = unwinds(view)
    assert (unwind.venue, unwind.market, unwind.side) == ("coinbase", BTC, Side.SELL)
    assert unwind.quantity == unwind.filled == buy.filled
    assert unwind.state is LegState.FILLED
    assert view.exposure == ()
    assert view.realized_pnl is not None and view.realized_pnl < 0  # a round trip on coinbase: spread and fees
    await check_realized(run, view)

    leg_transitions = await check_journal(run, view)
    assert leg_transitions[sell.client_order_id] == [("new", "send", "sent"), ("sent", "reject", "rejected")]
    assert leg_transitions[unwind.client_order_id] == [
        (None, "intent", "new"),
        ("new", "send", "sent"),
        ("sent", "fill", "filled"),
    ]
    assert await pair_triggers(run, pid) == ["intent", "dispatch", "imbalanced", "flat"]
    (target,) = await run.rows("SELECT target FROM legs WHERE client_order_id=?", (unwind.client_order_id,))
    assert target == (0,)  # it takes from entry leg 0, the coinbase buy


# --- 3. timeout, then a late fill ----------------------------------------------------------------------


async def test_timeout_is_unknown_not_rejected_and_a_late_fill_completes(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", TIMEOUT)  # kraken executes the order but its reply never comes
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.COMPLETED
    buy, sell = entries(view)
    assert sell.venue == "kraken"
    assert [leg.state for leg in view.legs] == [LegState.FILLED, LegState.FILLED]
    assert sell.filled == buy.filled == spread.quantity
    assert unwinds(view) == []
    assert view.exposure == ()
    await check_realized(run, view)

    leg_transitions = await check_journal(run, view)
    assert leg_transitions[sell.client_order_id] == [
        ("new", "send", "sent"),
        ("sent", "timeout", "unknown"),
        ("unknown", "fill", "filled"),
    ]
    seen_states = [e.leg.state for e in run.of(LegUpdated) if e.leg.client_order_id == sell.client_order_id]
    assert LegState.UNKNOWN in seen_states and LegState.REJECTED not in seen_states
    # A reply that never came counts against the venue's breaker, even though the order filled.
    assert run.engine.executor.breakers["kraken"].consecutive_failures == 1
    # The order timeout passed before the answer was learned by a status query.
    assert sell.answered_ns is not None and sell.sent_ns is not None
    assert sell.answered_ns - sell.sent_ns >= run.engine.config.execution.order_timeout_ms * NS_PER_MS


# --- 4. unequal partial fills: the imbalance is unwound exactly ----------------------------------


async def test_unequal_partial_fills_unwind_exactly_the_difference(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", PARTIAL)  # another trader takes part of kraken's bids first
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.UNWOUND
    buy, sell = entries(view)
    assert buy.state is LegState.FILLED
    assert sell.state is LegState.EXPIRED and D(0) < sell.filled < sell.quantity
    legs_unwound = unwinds(view)
    assert legs_unwound and all(leg.venue == "coinbase" and leg.side is Side.SELL for leg in legs_unwound)
    assert view.exposure == ()
    await check_realized(run, view)
    await check_journal(run, view)

    async def filled(cids: list[str]) -> Decimal:
        marks = ",".join("?" * len(cids))
        rows = await run.rows(f"SELECT quantity FROM fills WHERE client_order_id IN ({marks})", tuple(cids))
        return sum((D(q) for (q,) in rows), D(0))

    entry_difference = await filled([buy.client_order_id]) - await filled([sell.client_order_id])
    assert entry_difference == buy.filled - sell.filled > 0
    assert await filled([leg.client_order_id for leg in legs_unwound]) == entry_difference


# --- 5. both rejected: aborted ------------------------------------------------------------------------


async def test_both_legs_rejected_aborts_with_nothing_filled(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", REJECT)
    run.faults("coinbase", REJECT)
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.ABORTED
    assert [leg.state for leg in view.legs] == [LegState.REJECTED, LegState.REJECTED]
    assert all(leg.filled == 0 for leg in view.legs)
    assert unwinds(view) == []
    assert view.exposure == ()
    assert view.reason is not None and "reject" in view.reason
    await check_journal(run, view)
    assert await run.rows("SELECT * FROM fills") == []
    assert await run.rows("SELECT client_order_id FROM legs WHERE role != 'entry'") == []


# --- 6. a venue that never answers: BROKEN, market blocked until resolved ------------------------


async def test_a_venue_that_never_answers_leaves_the_pair_broken_and_the_market_blocked(start: Starter) -> None:
    silent: list[SilentVenue] = []

    def go_dark(v: SimulatedVenue) -> Venue:
        silent.append(SilentVenue(v))
        return silent[0]

    # Short timeouts so the pair is BROKEN while its opportunity still pays (it lasts ~2 s).
    cfg = quiet_config(execution={"order_timeout_ms": 300, "status_retries": 2, "status_backoff_ms": 50})
    run = await start(cfg, wrap={"kraken": go_dark})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    assert [(p.venue, p.side) for p in spread.legs] == [("coinbase", Side.BUY), ("kraken", Side.SELL)]
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid, limit_s=40)

    ex = run.engine.config.execution
    assert view.state is PairState.BROKEN
    buy, sell = entries(view)
    assert (buy.state, buy.filled) == (LegState.FILLED, spread.quantity)
    assert (sell.state, sell.filled) == (LegState.UNKNOWN, D(0))
    assert silent[0].placed == [sell.client_order_id]
    assert silent[0].status_queries == [sell.client_order_id] * ex.status_retries
    assert unwinds(view) == []  # the position is not known: nothing is sent to flatten it
    # The coinbase buy filled; whether kraken sold is unknown: both are reported.
    assert set(view.exposure) == {
        Exposure("coinbase", BTC, Side.BUY, buy.filled),
        Exposure("kraken", BTC, Side.SELL, sell.quantity),
    }
    leg_transitions = await check_journal(run, view)
    assert leg_transitions[sell.client_order_id] == [("new", "send", "sent"), ("sent", "timeout", "unknown")]

    later = await run.paying()
    assert later.opportunity_id is not None
    assert refused(run, later.opportunity_id) == "MARKET_BLOCKED"
    simulated = run.engine.simulate(later.opportunity_id)
    assert simulated is not None and simulated.refusal == "MARKET_BLOCKED"

    assert run.engine.resolve(pid, "flattened by hand") is True
    assert run.view(pid).resolved
    assert run.engine.resolve(pid) is False  # already resolved
    again = await run.paying()
    assert again.opportunity_id is not None
    assert run.engine.quote_and_confirm(again.opportunity_id).startswith("P-")
    await run.clock.advance(MARKET_STEP_NS)
    assert await run.rows("SELECT state, resolved FROM pairs WHERE pair_id=?", (pid,)) == [("broken", 1)]
    acts = await actions(run)
    assert ("resolve", pid, "flattened by hand") in acts
    assert ("confirm", later.opportunity_id, "MARKET_BLOCKED") in acts


async def test_an_order_the_venue_never_received_counts_as_nothing_filled_and_is_watched(start: Starter) -> None:
    """No answer, and the venue says it has no such order at every status query: nothing filled there
    for settling (UNKNOWN -> NOT_FOUND on "not_found"), so the other leg's fill is unwound; the leg is
    watched for a late arrival and, the venue never showing it, ends REJECTED after the window."""
    cfg = quiet_config(execution={"order_timeout_ms": 300, "status_retries": 2, "status_backoff_ms": 50})
    run = await start(cfg, wrap={"kraken": LosingVenue})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.UNWOUND
    buy, sell = entries(view)
    assert (buy.state, sell.state, sell.filled) == (LegState.FILLED, LegState.NOT_FOUND, D(0))
    assert sell.reason == "the venue never received it"
    (unwind,) = unwinds(view)
    assert (unwind.venue, unwind.side, unwind.filled) == ("coinbase", Side.SELL, buy.filled)
    assert view.exposure == ()

    watch = run.engine.executor.late_fills
    assert watch.watching == {sell.client_order_id}
    await run.run_until(lambda: not watch.watching, limit_s=cfg.execution.late_fill_watch_s + 1)
    view = run.view(pid)
    _, sell = entries(view)
    assert (view.state, sell.state, sell.filled) == (PairState.UNWOUND, LegState.REJECTED, D(0))
    assert sell.reason == f"never arrived (watched {cfg.execution.late_fill_watch_s} s)"
    await check_realized(run, view)
    leg_transitions = await check_journal(run, view)
    assert leg_transitions[sell.client_order_id] == [
        ("new", "send", "sent"),
        ("sent", "timeout", "unknown"),
        ("unknown", "not_found", "not_found"),
        ("not_found", "watch_expired", "rejected"),
    ]


class LosingUnwinds(DelegatingVenue):
    """Takes entry orders; loses every unwind order on the way in (never answered, and unknown to
    every status query), as a request stuck in a queue would be."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self._never = asyncio.Event()  # never set
        self.unwinds_sent = 0

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if request.client_order_id[11] == UNWIND_CODE:
            self.unwinds_sent += 1
            await self._never.wait()
        return await super().place_order(request)


async def test_an_unwind_the_venue_never_saw_is_not_sent_again(start: Starter) -> None:
    """A lost unwind may still arrive late: sending a second one could flatten twice. The pair is
    left BROKEN with its exposure shown (and the lost unwind watched) instead."""
    cfg = quiet_config(execution={"order_timeout_ms": 300, "status_retries": 2, "status_backoff_ms": 50})
    run = await start(cfg, wrap={"coinbase": LosingUnwinds})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", REJECT)
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)
    venue = run.engine.venues["coinbase"]
    assert isinstance(venue, LosingUnwinds)
    assert venue.unwinds_sent == 1  # one unwind, never a second
    assert view.state is PairState.BROKEN
    (unwind,) = unwinds(view)
    assert unwind.state is LegState.NOT_FOUND
    buy, _ = entries(view)
    assert [(e.venue, e.side, e.quantity) for e in view.exposure] == [("coinbase", Side.BUY, buy.filled)]
    assert unwind.client_order_id in run.engine.executor.late_fills.watching
    await check_journal(run, view)


async def test_a_settled_pair_s_watched_leg_is_watched_again_after_a_restart(start: Starter, tmp_path: Path) -> None:
    """The engine stops while a settled pair's NOT_FOUND leg is watched: the next start watches it
    again (its window counted from when it was sent), without counting the pair's PnL twice."""
    cfg = quiet_config(execution={"order_timeout_ms": 300, "status_retries": 2, "status_backoff_ms": 50})
    path = tmp_path / "restart.sqlite"
    first = await start(cfg, wrap={"kraken": LosingVenue}, journal=path)
    spread = await first.paying()
    assert spread.opportunity_id is not None
    pid = first.engine.quote_and_confirm(spread.opportunity_id)
    view = await first.settle(pid)
    _, sell = entries(view)
    assert (view.state, sell.state) == (PairState.UNWOUND, LegState.NOT_FOUND)
    realized = first.engine.executor.risk_state().realized_today
    await first.stop()

    second = await start(cfg, wrap={"kraken": LosingVenue}, journal=path, start_ns=first.clock.now_ns())
    watch = second.engine.executor.late_fills
    assert watch.watching == {sell.client_order_id}
    assert second.engine.executor.risk_state().realized_today == realized  # not counted twice
    assert second.engine.executor.risk_state().pairs_in_flight == 0
    await second.run_until(lambda: not watch.watching, limit_s=cfg.execution.late_fill_watch_s + 1)
    after = second.view(pid)
    assert after.state is PairState.UNWOUND and entries(after)[1].state is LegState.REJECTED
    rows = await second.rows(
        "SELECT trigger, to_state FROM transitions WHERE entity='leg' AND entity_id=? ORDER BY id",
        (sell.client_order_id,),
    )
    assert rows[-1] == ("watch_expired", "rejected")
    assert second.engine.executor.risk_state().realized_today == realized


# --- 7. an unwind that cannot fill: BROKEN with the filled quantity exposed ----------------------


async def test_an_unwind_that_never_fills_leaves_the_pair_broken(start: Starter) -> None:
    # A 1 ms unwind backoff, so the pair is BROKEN while its opportunity still pays.
    run = await start(quiet_config(execution={"unwind_backoff_ms": 1}))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", REJECT)

    def refuse_unwinds(ev: Event) -> None:
        # The entry on coinbase has filled by now; from here coinbase rejects everything.
        if isinstance(ev, PairStateChanged) and ev.pair.state is PairState.UNWINDING:
            run.faults("coinbase", REJECT)

    run.engine.subscribe(refuse_unwinds)
    coinbase_before = run.sim("coinbase").orders_received
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    ex = run.engine.config.execution
    assert view.state is PairState.BROKEN
    buy, sell = entries(view)
    assert (buy.venue, buy.state, buy.filled) == ("coinbase", LegState.FILLED, spread.quantity)
    assert sell.state is LegState.REJECTED
    attempts = unwinds(view)
    assert len(attempts) == ex.unwind_attempts
    for leg in attempts:
        assert (leg.venue, leg.side, leg.quantity, leg.state) == ("coinbase", Side.SELL, buy.filled, LegState.REJECTED)
    # The coinbase breaker tripped on the way, yet every unwind was still sent (they reduce risk).
    assert any(e.venue == "coinbase" and e.tripped for e in run.of(BreakerChanged))
    assert run.sim("coinbase").orders_received - coinbase_before == 1 + ex.unwind_attempts
    assert view.exposure == (Exposure("coinbase", BTC, Side.BUY, buy.filled),)
    assert view.realized_pnl is None
    await check_journal(run, view)
    assert await pair_triggers(run, pid) == ["intent", "dispatch", "imbalanced", "exhausted"]

    run.faults("coinbase", ZERO_FAULTS)
    later = await run.paying()
    assert later.opportunity_id is not None
    assert refused(run, later.opportunity_id) == "MARKET_BLOCKED"


async def test_an_unwind_held_inside_its_band_leaves_the_rest_exposed(start: Starter) -> None:
    """A band of 0.01 bp lets each IOC unwind take only the touch, and other traders take part of
    it first (partial fills on coinbase from the moment the pair is UNWINDING): every attempt sends
    exactly the imbalance left, and what the attempts could not sell is the exposure."""
    band = D("0.01")
    run = await start(quiet_config(execution={"unwind_band_bps": band, "unwind_backoff_ms": 1}))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", REJECT)
    touches: list[Decimal] = []

    def crowd_the_book(ev: Event) -> None:
        if isinstance(ev, PairStateChanged) and ev.pair.state is PairState.UNWINDING:
            run.faults("coinbase", PARTIAL)
        if isinstance(ev, LegUpdated) and ev.leg.role is LegRole.UNWIND and ev.leg.state is LegState.SENT:
            book = run.engine.book("coinbase", BTC)
            bid = book.best_bid() if book else None
            assert bid is not None
            touches.append(bid[0])

    run.engine.subscribe(crowd_the_book)
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    ex = run.engine.config.execution
    assert view.state is PairState.BROKEN
    buy, sell = entries(view)
    assert (buy.state, sell.state) == (LegState.FILLED, LegState.REJECTED)
    attempts = unwinds(view)
    assert len(attempts) == len(touches) == ex.unwind_attempts
    left = buy.filled
    for leg, touch in zip(attempts, touches, strict=True):
        assert (leg.venue, leg.side, leg.quantity) == ("coinbase", Side.SELL, left)  # exactly what is left
        assert touch * (1 - band / 10_000) <= leg.limit_price <= touch  # inside the band below the touch
        assert leg.state is LegState.EXPIRED and D(0) < leg.filled < leg.quantity
        assert leg.average_price is not None and leg.average_price >= leg.limit_price
        left -= leg.filled
    assert left > 0
    assert view.exposure == (Exposure("coinbase", BTC, Side.BUY, left),)
    await check_journal(run, view)

    run.faults("coinbase", ZERO_FAULTS)
    later = await run.paying()
    assert later.opportunity_id is not None
    assert refused(run, later.opportunity_id) == "MARKET_BLOCKED"


async def test_an_unwind_lost_in_flight_reports_the_position_once(start: Starter) -> None:
    """The coinbase buy filled, the kraken sell was rejected, and the unwind (a coinbase sell) got
    no answer. The position is at most the bought quantity, long on coinbase (less if the unwind
    filled): the exposure must not add the unwind's quantity to it as if it were more buying."""
    dimmable: list[DimmableVenue] = []

    def dim(v: SimulatedVenue) -> Venue:
        dimmable.append(DimmableVenue(v))
        return dimmable[0]

    cfg = quiet_config(execution={"order_timeout_ms": 300, "status_retries": 2, "status_backoff_ms": 50})
    run = await start(cfg, wrap={"coinbase": dim})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", REJECT)

    def go_dark(ev: Event) -> None:
        if isinstance(ev, PairStateChanged) and ev.pair.state is PairState.UNWINDING:
            dimmable[0].dark = True

    run.engine.subscribe(go_dark)
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.BROKEN
    buy, sell = entries(view)
    assert (buy.venue, buy.state, buy.filled) == ("coinbase", LegState.FILLED, spread.quantity)
    assert sell.state is LegState.REJECTED
    (unwind,) = unwinds(view)  # its outcome is unknown: nothing more is sent
    assert (unwind.side, unwind.state, unwind.filled) == (Side.SELL, LegState.UNKNOWN, D(0))
    await check_journal(run, view)
    assert view.exposure == (Exposure("coinbase", BTC, Side.BUY, buy.filled),)


# --- 8. abort --------------------------------------------------------------------------------------


async def test_abort_right_after_confirm_sends_nothing(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    before = run.sent()
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    assert run.engine.abort(pid) is True
    view = await run.settle(pid)

    assert view.state is PairState.ABORTED
    assert [leg.state for leg in view.legs] == [LegState.NEW, LegState.NEW]
    assert run.sent() == before
    assert view.exposure == ()
    await check_journal(run, view)
    assert run.engine.abort(pid) is False  # already final
    await run.clock.advance(MARKET_STEP_NS)  # lets the action's journal write run
    acts = await actions(run)
    assert acts[:2] == [("confirm", spread.opportunity_id, ""), ("abort", pid, "")]
    assert acts.count(("abort", pid, "")) == 2


async def test_abort_with_legs_in_flight_still_reaches_a_final_state(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    await run.clock.advance(5 * NS_PER_MS)  # both legs are out, no answer yet (acks take ~50 ms)
    assert [leg.state for leg in run.view(pid).legs] == [LegState.SENT, LegState.SENT]
    assert run.engine.abort(pid) is True
    view = await run.settle(pid)

    # IOC legs cannot be called back: both filled, so the pair completed despite the abort.
    assert view.state is PairState.COMPLETED
    assert view.exposure == ()
    await check_journal(run, view)
    assert ("abort", pid, "") in await actions(run)


# --- 9. kill switch ----------------------------------------------------------------------------------


async def test_kill_switch_halts_new_pairs_and_lets_in_flight_pairs_finish(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", REJECT)  # the pair in flight will need an unwind after the kill
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    await run.clock.advance(5 * NS_PER_MS)

    run.engine.kill()
    assert [(e.engaged) for e in run.of(KillSwitchChanged)] == [True]
    assert refused(run, spread.opportunity_id) == "HALTED"
    with pytest.raises(ConfirmRefusedError) as info:
        run.engine.set_armed(True)
    assert info.value.refusal.code == "HALTED"

    view = await run.settle(pid)
    assert view.state is PairState.UNWOUND  # the filled coinbase leg was still flattened
    assert view.exposure == ()
    await check_journal(run, view)

    run.faults("kraken", ZERO_FAULTS)
    run.engine.resume()
    assert [(e.engaged) for e in run.of(KillSwitchChanged)] == [True, False]
    later = await run.paying()
    assert later.opportunity_id is not None
    pid2 = run.engine.quote_and_confirm(later.opportunity_id)
    assert (await run.settle(pid2)).state is PairState.COMPLETED
    acts = [a for a, _, _ in await actions(run)]
    assert acts == ["confirm", "kill", "confirm", "resume", "confirm"]
    assert [e.action for e in run.of(OperatorAction)] == acts  # the journal mirrors the events


async def test_kill_while_armed_says_it_disarmed(start: Starter) -> None:
    """kill() turns ARMED off (executor.py, ``kill``: ``self.armed = False``) but publishes no
    ArmedChanged, so a consumer folding events still shows ARMED, and still does after resume()."""
    run = await start()
    run.engine.set_armed(True)
    run.engine.kill()
    assert run.engine.executor.armed is False
    assert [e.armed for e in run.of(ArmedChanged)] == [True, False]


# --- completion policy -------------------------------------------------------------------------------


async def test_complete_missing_leg_policy_sends_the_missing_quantity(start: Starter) -> None:
    run = await start(quiet_config(execution={"complete_missing_leg": True}))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", PARTIAL)

    def heal(ev: Event) -> None:
        if isinstance(ev, PairStateChanged) and ev.pair.state is PairState.COMPLETING:
            run.faults("kraken", ZERO_FAULTS)

    run.engine.subscribe(heal)
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.COMPLETED
    buy, sell = entries(view)
    assert sell.state is LegState.EXPIRED and D(0) < sell.filled < sell.quantity
    (completion,) = [leg for leg in view.legs if leg.role is LegRole.COMPLETE]
    assert (completion.venue, completion.side, completion.state) == ("kraken", Side.SELL, LegState.FILLED)
    assert completion.quantity == completion.filled == buy.filled - sell.filled
    assert unwinds(view) == []
    assert view.exposure == ()
    await check_realized(run, view)
    await check_journal(run, view)
    assert await pair_triggers(run, pid) == ["intent", "dispatch", "complete_missing", "balanced"]


# --- 10. circuit breaker ---------------------------------------------------------------------------


async def test_breaker_trips_after_consecutive_failures_and_resets(start: Starter) -> None:
    run = await start()
    run.faults("kraken", REJECT)
    limit = run.engine.config.execution.breaker_consecutive_failures
    pairs: list[str] = []
    while not any(e.venue == "kraken" and e.tripped for e in run.of(BreakerChanged)):
        assert len(pairs) < limit, "the breaker did not trip"
        spread = await run.paying(group=None, venue="kraken")
        assert spread.opportunity_id is not None
        pid = run.engine.quote_and_confirm(spread.opportunity_id)
        pairs.append(pid)
        await run.settle(pid)
    assert len(pairs) == limit
    (trip,) = [e for e in run.of(BreakerChanged) if e.venue == "kraken"]
    assert trip.tripped and trip.reason == f"{limit} consecutive failures"
    assert run.engine.executor.breakers["kraken"].tripped
    assert not run.engine.executor.breakers["coinbase"].tripped  # its unwinds filled
    for pid in pairs:
        view = run.view(pid)
        assert view.state is PairState.UNWOUND and view.exposure == ()
        assert [leg.state for leg in view.entry_legs if leg.venue == "kraken"] == [LegState.REJECTED]
        await check_journal(run, view)

    run.faults("kraken", ZERO_FAULTS)
    spread = await run.paying(group=None, venue="kraken")
    assert spread.opportunity_id is not None
    assert refused(run, spread.opportunity_id) == "BREAKER_TRIPPED"

    run.engine.reset_breaker("kraken")
    last = run.of(BreakerChanged)[-1]
    assert (last.venue, last.tripped) == ("kraken", False)
    spread = await run.paying(group=None, venue="kraken")
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    assert (await run.settle(pid)).state is PairState.COMPLETED
    assert ("reset_breaker", "kraken", "") in await actions(run)


# --- 11. risk refusals ---------------------------------------------------------------------------------


async def test_edge_gone_for_an_unknown_or_expired_opportunity(start: Starter) -> None:
    run = await start()
    await run.run_until(lambda: bool(run.of(OpportunityExpired)), step_ns=MARKET_STEP_NS)
    expired = run.of(OpportunityExpired)[0].opportunity_id
    assert run.engine.detector.find_opportunity(expired) is None
    before = run.sent()
    assert refused(run, "O-999999") == "EDGE_GONE"
    assert refused(run, expired) == "EDGE_GONE"
    assert run.engine.executor.pairs == {}
    assert run.sent() == before
    await run.clock.advance(MARKET_STEP_NS)
    assert await run.rows("SELECT * FROM pairs") == []
    assert await actions(run) == [("confirm", "O-999999", "EDGE_GONE"), ("confirm", expired, "EDGE_GONE")]


@pytest.mark.parametrize(
    ("risk", "balances", "code"),
    [
        pytest.param({**BIG, "max_pairs_in_flight": 1}, None, "MAX_IN_FLIGHT", id="max-in-flight"),
        pytest.param({}, None, "EXPOSURE_MARKET", id="exposure-market"),
        pytest.param({**BIG, "max_open_exposure_per_venue": D("60000")}, None, "EXPOSURE_VENUE", id="exposure-venue"),
        # Enough USD for one buy leg (~50,000) but not for two: the pair in flight holds the first.
        pytest.param(BIG, {"kraken": {"USD": "60000"}, "coinbase": {"USD": "60000"}}, "BALANCE", id="balance"),
    ],
)
async def test_second_confirm_of_the_same_opportunity_is_refused(
    start: Starter, risk: dict[str, Any], balances: dict[str, dict[str, str]] | None, code: str
) -> None:
    run = await start(quiet_config(risk=risk, balances=balances))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    first = run.engine.quote_and_confirm(spread.opportunity_id)
    assert refused(run, spread.opportunity_id) == code
    assert list(run.engine.executor.pairs) == [first]
    view = await run.settle(first)
    assert view.state is PairState.COMPLETED
    await check_journal(run, view)
    assert await actions(run) == [("confirm", spread.opportunity_id, ""), ("confirm", spread.opportunity_id, code)]


async def test_a_filled_leg_still_holds_its_funds_while_its_pair_is_in_flight(start: Starter) -> None:
    """Each venue holds USD for one buy leg (~50,000) and no more. While the first pair waits for
    kraken's late answer, its coinbase buy has already spent ~50,000 USD, so a second buy on
    coinbase must be refused with BALANCE, not sent to a venue that will reject it."""
    cfg = quiet_config(risk=BIG, balances={"kraken": {"USD": "60000"}, "coinbase": {"USD": "60000"}})
    run = await start(cfg)
    spread = await run.paying()
    assert spread.opportunity_id is not None
    assert spread.legs[0].venue == "coinbase" and spread.legs[0].side is Side.BUY
    run.faults("kraken", TIMEOUT)  # the pair stays in flight ~2 s, its coinbase leg filled
    first = run.engine.quote_and_confirm(spread.opportunity_id)
    pair = run.engine.executor.pairs[first]
    await run.run_until(lambda: pair.legs[0].state is LegState.FILLED, step_ns=MARKET_STEP_NS)
    assert not pair.state.is_terminal
    usd_left = (await run.sim("coinbase").balances())["USD"]
    assert usd_left < spread.legs[0].quantity * spread.legs[0].limit_price

    run.faults("kraken", ZERO_FAULTS)
    again = await run.paying()
    assert again.opportunity_id is not None and again.legs[0].venue == "coinbase"
    try:
        second = run.engine.quote_and_confirm(again.opportunity_id)
    except ConfirmRefusedError as exc:
        assert exc.refusal.code == "BALANCE"
    else:
        view = await run.settle(second)
        pytest.fail(
            f"confirmed as {second} with {usd_left} USD left on coinbase: its coinbase leg ended"
            f" {view.entry_legs[0].state.value} ({view.entry_legs[0].reason}); the pair ended {view.state.value}"
            f" with realized {view.realized_pnl}"
        )


async def test_stale_book_is_refused(start: Starter) -> None:
    run = await start(quiet_config(risk={"max_book_age_ms": 1}))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    await run.clock.advance(5 * NS_PER_MS)  # off the market's 10 ms grid: no book is younger than 5 ms
    assert run.engine.detector.find_opportunity(spread.opportunity_id) is not None
    assert refused(run, spread.opportunity_id) == "BOOK_STALE"


async def test_daily_loss_limit_refuses_after_a_losing_pair(start: Starter) -> None:
    run = await start(quiet_config(risk={"daily_loss_limit": D("10")}))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults("kraken", REJECT)
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))
    assert view.state is PairState.UNWOUND and view.realized_pnl is not None and view.realized_pnl <= D("-10")
    run.faults("kraken", ZERO_FAULTS)
    later = await run.paying()
    assert later.opportunity_id is not None
    assert refused(run, later.opportunity_id) == "DAILY_LOSS"


async def test_daily_loss_survives_a_restart(start: Starter, tmp_path: Path) -> None:
    """A loss journaled earlier today still counts after the engine restarts on the same journal:
    otherwise restarting the console would reset the daily loss limit."""
    cfg = quiet_config(risk={"daily_loss_limit": D("10")})
    journal = tmp_path / "same-day.sqlite"
    first = await start(cfg, journal=journal)
    spread = await first.paying()
    assert spread.opportunity_id is not None
    first.faults("kraken", REJECT)
    view = await first.settle(first.engine.quote_and_confirm(spread.opportunity_id))
    assert view.realized_pnl is not None and view.realized_pnl <= D("-10")
    await first.stop()

    later = await start(cfg, journal=journal, start_ns=START_NS + 3600 * NS_PER_S)  # an hour later, same day
    again = await later.paying()
    assert again.opportunity_id is not None
    assert refused(later, again.opportunity_id) == "DAILY_LOSS"


async def test_detector_sizes_within_max_notional_so_confirm_passes(start: Starter) -> None:
    """MAX_NOTIONAL cannot be reached through the engine: the detector sizes every opportunity
    under the same ``risk.max_notional`` that the check reads (see the direct check below)."""
    cap = D("1000")
    run = await start(quiet_config(risk={"max_notional": cap}))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    assert all(leg.quantity * leg.vwap <= cap for leg in spread.legs)
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))
    assert view.state is PairState.COMPLETED


async def test_max_notional_and_min_net_edge_codes_of_the_risk_check(start: Starter) -> None:
    """The two codes the detector's own filters keep out of the engine's reach (it sizes under
    ``max_notional`` and only marks spreads paying at ``min_net_edge_bps`` or more, reading the same
    configuration as the check), exercised on :func:`check_pair` with a real detected spread."""
    run = await start()
    spread = await run.paying()
    ex = run.engine.executor
    cfg = run.engine.config

    def check(s: Spread, *, max_notional: Decimal = cfg.risk.max_notional, min_edge: Decimal = ZERO) -> str | None:
        state = RiskState(run.clock.now_ns(), False, frozenset(), frozenset(), {}, {}, {}, 0, D(0))
        refusal = check_pair(
            s,
            replace(cfg.risk, max_notional=max_notional),
            min_edge,
            state,
            run.engine.book,
            run.engine.free_balance,
            lambda v: run.engine.venues[v].fees(BTC),
            lambda m: (run.engine.instruments.markets[m].base, run.engine.instruments.markets[m].quote),
        )
        return refusal.code if refusal else None

    assert ex.pairs == {}
    assert check(spread) is None
    assert check(spread, max_notional=D("1000")) == "MAX_NOTIONAL"
    assert check(spread, min_edge=spread.net_bps + 1) == "MIN_NET_EDGE"


# --- 12. simulate -------------------------------------------------------------------------------------


async def test_simulate_sends_nothing_and_prices_the_worst_case(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    before = run.sent()
    result = run.engine.simulate(spread.opportunity_id)
    assert result is not None
    assert run.sent() == before
    assert run.engine.executor.pairs == {}
    assert [(s.venue, s.market, s.side) for s in result.legs] == [(p.venue, p.market, p.side) for p in spread.legs]
    assert all(s.quantity == spread.quantity and s.vwap is not None for s in result.legs)
    assert result.fees == sum((s.fee for s in result.legs), D(0)) > 0
    assert result.expected_pnl > 0
    assert result.worst_case <= result.expected_pnl
    assert result.worst_case < 0  # one leg failing leaves a round trip to pay for
    assert result.refusal is None
    assert [e.quote for e in run.of(SimulationCompleted)] == [result]
    assert result.purpose == "simulate" and result.quote_id.startswith("Q-")
    await run.clock.advance(MARKET_STEP_NS)
    ((action, target, detail),) = await actions(run)
    assert (action, target) == ("simulate", result.quote_id)
    assert detail.startswith(f"for {spread.opportunity_id}; ")
    # The quote shown is journaled in full, with no pair (nothing was sent).
    assert await run.rows("SELECT purpose, opportunity_id, pair_id FROM quotes") == [
        ("simulate", spread.opportunity_id, None)
    ]
    assert await run.rows("SELECT * FROM pairs") == []


# --- 13. ARMED ------------------------------------------------------------------------------------------


async def test_armed_mode_confirms_by_itself_and_every_pair_ends_final(start: Starter) -> None:
    run = await start(default_config())  # the demo's own fault rates
    run.engine.set_armed(True)
    assert [e.armed for e in run.of(ArmedChanged)] == [True]
    for _ in range(10 * NS_PER_S // STEP_NS):
        await run.clock.advance(STEP_NS)
    run.engine.set_armed(False)
    await run.run_until(lambda: not run.engine.executor.in_flight(), limit_s=60)

    views = [p.view() for p in run.engine.executor.pairs.values()]
    assert len(views) >= 3 and all(v.state.is_terminal for v in views)
    for view in views:
        assert (view.exposure != ()) == (view.state is PairState.BROKEN and not view.resolved)
        await check_journal(run, view)
    assert sorted(r[0] for r in await run.rows("SELECT pair_id FROM pairs")) == sorted(v.pair_id for v in views)
    cids = [leg.client_order_id for v in views for leg in v.legs]
    assert len(set(cids)) == len(cids) == len(await run.rows("SELECT client_order_id FROM legs"))
    assert all(len(c) <= CLORDID_MAX and c.isascii() and c.isalnum() for c in cids)
    acts = [a for a, _, _ in await actions(run)]
    assert acts == ["arm", "disarm"]  # ARMED confirms are not operator actions
    assert run.of(ConfirmRefused) == []


# --- 14. headless determinism ---------------------------------------------------------------------------


async def test_headless_runs_are_deterministic_and_every_pair_is_final() -> None:
    first = await run_headless(default_config(), 20, armed=True, journal_path=None)
    second = await run_headless(default_config(), 20, armed=True, journal_path=None)
    first.pop("wall")
    second.pop("wall")
    assert first == second
    assert first["pairs"]["total"] > 0
    assert first["not_final"] == []
    broken = first["pairs"]["by_state"].get("broken", 0)
    assert (first["exposure"] == []) == (broken == 0)


# --- the complement kind, for the record ---------------------------------------------------------------


async def test_complement_pair_on_one_venue_completes(start: Starter) -> None:
    run = await start()
    spread = await run.paying(group=None, venue="polymarket")
    assert spread.kind is SpreadKind.COMPLEMENT and spread.opportunity_id is not None
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))
    assert view.state is PairState.COMPLETED and view.exposure == ()
    await check_realized_complement(run, view)
    await check_journal(run, view)


async def check_realized_complement(run: Run, view: PairView) -> None:
    """A YES+NO pair's realized PnL is its cash plus the payout of the matched quantity."""
    fills = await run.rows(
        "SELECT l.side, f.quantity, f.price, f.fee FROM fills f JOIN legs l ON l.client_order_id=f.client_order_id"
        " WHERE l.pair_id=?",
        (view.pair_id,),
    )
    matched = min(leg.filled for leg in view.entry_legs)
    assert view.realized_pnl is not None
    assert view.realized_pnl == fills_pnl(fills) + matched


async def test_confirming_the_same_spread_twice_is_refused_as_a_duplicate(start: Starter) -> None:
    """With every limit generous, a second confirm while the first pair is in flight is a misfire."""
    run = await start(quiet_config(risk=BIG))
    spread = await run.paying()
    assert spread.opportunity_id is not None
    first = run.engine.quote_and_confirm(spread.opportunity_id)
    assert refused(run, spread.opportunity_id) == "DUPLICATE"
    assert list(run.engine.executor.pairs) == [first]
    view = await run.settle(first)
    assert view.state.is_terminal


def test_exposure_limits_count_both_legs_of_a_pair() -> None:
    """Both legs of a cross-venue pair sit in one market: the market limit sees their sum."""
    from arbtui.config import RiskConfig
    from arbtui.domain.events import LegPlan, Spread, SpreadKind
    from arbtui.engine.risk import RiskState, check_pair

    book = OrderBook(depth=10)
    book.apply_snapshot([(D("99"), D("10"))], [(D("100"), D("10"))], 0)
    legs = (
        LegPlan("A", "X-USD", Side.BUY, D("1"), D("100"), D("100"), D("0")),
        LegPlan("B", "X-USD", Side.SELL, D("1"), D("101"), D("101"), D("0")),
    )
    spread = Spread(
        "X-USD A>B", SpreadKind.CROSS_VENUE, "X-USD", legs, D("1"), D("100"), D("100"), D("0"), D("0"), D("1"), "O-1", 0
    )
    state = RiskState(0, False, frozenset(), frozenset(), {}, {}, {}, 0, D("0"))

    def check(limit: str) -> str | None:
        risk = RiskConfig(
            max_notional=D("1000"),
            max_open_exposure_per_venue=D("1000"),
            max_open_exposure_per_market=D(limit),
            max_book_age_ms=1000,
        )
        refusal = check_pair(
            spread,
            risk,
            D("0"),
            state,
            lambda v, m: book,
            lambda v, a: D("1000000"),
            lambda v: FeeSchedule(D("0"), D("0")),
            lambda m: ("X", "USD"),
        )
        return None if refusal is None else refusal.code

    # Each leg alone (100, 101) is under 150; together (201) they are not.
    assert check("150") == "EXPOSURE_MARKET"
    assert check("201") is None


# --- 15. the launch path: legs, journal order, GC, the risk state's open pairs -----------------------


class OrderLog(DelegatingVenue):
    """Logs, in one list shared by every venue, when an order is handed over and when its answer
    comes back, with whether the cyclic GC was enabled at that moment."""

    def __init__(self, inner: SimulatedVenue, log: list[tuple[str, str, bool]]) -> None:
        super().__init__(inner)
        self.log = log

    async def place_order(self, request: OrderRequest) -> OrderReport:
        self.log.append(("handed", request.client_order_id, gc.isenabled()))
        report = await super().place_order(request)
        self.log.append(("answered", request.client_order_id, gc.isenabled()))
        return report


def logged(log: list[tuple[str, str, bool]]) -> Callable[[SimulatedVenue], Venue]:
    return lambda v: OrderLog(v, log)


def log_journal_writes(run: Run, log: list[tuple[str, str, bool]]) -> None:
    """Each journal write, logged in ``log`` as it is asked for (before it runs on the journal's thread)."""
    journal = run.engine.journal
    for name in ("record_intent", "record_pair", "record_leg", "record_fills", "record_action"):
        original = getattr(journal, name)

        def wrapper(*args: Any, _name: str = name, _original: Any = original) -> Any:
            target = args[2] if _name == "record_action" else ""
            log.append((_name, target, gc.isenabled()))
            return _original(*args)

        setattr(journal, name, wrapper)


def between(log: list[tuple[str, str, bool]], first: int, last: int) -> list[str]:
    return [name for name, _, _ in log[first + 1 : last]]


async def test_parallel_legs_are_both_handed_over_before_either_answers(start: Starter) -> None:
    log: list[tuple[str, str, bool]] = []
    run = await start(wrap={"kraken": logged(log), "coinbase": logged(log)})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    assert run.engine.executor._ex.legs == "parallel"  # the default
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))
    assert view.state is PairState.COMPLETED
    first, second = (leg.client_order_id for leg in entries(view))
    assert [(e, cid) for e, cid, _ in log][:2] == [("handed", first), ("handed", second)]
    assert {e for e, _, _ in log[2:]} == {"answered"}
    await check_journal(run, view)


async def test_sequential_legs_send_the_second_only_after_the_first_answers(start: Starter) -> None:
    log: list[tuple[str, str, bool]] = []
    cfg = quiet_config(execution={"legs": "sequential"})
    run = await start(cfg, wrap={"kraken": logged(log), "coinbase": logged(log)})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    view = await run.settle(pid)

    assert view.state is PairState.COMPLETED
    assert [leg.state for leg in view.legs] == [LegState.FILLED, LegState.FILLED]
    first, second = (leg.client_order_id for leg in entries(view))
    assert [(e, cid) for e, cid, _ in log] == [
        ("handed", first),
        ("answered", first),
        ("handed", second),
        ("answered", second),
    ]
    legs = entries(view)
    assert legs[0].answered_ns is not None and legs[1].sent_ns is not None
    assert legs[1].sent_ns >= legs[0].answered_ns
    await check_journal(run, view)
    await check_realized(run, view)


async def test_sequential_legs_still_send_the_second_after_a_rejection_and_unwind(start: Starter) -> None:
    log: list[tuple[str, str, bool]] = []
    cfg = quiet_config(execution={"legs": "sequential"})
    run = await start(cfg, wrap={"kraken": logged(log), "coinbase": logged(log)})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.faults(spread.legs[0].venue, REJECT)
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))

    assert view.state is PairState.UNWOUND
    first, second = entries(view)
    assert first.state is LegState.REJECTED and second.state is LegState.FILLED
    order = [(e, cid) for e, cid, _ in log]
    assert order.index(("handed", second.client_order_id)) > order.index(("answered", first.client_order_id))
    assert sum(leg.filled for leg in unwinds(view)) == second.filled
    assert view.exposure == ()
    await check_journal(run, view)


async def test_the_intent_is_the_only_journal_write_between_confirm_and_the_legs(start: Starter) -> None:
    log: list[tuple[str, str, bool]] = []
    run = await start(wrap={"kraken": logged(log), "coinbase": logged(log)})
    log_journal_writes(run, log)
    spread = await run.paying()
    assert spread.opportunity_id is not None
    del log[:]
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    assert log == []  # confirm itself queues no journal write (the intent is written by the pair's task)
    view = await run.settle(pid)
    assert view.state is PairState.COMPLETED

    names = [name for name, _, _ in log]
    assert names[0] == "record_intent"
    handed = [i for i, (name, _, _) in enumerate(log) if name == "handed"]
    assert len(handed) == 2
    assert between(log, 0, handed[-1]) == ["handed"]  # nothing else queued before both legs are out
    confirm_write = names.index("record_action")
    assert log[confirm_write][1] == spread.opportunity_id and confirm_write > handed[-1]
    # The operator's confirm is still journaled, and first among the actions.
    await check_journal(run, view)
    assert await actions(run) == [("confirm", spread.opportunity_id, "")]


async def test_actions_taken_while_a_pair_launches_are_journaled_in_order(start: Starter) -> None:
    run = await start()
    spread = await run.paying()
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    run.engine.executor.set_armed(True)  # before the pair's intent is even written
    run.engine.executor.set_armed(False)
    view = await run.settle(pid)
    assert view.state is PairState.COMPLETED
    await run.clock.advance(MARKET_STEP_NS)
    assert [a for a, _, _ in await actions(run)] == ["confirm", "arm", "disarm"]


async def test_gc_is_held_off_while_legs_launch_and_back_on_after(start: Starter) -> None:
    log: list[tuple[str, str, bool]] = []
    run = await start(wrap={"kraken": logged(log), "coinbase": logged(log)})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    assert gc.isenabled()
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    assert not gc.isenabled()  # from confirm ...
    view = await run.settle(pid)
    assert view.state is PairState.COMPLETED
    assert [enabled for e, _, enabled in log if e == "handed"] == [False, False]  # ... through the hand-over
    assert [enabled for e, _, enabled in log if e == "answered"] == [True, True]  # ... and no longer
    assert gc.isenabled()


async def test_gc_comes_back_on_whichever_way_a_launch_ends(start: Starter) -> None:
    run = await start()
    # Aborted before dispatch.
    spread = await run.paying()
    assert spread.opportunity_id is not None
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    run.engine.abort(pid)
    assert (await run.settle(pid)).state is PairState.ABORTED
    assert gc.isenabled()

    # The journal refuses the intent: nothing is sent.
    original = run.engine.journal.record_intent

    async def refuse(*args: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    run.engine.journal.record_intent = refuse  # type: ignore[method-assign]
    spread = await run.paying()
    assert spread.opportunity_id is not None
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))
    assert view.state is PairState.ABORTED and "journal refused" in (view.reason or "")
    assert gc.isenabled()
    run.engine.journal.record_intent = original  # type: ignore[method-assign]

    # GC already off (the caller's choice): left off.
    gc.disable()
    try:
        spread = await run.paying()
        assert spread.opportunity_id is not None
        assert (await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))).state is PairState.COMPLETED
        assert not gc.isenabled()
    finally:
        gc.enable()

    # The engine stops while a pair is launching.
    spread = await run.paying()
    assert spread.opportunity_id is not None
    run.engine.quote_and_confirm(spread.opportunity_id)
    assert not gc.isenabled()
    await run.stop()
    assert gc.isenabled()


def reference_risk_state(executor: Any) -> RiskState:
    """The risk state computed the way it was before open pairs were indexed: over every pair."""
    reserved: dict[tuple[str, str], Decimal] = {}
    by_venue: dict[str, Decimal] = {}
    by_market: dict[str, Decimal] = {}
    in_flight = 0
    now = executor._clock.now_ns()
    day = now // (86_400 * NS_PER_S)
    earlier_day, earlier = executor.ledger._earlier_realized
    realized = earlier if earlier_day // (86_400 * NS_PER_S) == day else D(0)
    blocked = set(executor.ledger.blocked_from_journal.values())
    for pair in executor.pairs.values():
        if pair.created_ns // (86_400 * NS_PER_S) == day and pair.realized_pnl is not None:
            realized += pair.realized_pnl
        if pair.state is PairState.BROKEN and not pair.resolved:
            blocked.add(pair.spread.group)
            for e in pair.exposure:
                price = next(
                    (
                        leg.request.limit_price
                        for leg in pair.entries
                        if leg.request.venue == e.venue and leg.request.market == e.market
                    ),
                    D(0),
                )
                by_venue[e.venue] = by_venue.get(e.venue, D(0)) + e.quantity * price
                by_market[e.market] = by_market.get(e.market, D(0)) + e.quantity * price
        if pair.state.is_terminal:
            continue
        in_flight += 1
        for leg in pair.entries:
            r = leg.request
            notional = r.quantity * r.limit_price
            by_venue[r.venue] = by_venue.get(r.venue, D(0)) + notional
            by_market[r.market] = by_market.get(r.market, D(0)) + notional
            base, quote = executor._assets(r.market)
            key = (r.venue, quote) if r.side is Side.BUY else (r.venue, base)
            fee = executor._fees(r.venue, r.market).fee(r.limit_price, r.quantity)
            amount = notional + fee if r.side is Side.BUY else r.quantity
            reserved[key] = reserved.get(key, D(0)) + amount
    return RiskState(
        now,
        executor.halted,
        frozenset(blocked),
        frozenset(v for v, b in executor.breakers.items() if b.tripped),
        reserved,
        by_venue,
        by_market,
        in_flight,
        realized,
        frozenset(p.spread.key for p in executor.pairs.values() if not p.state.is_terminal),
        executor.ledger._guard.blocked_assets(),
        executor.ledger._guard.stale_venues(),
    )


async def test_the_risk_state_over_open_pairs_equals_the_one_over_every_pair(start: Starter) -> None:
    dimmable: dict[str, DimmableVenue] = {}

    def dim(v: SimulatedVenue) -> Venue:
        dimmable[v.name] = DimmableVenue(v)
        return dimmable[v.name]

    run = await start(default_config(), wrap={"kraken": dim})  # the demo's fault rates: every outcome
    executor = run.engine.executor
    checks = 0

    def same() -> None:
        nonlocal checks
        assert executor.risk_state() == reference_risk_state(executor)
        checks += 1

    run.engine.set_armed(True)
    for _ in range(15 * NS_PER_S // STEP_NS):
        await run.clock.advance(STEP_NS)
        same()
    run.engine.set_armed(False)
    await run.run_until(lambda: not executor.in_flight(), limit_s=60)
    same()
    states = {p.state for p in executor.pairs.values()}
    assert len(executor.pairs) >= 5 and PairState.COMPLETED in states

    # A BROKEN pair (kraken goes dark mid-pair): blocked and exposed until resolved, then swept.
    spread = await run.paying(group=None, venue="kraken", limit_s=300)
    assert spread.opportunity_id is not None
    dimmable["kraken"].dark = True
    pid = run.engine.quote_and_confirm(spread.opportunity_id)
    await run.run_until(lambda: executor.pairs[pid].state.is_terminal, limit_s=120)
    assert executor.pairs[pid].state is PairState.BROKEN
    same()
    assert run.engine.executor.resolve(pid, "checked by hand")
    same()

    # The next day: yesterday's realized PnL no longer counts, on either side.
    run.clock.set(run.clock.now_ns() + 86_400 * NS_PER_S)
    same()
    assert executor.risk_state().realized_today == 0
    assert checks > 100


@pytest.mark.parametrize("legs", ["parallel", "sequential"])
def test_execution_legs_option(legs: str) -> None:
    import copy

    from arbtui.config import ConfigError, default_config_data, parse_config

    assert default_config().execution.legs == "parallel"
    data = copy.deepcopy(default_config_data())
    data["execution"]["legs"] = legs
    assert parse_config(data, "t.toml").execution.legs == legs
    data["execution"]["legs"] = "both"
    with pytest.raises(ConfigError) as info:
        parse_config(data, "t.toml")
    assert any("execution.legs" in p and "'sequential'" in p for p in info.value.problems)


class StillMatchingVenue(DelegatingVenue):
    """Answers an IOC with a non-final OPEN report (a venue still matching, e.g. Polymarket "delayed")
    although the order has in fact executed; status queries tell the truth."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self.status_queries = 0

    async def place_order(self, request: OrderRequest) -> OrderReport:
        report = await self.inner.place_order(request)
        return replace(report, status=OrderStatus.OPEN, filled_quantity=D(0), average_price=None, fee=D(0), fills=())

    async def order_status(self, client_order_id: str) -> OrderReport:
        self.status_queries += 1
        return await self.inner.order_status(client_order_id)


class ExaggeratingVenue(DelegatingVenue):
    """Its first answer claims a thousand times the ordered quantity (a unit mismatch); status queries
    tell the truth."""

    async def place_order(self, request: OrderRequest) -> OrderReport:
        report = await self.inner.place_order(request)
        return replace(report, filled_quantity=request.quantity * 1000)


async def test_a_non_final_ioc_answer_is_asked_about_not_left_broken(start: Starter) -> None:
    venues: dict[str, StillMatchingVenue] = {}

    def wrap(v: SimulatedVenue) -> Venue:
        venues[v.name] = StillMatchingVenue(v)
        return venues[v.name]

    run = await start(wrap={"kraken": wrap})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))
    assert view.state is PairState.COMPLETED and view.exposure == ()
    assert venues["kraken"].status_queries >= 1


async def test_a_report_claiming_more_than_ordered_is_not_applied(start: Starter) -> None:
    run = await start(wrap={"kraken": ExaggeratingVenue})
    spread = await run.paying()
    assert spread.opportunity_id is not None
    view = await run.settle(run.engine.quote_and_confirm(spread.opportunity_id))
    assert view.state is PairState.COMPLETED  # the status query's truth, not the exaggeration
    assert all(leg.filled == leg.quantity for leg in view.legs)
