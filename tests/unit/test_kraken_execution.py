"""The executor's fault handling against a real connector: an :class:`Engine` built by
``build_engine`` from a config with one simulated venue and one ``kraken`` venue in LIVE mode,
trading with :class:`LoopbackKraken` on 127.0.0.1 through :class:`KrakenTrader` (signed REST, the
real feed). Credentials come from the environment as in production (``ARBTUI_KRAKEN_API_KEY`` /
``ARBTUI_KRAKEN_API_SECRET``), ``RunOptions(live=True)`` and ``[trading] live = true``.

The loopback's BTC/USD sits about 1% below the simulated venue's, so the engine sees a paying
``buy kraken / sell sim`` spread within moments; each test breaks one thing on the Kraken side and
checks where the pair ends. Everything runs on the live clock with short timeouts; final states are
polled with a generous deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbtui.assembly import RunOptions, build_engine
from arbtui.config import parse_config
from arbtui.domain.clock import LiveClock
from arbtui.domain.events import Event, Spread
from arbtui.domain.execution import LegRole, LegState, PairState, PairView
from arbtui.engine.engine import Engine
from arbtui.engine.execution import ConfirmRefusedError
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.loopback.kraken import LoopbackKraken
from arbtui.venues.kraken import KrakenTrader
from arbtui.venues.live import LiveVenue

D = Decimal
DEADLINE_S = 45.0  # generous: a slow machine must not fail a test


async def eventually(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


def config_data(server: LoopbackKraken) -> dict[str, Any]:
    return {
        "mode": "paper",
        "seed": 11,
        "trading": {"live": True},
        "detector": {"min_net_edge_bps": "0", "stale_after_ms": 5000, "expected_latency_ms": 50},
        "risk": {
            "max_notional": "100000",
            "min_expected_pnl": "0",
            "max_open_exposure_per_venue": "1000000",
            "max_open_exposure_per_market": "1000000",
            "max_pairs_in_flight": 4,
            "daily_loss_limit": "100000",
            "max_book_age_ms": 5000,
        },
        "execution": {
            "order_timeout_ms": 3000,  # a lost reply must reach the server first, even on a slow machine
            "status_retries": 5,
            "status_backoff_ms": 100,
            "unwind_band_bps": "200",
            "unwind_attempts": 4,
            "unwind_backoff_ms": 100,
            "complete_missing_leg": False,
            "breaker_consecutive_failures": 20,
            "breaker_min_samples": 100,
        },
        "venues": {
            "sim": {
                "kind": "simulated",
                "fee_model": "notional",
                "maker_fee": "0",
                "taker_fee": "0.0010",
                "sim": {
                    "ack_latency_ms": 5,
                    "latency_jitter_ms": 0,
                    "reject_rate": "0",
                    "timeout_rate": "0",
                    "partial_fill_rate": "0",
                    "noise_bps": "0.5",
                    "update_interval_ms": 50,
                    "spread_ticks": 1,
                    "depth": 10,
                    "balances": {"USD": "1000000", "BTC": "10"},
                },
            },
            "kraken": {**server.venue_table("0.0010"), "rate_tier": "pro"},
        },
        "markets": {
            "BTC-USD": {
                "base": "BTC",
                "quote": "USD",
                "max_quantity": "0.02",
                "sim": {
                    "start_price": "50000",
                    "volatility_bps": "0.2",
                    "jump_rate_per_min": "0",
                    "jump_bps": "0",
                    "level_size": "0.05",
                },
                "venues": {
                    "sim": {"symbol": "BTC-USD", "tick_size": "0.1", "lot_size": "0.00000001"},
                    "kraken": {"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": "0.00000001"},
                },
            },
        },
    }


class Run:
    def __init__(self, engine: Engine, server: LoopbackKraken) -> None:
        self.engine = engine
        self.server = server
        self.events: list[Event] = []
        engine.subscribe(self.events.append)

    def paying(self) -> Spread | None:
        for spread in self.engine.spreads():
            if spread.pays and spread.opportunity_id and {leg.venue for leg in spread.legs} == {"sim", "kraken"}:
                return spread
        return None

    async def confirm(self) -> str:
        """Confirm the first paying sim/kraken opportunity (a new one if the first moved on)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE_S
        while True:
            await eventually(lambda: self.paying() is not None, "a paying sim/kraken spread")
            spread = self.paying()
            assert spread is not None and spread.opportunity_id is not None
            try:
                return self.engine.quote_and_confirm(spread.opportunity_id)
            except ConfirmRefusedError:
                assert loop.time() < end, "every opportunity was refused"
                await asyncio.sleep(0.05)

    async def settle(self, pair_id: str) -> PairView:
        pairs = self.engine.executor.pairs
        await eventually(lambda: pairs[pair_id].state.is_terminal, f"pair {pair_id} final")
        return pairs[pair_id].view()

    def kraken_trader(self) -> KrakenTrader:
        venue = self.engine.venues["kraken"]
        venue = getattr(venue, "inner", venue)  # the builder wraps every venue for the session recorder
        assert isinstance(venue, LiveVenue) and isinstance(venue.trader, KrakenTrader)
        return venue.trader


Starter = Callable[[], Awaitable[Run]]


@pytest.fixture
async def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Starter]:
    servers: list[LoopbackKraken] = []
    engines: list[Engine] = []

    async def _start() -> Run:
        server = LoopbackKraken(
            {"BTC/USD": LoopbackMarket("49500", "0.1", "0.00000001", level_size="0.05", depth=25)},
            seed=5,
            interval_ms=50,
            balances={"USD": D("1000000"), "BTC": D("10")},
        )
        await server.start()
        servers.append(server)
        # Keys come from the environment, exactly as in production; no secrets file is read.
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        monkeypatch.setenv("ARBTUI_KRAKEN_API_KEY", server.credentials["api_key"])
        monkeypatch.setenv("ARBTUI_KRAKEN_API_SECRET", server.credentials["api_secret"])
        config = parse_config(config_data(server), "kraken-execution-test")
        engine, _ = build_engine(config, LiveClock(), tmp_path / f"journal{len(engines)}.sqlite", RunOptions(live=True))
        engines.append(engine)
        assert engine.mode == "live"
        run = Run(engine, server)
        await engine.start()
        return run

    yield _start
    for engine in engines:
        await engine.stop()
    for server in servers:
        await server.stop()


def legs_by_venue(view: PairView) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for leg in view.legs:
        out.setdefault(leg.venue, []).append(leg)
    return out


async def test_a_clean_pair_completes_with_a_real_kraken_fill(start: Starter) -> None:
    run = await start()
    assert run.kraken_trader().requests_sent > 0  # live: balances and fees came over signed REST
    view = await run.settle(await run.confirm())
    assert view.state is PairState.COMPLETED, view
    legs = legs_by_venue(view)
    (kraken,), (sim,) = legs["kraken"], legs["sim"]
    assert kraken.state is LegState.FILLED and sim.state is LegState.FILLED
    assert kraken.filled == sim.filled > 0
    order = next(o for o in run.server.orders.values() if o.cl_ord_id == kraken.client_order_id)
    assert order.vol_exec == kraken.filled and order.status == "closed"
    # The journal holds Kraken's own fills (from QueryTrades), adding up to the leg exactly.
    fills = await run.engine.journal.query(
        "SELECT quantity, price, fee FROM fills WHERE client_order_id=? ORDER BY seq", (kraken.client_order_id,)
    )
    assert len(fills) == len(order.trades)
    assert sum(D(q) for q, _, _ in fills) == kraken.filled
    assert sum(D(f) for _, _, f in fills) == order.fee
    assert not view.exposure


async def test_a_kraken_rejection_unwinds_the_other_leg(start: Starter) -> None:
    run = await start()
    run.server.set_balance("USD", D(0))  # behind the engine's back: Kraken answers EOrder:Insufficient funds
    view = await run.settle(await run.confirm())
    assert view.state is PairState.UNWOUND, view
    legs = legs_by_venue(view)
    (kraken,) = legs["kraken"]
    assert kraken.state is LegState.REJECTED and kraken.filled == 0
    assert "Insufficient funds" in (kraken.reason or "")
    sim_entry = next(leg for leg in legs["sim"] if leg.role is LegRole.ENTRY)
    unwinds = [leg for leg in legs["sim"] if leg.role is LegRole.UNWIND]
    assert sim_entry.filled > 0 and unwinds
    assert sum(leg.filled for leg in unwinds) == sim_entry.filled
    assert not view.exposure  # flat again
    assert not any(o.cl_ord_id == kraken.client_order_id for o in run.server.orders.values())


async def test_a_lost_kraken_reply_is_unknown_until_the_status_query_finds_the_fill(start: Starter) -> None:
    run = await start()
    run.server.lose_replies(1)
    pair_id = await run.confirm()
    view = await run.settle(pair_id)
    assert run.server.replies_withheld == 1  # the order executed and its reply never came
    assert view.state is PairState.COMPLETED, view
    (kraken,) = legs_by_venue(view)["kraken"]
    assert kraken.state is LegState.FILLED and kraken.filled > 0
    transitions = await run.engine.journal.query(
        "SELECT to_state FROM transitions WHERE entity='leg' AND entity_id=? ORDER BY id", (kraken.client_order_id,)
    )
    states = [row[0] for row in transitions]
    assert LegState.UNKNOWN.value in states and states[-1] == LegState.FILLED.value
    assert states.index(LegState.UNKNOWN.value) < states.index(LegState.FILLED.value)
    order = next(o for o in run.server.orders.values() if o.cl_ord_id == kraken.client_order_id)
    assert order.vol_exec == kraken.filled
    assert not view.exposure


async def test_a_kraken_500_on_the_order_is_not_a_rejection_and_the_pair_is_unwound(start: Starter) -> None:
    run = await start()
    run.server.fail_requests(500, 1, method="AddOrder")
    view = await run.settle(await run.confirm())
    legs = legs_by_venue(view)
    (kraken,) = legs["kraken"]
    assert kraken.filled == 0
    transitions = await run.engine.journal.query(
        "SELECT to_state FROM transitions WHERE entity='leg' AND entity_id=? ORDER BY id", (kraken.client_order_id,)
    )
    states = [row[0] for row in transitions]
    assert LegState.UNKNOWN.value in states  # a 500 is an unknown outcome first, never a rejection outright
    assert run.server.requests["OpenOrders"] >= 1  # the executor asked Kraken by client order id
    assert not any(o.cl_ord_id == kraken.client_order_id for o in run.server.orders.values())
    assert view.state is PairState.UNWOUND, view
    assert not view.exposure


async def leg_states(run: Run, client_order_id: str) -> list[str]:
    rows = await run.engine.journal.query(
        "SELECT to_state FROM transitions WHERE entity='leg' AND entity_id=? ORDER BY id", (client_order_id,)
    )
    return [row[0] for row in rows]


@pytest.mark.parametrize("error", ["ESession:Invalid session", "ETrade:User Locked"])
async def test_an_auth_or_account_refusal_is_a_rejection_never_unknown(start: Starter, error: str) -> None:
    run = await start()
    run.server.refuse_requests(error, 1, method="AddOrder")
    view = await run.settle(await run.confirm())
    (kraken,) = legs_by_venue(view)["kraken"]
    assert kraken.state is LegState.REJECTED and kraken.filled == 0 and error in (kraken.reason or "")
    assert LegState.UNKNOWN.value not in await leg_states(run, kraken.client_order_id)
    assert run.server.requests["OpenOrders"] == 0  # nothing to ask: Kraken said no
    assert view.state is PairState.UNWOUND, view
    assert not view.exposure


async def test_a_rate_limited_kraken_order_backs_off_and_is_retried_never_unknown(start: Starter) -> None:
    run = await start()
    run.server.refuse_requests("EGeneral:Too many requests", 1, method="AddOrder")
    view = await run.settle(await run.confirm())
    (kraken,) = legs_by_venue(view)["kraken"]
    assert kraken.state is LegState.FILLED and kraken.filled > 0
    assert LegState.UNKNOWN.value not in await leg_states(run, kraken.client_order_id)
    assert run.server.requests["AddOrder"] == 2 and run.kraken_trader().trading_budgets["BTC/USD"].waits >= 1
    assert view.state is PairState.COMPLETED, view


async def test_a_kraken_order_still_rate_limited_after_backing_off_is_a_rejection(start: Starter) -> None:
    run = await start()
    run.server.refuse_requests("EOrder:Rate limit exceeded", 4, method="AddOrder")  # the first send and 3 retries
    view = await run.settle(await run.confirm())
    (kraken,) = legs_by_venue(view)["kraken"]
    assert kraken.state is LegState.REJECTED and "rate limited, not placed" in (kraken.reason or "")
    assert LegState.UNKNOWN.value not in await leg_states(run, kraken.client_order_id)
    assert not any(o.cl_ord_id == kraken.client_order_id for o in run.server.orders.values())
    assert view.state is PairState.UNWOUND, view
    assert not view.exposure
