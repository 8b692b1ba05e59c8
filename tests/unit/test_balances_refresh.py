"""Balance refreshes (arbtui.engine.balances): periodic, after refusals for funds, retried with backoff,
never raising into the executor, and stale balances refused with BALANCE_STALE.

Plain asyncio on a ManualClock with the seeded simulated demo (every fault rate 0); one venue's
``balances()`` is wrapped to fail, hang or count its calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbtui.config import Config, default_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, ManualClock
from arbtui.domain.events import BalancesRefreshed, Event, Spread
from arbtui.domain.execution import LegRole, LegState, LegUpdated, LegView, PairState, PairStateChanged
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.orders import Side, TimeInForce
from arbtui.engine.balances import is_funds_refusal
from arbtui.engine.engine import Engine
from arbtui.engine.journal import Journal
from arbtui.engine.risk import RiskState, check_pair
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.base import Venue, VenueError
from arbtui.venues.simulated import SimulatedVenue
from tests.unit.venue_wrappers import DelegatingVenue

D = Decimal
START_NS = 1_795_617_000 * NS_PER_S
STEP_NS = 100 * NS_PER_MS
ZERO_FAULTS: dict[str, Any] = {"reject_rate": D(0), "timeout_rate": D(0), "partial_fill_rate": D(0)}


def quiet_config(account: Mapping[str, Any] | None = None, **risk: Any) -> Config:
    cfg = default_config()
    venues = tuple(replace(v, sim=replace(v.sim, **ZERO_FAULTS)) for v in cfg.venues)
    big = {"max_open_exposure_per_venue": D("1000000"), "max_open_exposure_per_market": D("1000000"), **risk}
    return replace(cfg, venues=venues, risk=replace(cfg.risk, **big), account=replace(cfg.account, **(account or {})))


class FlakyBalances(DelegatingVenue):
    """A simulated venue whose ``balances()`` fails (``fail`` more calls), hangs (``hang``) or answers."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self.fail = 0
        self.hang = False
        self.calls = 0
        self._never = asyncio.Event()

    async def balances(self) -> Mapping[str, Decimal]:
        self.calls += 1
        if self.hang:
            await self._never.wait()
        if self.fail > 0:
            self.fail -= 1
            raise VenueError(self.name, "HTTP 503: balances unavailable", retryable=True)
        return await self.inner.balances()


@dataclass
class Run:
    clock: ManualClock
    engine: Engine
    flaky: FlakyBalances
    events: list[Event] = field(default_factory=list)

    def refreshes(self, venue: str) -> list[BalancesRefreshed]:
        return [e for e in self.events if isinstance(e, BalancesRefreshed) and e.venue == venue]

    async def run_until(self, predicate: Callable[[], bool], limit_s: float = 30) -> None:
        waited = 0
        while not predicate():
            assert waited < limit_s * NS_PER_S, f"not reached within {limit_s} s of simulated time"
            await self.clock.advance(STEP_NS)
            waited += STEP_NS

    async def paying(self, venue: str) -> Spread:
        def find() -> Spread | None:
            return next((s for s in self.engine.spreads() if s.pays and venue in (leg.venue for leg in s.legs)), None)

        await self.run_until(lambda: find() is not None)
        spread = find()
        assert spread is not None
        return spread


Starter = Callable[..., Awaitable[Run]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Starter]:
    engines: list[Engine] = []

    async def _start(config: Config | None = None, *, fail_at_start: int = 0) -> Run:
        cfg = config if config is not None else quiet_config()
        clock = ManualClock(START_NS)
        market = SimulatedMarket(cfg, clock)
        journal = Journal(tmp_path / f"j{len(engines)}.sqlite")
        clock.add_settler(journal.wait_idle)
        flaky: list[FlakyBalances] = []
        venues: list[Venue] = []
        for v in market.venues:
            if v.name == "kraken":
                flaky.append(FlakyBalances(v))
                flaky[0].fail = fail_at_start
                venues.append(flaky[0])
            else:
                venues.append(v)
        engine = Engine(cfg, clock, venues, journal, mode="sim", drivers=[("sim-market", market.run)])
        run = Run(clock, engine, flaky[0])
        engine.subscribe(run.events.append)
        engines.append(engine)
        await engine.start()
        return run

    yield _start
    for engine in engines:
        await engine.stop()


async def test_a_failed_refresh_retries_with_backoff_marks_stale_and_never_raises(start: Starter) -> None:
    run = await start(quiet_config({"balance_retries": 3, "balance_backoff_ms": 400}))
    engine, clock = run.engine, run.clock
    good_ns = engine.balance_refresher.last_good_ns["kraken"]
    run.flaky.fail = 10
    calls = run.flaky.calls
    t0 = clock.now_ns()
    task = asyncio.ensure_future(engine.refresh_balances("kraken"))  # what the executor awaits after a pair
    await clock.advance(0)
    assert run.flaky.calls == calls + 1 and not task.done()  # the second attempt waits for its backoff
    await clock.advance(399 * NS_PER_MS)
    assert run.flaky.calls == calls + 1
    await clock.advance(1 * NS_PER_MS)
    assert run.flaky.calls == calls + 2  # 400 ms later
    await clock.advance(800 * NS_PER_MS)  # then doubled
    assert run.flaky.calls == calls + 3
    assert task.done() and task.exception() is None  # never raises: the pair that awaited it goes on
    failed = [e for e in run.refreshes("kraken") if not e.ok]
    assert len(failed) == 3
    assert [e.ts_ns - t0 for e in failed] == [0, 400 * NS_PER_MS, 1200 * NS_PER_MS]
    assert all(e.stale_since_ns == good_ns for e in failed)  # stale since the last good refresh
    assert "balances left stale" in failed[-1].detail and "HTTP 503" in failed[-1].detail
    assert engine.stale_balances() == {"kraken": good_ns}
    assert engine.account_guard.stale_venues() == frozenset({"kraken"})
    spread = await run.paying("kraken")
    refusal = engine.would_refuse(spread)
    assert refusal is not None and refusal.code == "BALANCE_STALE"
    # The next good refresh clears it.
    run.flaky.fail = 0
    assert await engine.balance_refresher.refresh("kraken")
    last = run.refreshes("kraken")[-1]
    assert last.ok and last.stale_since_ns is None and "fresh again" in last.detail
    assert engine.stale_balances() == {}
    spread = await run.paying("kraken")
    refusal = engine.would_refuse(spread)
    assert refusal is None or refusal.code != "BALANCE_STALE"


async def test_a_pair_that_ends_while_balances_fail_completes_not_broken(start: Starter) -> None:
    run = await start(quiet_config({"balance_retries": 2, "balance_backoff_ms": 100}))
    engine = run.engine
    spread = await run.paying("kraken")
    run.flaky.fail = 100  # every refresh after the pair fails
    engine.set_armed(True)
    await run.run_until(lambda: any(isinstance(e, PairStateChanged) for e in run.events))
    engine.set_armed(False)
    pairs = engine.executor.pairs
    await run.run_until(lambda: all(p.view().state.is_terminal for p in pairs.values()))
    states = {p.view().state for p in pairs.values()}
    # Settled by its fills (balanced, or flattened), not BROKEN by the refresh that failed after it.
    assert states and states <= {PairState.COMPLETED, PairState.UNWOUND}, (spread.key, states)
    assert "kraken" in engine.stale_balances()
    assert any(not e.ok for e in run.refreshes("kraken"))
    assert engine.failure is None


async def test_a_venue_that_cannot_answer_at_start_starts_stale_and_the_period_retries(start: Starter) -> None:
    run = await start(quiet_config({"balance_refresh_s": 5, "balance_retries": 1}), fail_at_start=1)
    engine = run.engine
    first = run.refreshes("kraken")
    assert len(first) == 1 and not first[0].ok
    assert first[0].stale_since_ns == START_NS  # never good: stale since the first attempt
    assert engine.stale_balances() == {"kraken": None}
    assert engine.free_balance("kraken", "USD") == 0
    await run.clock.advance(5 * NS_PER_S)
    assert run.refreshes("kraken")[-1].ok
    assert engine.stale_balances() == {}
    assert engine.free_balance("kraken", "USD") > 0


async def test_a_hung_balances_call_times_out_on_the_engine_clock(start: Starter) -> None:
    run = await start(quiet_config({"balance_retries": 1, "balance_timeout_ms": 2000}))
    run.flaky.hang = True
    task = asyncio.ensure_future(run.engine.refresh_balances("kraken"))
    await run.clock.advance(1999 * NS_PER_MS)
    assert not task.done()
    await run.clock.advance(1 * NS_PER_MS)
    assert task.done() and task.exception() is None
    last = run.refreshes("kraken")[-1]
    assert not last.ok and "no answer within 2000 ms" in last.detail


async def test_refreshes_of_one_venue_never_overlap(start: Starter) -> None:
    run = await start(quiet_config({"balance_retries": 1, "balance_timeout_ms": 2000}))
    run.flaky.hang = True
    calls = run.flaky.calls
    first = asyncio.ensure_future(run.engine.refresh_balances("kraken"))
    second = asyncio.ensure_future(run.engine.balance_refresher.refresh("kraken"))
    await run.clock.advance(0)
    run.engine.balance_refresher.request("kraken")  # a refusal for funds while one is running: joins it
    await run.clock.advance(0)
    assert run.flaky.calls == calls + 1
    await run.clock.advance(2 * NS_PER_S)
    assert first.done() and second.done() and second.result() is False


async def test_the_periodic_refresh_reads_every_venue_each_period(start: Starter) -> None:
    run = await start(quiet_config({"balance_refresh_s": 10}))
    calls = run.flaky.calls
    counts = {v: len(run.refreshes(v)) for v in run.engine.venues}
    await run.clock.advance(10 * NS_PER_S - STEP_NS)
    # Pairs and refusals may refresh too, but the demo run does neither unarmed: nothing yet.
    assert run.flaky.calls == calls
    await run.clock.advance(STEP_NS)
    assert run.flaky.calls == calls + 1
    assert {v: len(run.refreshes(v)) for v in run.engine.venues} == {v: n + 1 for v, n in counts.items()}
    assert all(e.ok for e in run.events if isinstance(e, BalancesRefreshed))


async def test_a_leg_rejected_for_funds_asks_for_a_refresh_once_per_gap(start: Starter) -> None:
    run = await start()
    engine = run.engine
    calls = run.flaky.calls

    def rejected(reason: str, cid: str) -> LegUpdated:
        now = run.clock.now_ns()
        leg = LegView(
            cid, "p1", LegRole.ENTRY, "kraken", "BTC-USD", Side.BUY, D("0.1"), D("90000"), TimeInForce.IOC,
            LegState.REJECTED, D(0), None, D(0), now, now, reason,
        )  # fmt: skip
        return LegUpdated(now, leg)

    engine._emit(rejected("EOrder:Insufficient funds", "c1"))
    await run.clock.advance(0)
    assert run.flaky.calls == calls + 1
    engine._emit(rejected("insufficient funds: USD 3 available, 9000 needed", "c2"))
    await run.clock.advance(0)
    assert run.flaky.calls == calls + 1  # within the gap: no second call
    engine._emit(rejected("simulated reject: venue busy, try again", "c3"))
    await run.clock.advance(3 * NS_PER_S)
    assert run.flaky.calls == calls + 1  # not a refusal for funds
    engine._emit(rejected("INSUFFICIENT_FUND", "c4"))
    await run.clock.advance(0)
    assert run.flaky.calls == calls + 2


def test_funds_refusals_are_recognised_in_each_venue_s_words() -> None:
    for reason in (
        "insufficient funds: USD 3 available, 9000 needed",  # simulated venue and paper trader
        "EOrder:Insufficient funds",  # Kraken
        "INSUFFICIENT_FUND",  # Coinbase
        "Insufficient balance in source account",  # Coinbase
        "not enough balance / allowance",  # Polymarket
    ):
        assert is_funds_refusal(reason), reason
    for reason in (None, "", "EOrder:Invalid price", "simulated reject: venue busy, try again"):
        assert not is_funds_refusal(reason), reason


def test_risk_refuses_a_stale_venue_before_sizing() -> None:
    cfg = default_config()
    from arbtui.domain.events import LegPlan, SpreadKind

    legs = (
        LegPlan("coinbase", "BTC-USD", Side.BUY, D("0.1"), D("100"), D("100"), D("0.01")),
        LegPlan("kraken", "BTC-USD", Side.SELL, D("0.1"), D("101"), D("101"), D("0.01")),
    )
    spread = Spread("k", SpreadKind.CROSS_VENUE, "BTC-USD", legs, D("0.1"), D(100), D(50), D(0), D(0), D(1), "o1", 0)
    book = OrderBook(depth=5)
    book.apply_update([(D("100"), D("1"))], [(D("101"), D("1"))], 0)

    def state(stale: frozenset[str]) -> RiskState:
        return RiskState(0, False, frozenset(), frozenset(), {}, {}, {}, 0, D(0), stale_venues=stale)

    def check(stale: frozenset[str], balance: Decimal) -> str | None:
        refusal = check_pair(
            spread,
            cfg.risk,
            D(0),
            state(stale),
            lambda v, m: book,
            lambda v, a: balance,
            lambda v: FeeSchedule(D(0), D(0)),
            lambda m: ("BTC", "USD"),
        )
        return None if refusal is None else refusal.code

    assert check(frozenset(), D(1000)) is None
    assert check(frozenset({"kraken"}), D(1000)) == "BALANCE_STALE"
    assert check(frozenset({"kraken"}), D(0)) == "BALANCE_STALE"  # before BALANCE: the figures are not known
    assert check(frozenset(), D(0)) == "BALANCE"
