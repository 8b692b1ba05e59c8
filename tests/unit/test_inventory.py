"""Position reconciliation (arbtui.engine.inventory): expected inventory from fills against venue balances.

The reconciler alone, fed hand-made events; then the engine on the seeded simulated demo (ManualClock):
an ARMED run whose pairs fill shows no drift, and a balance moved on a simulated venue with no fill
raises the alarm, journals it and blocks new pairs there with POSITION_DRIFT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbtui.assembly import build_engine
from arbtui.config import Config, default_config
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, ManualClock
from arbtui.domain.events import Event, PositionDriftCleared, PositionDrifted, Spread
from arbtui.domain.execution import LegRole, LegState, LegUpdated, LegView, PairState, PairStateChanged, PairView
from arbtui.domain.orders import Side, TimeInForce
from arbtui.engine.engine import Engine
from arbtui.engine.inventory import AccountGuard, PositionReconciler
from arbtui.engine.risk import RiskState, check_pair
from arbtui.venues.simulated import SimulatedVenue

D = Decimal
START_NS = 1_795_617_000 * NS_PER_S
STEP_NS = 100 * NS_PER_MS
ZERO_FAULTS: dict[str, Any] = {"reject_rate": D(0), "timeout_rate": D(0), "partial_fill_rate": D(0)}
BTC = "BTC-USD"


def quiet_config(account: Mapping[str, Any] | None = None) -> Config:
    cfg = default_config()
    venues = tuple(replace(v, sim=replace(v.sim, **ZERO_FAULTS)) for v in cfg.venues)
    return replace(cfg, venues=venues, account=replace(cfg.account, **(account or {})))


# --- the reconciler alone ----------------------------------------------------------------------------


def leg(
    cid: str,
    side: Side,
    filled: str,
    avg: str | None,
    fee: str,
    *,
    venue: str = "kraken",
    sent_ns: int = 10,
    state: LegState = LegState.PARTIALLY_FILLED,
) -> LegView:
    return LegView(
        cid, "p1", LegRole.ENTRY, venue, BTC, side, D("1"), D("100"), TimeInForce.IOC, state, D(filled),
        None if avg is None else D(avg), D(fee), sent_ns, sent_ns, None,
    )  # fmt: skip


def pair(state: PairState, *legs: LegView) -> PairStateChanged:
    view = PairView("p1", "o1", "k", BTC, state, legs, D(0), None, (), 0, None, None, None)
    return PairStateChanged(20, view, None)


def reconciler(tolerance: str = "0.01", proceeds: bool = False) -> PositionReconciler:
    return PositionReconciler(default_config().instruments(), D(tolerance), fees_in_proceeds=lambda v: proceeds)


def test_fills_are_counted_once_per_client_order_id_by_their_cumulative_delta() -> None:
    r = reconciler()
    r.observe("kraken", {"BTC": D("1"), "USD": D("1000")}, 0, 0)  # the baseline
    r.on_event(LegUpdated(11, leg("b1", Side.BUY, "0.3", "100", "0.03")))
    r.on_event(LegUpdated(12, leg("b1", Side.BUY, "0.3", "100", "0.03")))  # the same figures again: nothing
    r.on_event(LegUpdated(13, leg("b1", Side.BUY, "0.5", "100.4", "0.05", state=LegState.FILLED)))
    assert r.expected_change("kraken", "BTC") == D("0.5")
    assert r.expected_change("kraken", "USD") == -(D("0.5") * D("100.4") + D("0.05"))
    r.on_event(LegUpdated(14, leg("s1", Side.SELL, "0.2", "101", "0.02", state=LegState.FILLED)))
    assert r.expected_change("kraken", "BTC") == D("0.3")
    assert r.expected_change("kraken", "USD") == D("-50.25") + D("20.2") - D("0.02")


def test_a_venue_charging_fees_in_proceeds_takes_a_buy_s_fee_from_the_tokens() -> None:
    r = reconciler(proceeds=True)
    r.observe("kraken", {}, 0, 0)
    r.on_event(LegUpdated(11, leg("b1", Side.BUY, "10", "0.5", "0.1")))  # fee worth 0.1 USD = 0.2 tokens
    assert r.expected_change("kraken", "BTC") == D("9.8")
    assert r.expected_change("kraken", "USD") == D("-5")
    r.on_event(LegUpdated(12, leg("s1", Side.SELL, "4", "0.5", "0.04")))  # a sell's proceeds are the quote
    assert r.expected_change("kraken", "USD") == D("-5") + D("2") - D("0.04")


def test_a_leg_sent_before_the_baseline_counts_only_what_it_fills_afterwards() -> None:
    r = reconciler()
    r.observe("kraken", {"BTC": D("5")}, 100, 100)
    r.on_event(LegUpdated(101, leg("old", Side.BUY, "0.4", "100", "0", sent_ns=50)))
    assert r.expected_change("kraken", "BTC") == 0  # already in the baseline
    r.on_event(LegUpdated(102, leg("old", Side.BUY, "0.6", "100", "0", sent_ns=50)))
    assert r.expected_change("kraken", "BTC") == D("0.2")


def test_drift_is_an_alarm_on_the_second_quiet_refresh_and_clears_when_it_agrees() -> None:
    r = reconciler()
    base = {"BTC": D("1"), "USD": D("1000")}
    r.observe("kraken", base, 0, 0)
    moved = {"BTC": D("1"), "USD": D("900")}  # 100 USD gone, no fill explains it
    assert r.observe("kraken", moved, 1, 1) == []  # once: could be a race
    events = r.observe("kraken", moved, 2, 2)
    assert events == [PositionDrifted(2, "kraken", "USD", D(0), D(-100), D(-100))]
    assert r.blocked_assets() == frozenset({("kraken", "USD")})
    assert r.observe("kraken", moved, 3, 3) == []  # raised once
    cleared = r.observe("kraken", base, 4, 4)
    assert cleared == [PositionDriftCleared(4, "kraken", "USD", D(0), "balance agrees with fills")]
    assert r.blocked_assets() == frozenset()


def test_a_drift_within_the_tolerance_or_the_lot_is_not_an_alarm() -> None:
    r = reconciler("0.01")
    assert r.tolerance("kraken", "USD") == D("0.01")
    lot = default_config().instruments().listing("kraken", BTC).lot_size
    assert r.tolerance("kraken", "BTC") == max(D("0.01"), lot)
    r.observe("kraken", {"BTC": D("1"), "USD": D("1000")}, 0, 0)
    near = {"BTC": D("1") + lot, "USD": D("1000.01")}
    for t in (1, 2, 3):
        assert r.observe("kraken", near, t, t) == []
    assert r.blocked_assets() == frozenset()


def test_refreshes_while_a_pair_is_in_flight_or_a_leg_moved_neither_confirm_nor_clear() -> None:
    r = reconciler()
    r.observe("kraken", {"USD": D("1000")}, 0, 0)
    moved = {"USD": D("900")}
    r.on_event(pair(PairState.DISPATCHING, leg("b1", Side.BUY, "0", None, "0")))
    assert r.venues_in_flight() == frozenset({"kraken"})
    for t in (30, 31, 32):
        assert r.observe("kraken", moved, t, t) == []
    assert r.skipped == 3 and r.observations == 0
    r.on_event(pair(PairState.ABORTED, leg("b1", Side.BUY, "0", None, "0", state=LegState.REJECTED)))
    assert r.observe("kraken", moved, 10, 40) == []  # began before the pair's last change (at 20): skipped
    assert r.observe("kraken", moved, 41, 41) == []  # the first quiet one
    assert [type(e) for e in r.observe("kraken", moved, 42, 42)] == [PositionDrifted]


def test_the_guard_and_the_risk_check_refuse_a_drifted_asset_on_its_venue_only() -> None:
    r = reconciler()
    r.observe("kraken", {"USD": D("1000")}, 0, 0)
    r.observe("kraken", {"USD": D("1")}, 1, 1)
    r.observe("kraken", {"USD": D("1")}, 2, 2)

    class NoStale:
        def stale_venues(self) -> frozenset[str]:
            return frozenset()

    guard = AccountGuard(r, NoStale())
    assert guard.blocked_assets() == frozenset({("kraken", "USD")})
    assert guard.stale_venues() == frozenset()
    cfg = default_config()
    from arbtui.domain.book import OrderBook
    from arbtui.domain.events import LegPlan, SpreadKind
    from arbtui.domain.fees import FeeSchedule

    book = OrderBook(depth=5)
    book.apply_update([(D("100"), D("1"))], [(D("101"), D("1"))], 0)

    def code(buy: str, sell: str) -> str | None:
        legs = (
            LegPlan(buy, BTC, Side.BUY, D("0.1"), D("100"), D("100"), D("0")),
            LegPlan(sell, BTC, Side.SELL, D("0.1"), D("101"), D("101"), D("0")),
        )
        spread = Spread("k", SpreadKind.CROSS_VENUE, BTC, legs, D("0.1"), D(100), D(50), D(0), D(0), D(1), "o", 0)
        blocked = guard.blocked_assets()
        state = RiskState(0, False, frozenset(), frozenset(), {}, {}, {}, 0, D(0), blocked_assets=blocked)
        refusal = check_pair(
            spread,
            cfg.risk,
            D(0),
            state,
            lambda v, m: book,
            lambda v, a: D(1000),
            lambda v: FeeSchedule(D(0), D(0)),
            lambda m: ("BTC", "USD"),
        )
        return None if refusal is None else refusal.code

    assert code("coinbase", "kraken") == "POSITION_DRIFT"  # the sell's quote proceeds land in kraken USD
    assert code("kraken", "coinbase") == "POSITION_DRIFT"
    r.rebase("kraken", "USD", 3)
    assert code("coinbase", "kraken") is None


# --- through the engine ---------------------------------------------------------------------------------


@pytest.fixture
async def engine_of(tmp_path: Path) -> AsyncIterator[Callable[[Config], Any]]:
    engines: list[Engine] = []

    async def make(cfg: Config) -> tuple[Engine, ManualClock, list[Event]]:
        clock = ManualClock(START_NS)
        engine, _ = build_engine(cfg, clock, tmp_path / f"j{len(engines)}.sqlite")
        events: list[Event] = []
        engine.subscribe(events.append)
        engines.append(engine)
        await engine.start()
        return engine, clock, events

    yield make
    for engine in engines:
        await engine.stop()


def sim(engine: Engine, name: str) -> SimulatedVenue:
    venue: Any = engine.venues[name]
    inner = getattr(venue, "inner", venue)  # the session recorder's wrapper
    assert isinstance(inner, SimulatedVenue)
    return inner


async def test_a_seeded_armed_run_with_filled_pairs_shows_no_drift(engine_of: Any) -> None:
    engine, clock, events = await engine_of(quiet_config({"balance_refresh_s": 5}))
    engine.set_armed(True)
    for _ in range(60 * NS_PER_S // STEP_NS):
        await clock.advance(STEP_NS)
    engine.set_armed(False)
    for _ in range(100):
        if not engine.executor.in_flight():
            break
        await clock.advance(STEP_NS)
    await clock.advance(5 * NS_PER_S)  # two quiet periodic refreshes after the last pair
    await clock.advance(5 * NS_PER_S)
    views = [p.view() for p in engine.executor.pairs.values()]
    completed = [p for p in views if p.state is PairState.COMPLETED]
    assert len(completed) >= 3, [p.state for p in views]
    r = engine.reconciler
    assert r.observations >= 4  # quiet refreshes were compared, not all skipped
    moved = {(v, a) for v in ("kraken", "coinbase") for a in ("BTC", "USD") if r.expected_change(v, a) != 0}
    assert moved  # fills were counted
    assert [e for e in events if isinstance(e, PositionDrifted)] == []
    assert engine.position_drifts() == []
    rows = await engine.journal.query("SELECT COUNT(*) FROM alarms")
    assert rows == [(0,)]


async def test_a_balance_moved_with_no_fill_raises_journals_and_blocks_the_asset(engine_of: Any) -> None:
    engine, clock, events = await engine_of(quiet_config({"balance_refresh_s": 5}))
    kraken = sim(engine, "kraken")
    kraken._balances["USD"] -= D("2500")  # money leaves the account behind the engine's back
    await clock.advance(5 * NS_PER_S)
    assert [e for e in events if isinstance(e, PositionDrifted)] == []  # one refresh is not enough
    await clock.advance(5 * NS_PER_S)
    drifts = [e for e in events if isinstance(e, PositionDrifted)]
    assert [(d.venue, d.asset, d.expected, d.actual, d.difference) for d in drifts] == [
        ("kraken", "USD", D(0), D(-2500), D(-2500))
    ]
    assert engine.account_guard.blocked_assets() == frozenset({("kraken", "USD")})
    rows = await engine.journal.query("SELECT kind, venue, asset, raised, expected, actual, difference FROM alarms")
    assert rows == [("position_drift", "kraken", "USD", 1, "0", "-2500", "-2500")]

    def paying_on(venue: str) -> Spread | None:
        return next((s for s in engine.spreads() if s.pays and venue in (leg.venue for leg in s.legs)), None)

    for _ in range(600):
        if paying_on("kraken") is not None:
            break
        await clock.advance(10 * NS_PER_MS)
    spread = paying_on("kraken")
    assert spread is not None
    refusal = engine.would_refuse(spread)
    assert refusal is not None and refusal.code == "POSITION_DRIFT"
    engine.set_armed(True)  # ARMED confirms go through the same checks: nothing is sent on kraken
    sent = kraken.orders_received
    for _ in range(20):
        await clock.advance(STEP_NS)
    assert kraken.orders_received == sent
    engine.set_armed(False)
    # The operator accounts for it: the alarm clears (journaled) and pairs may trade there again.
    assert engine.rebase_position("kraken", "USD")
    await clock.advance(0)
    assert engine.account_guard.blocked_assets() == frozenset()
    assert [e.detail for e in events if isinstance(e, PositionDriftCleared)] == ["re-based by the operator"]
    rows = await engine.journal.query("SELECT raised, detail FROM alarms ORDER BY id")
    assert rows == [(1, ""), (0, "re-based by the operator")]
