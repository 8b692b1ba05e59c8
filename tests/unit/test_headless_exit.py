"""Headless exit codes (arbtui.headless, ``arbtui run --headless``): 0 ok, 1 the engine failed, 3 BROKEN
exposure remains; the summary says why. Simulated venues on a ManualClock; a failing market driver or a
venue gone dark is injected where the headless runner builds its engine."""

from __future__ import annotations

import asyncio
import decimal
import json
from pathlib import Path
from typing import Any

import pytest

from arbtui import assembly as builder
from arbtui.cli import main
from arbtui.config import Config
from arbtui.domain.clock import Clock
from arbtui.domain.orders import OrderReport, OrderRequest
from arbtui.engine.engine import Engine
from arbtui.engine.journal import Journal
from arbtui.headless import EXIT_BROKEN_EXPOSURE, EXIT_ENGINE_FAILED, EXIT_OK, exit_status
from arbtui.sim.market import SimulatedMarket
from arbtui.venues.simulated import SimulatedVenue
from tests.unit.venue_wrappers import DelegatingVenue


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_a_clean_headless_run_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, summary, err = run_cli(["run", "--headless", "--duration", "20", "--armed", "--json"], capsys)
    assert code == EXIT_OK == 0
    assert summary["exit"] == {"code": 0, "reason": "every pair final, no BROKEN exposure"}
    assert summary["failure"] is None and summary["pairs"]["total"] > 0
    assert summary["account"]["position_drifts"] == [] and summary["account"]["stale_balances"] == {}
    assert "exit" not in err


def test_an_engine_failure_in_the_market_driver_exits_1_and_says_why(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = SimulatedMarket.run

    async def overflowing(self: SimulatedMarket) -> None:
        task = asyncio.ensure_future(real_run(self))
        await self._clock.sleep(3_000_000_000)  # three seconds in: the price arithmetic overflows
        task.cancel()
        raise decimal.Overflow("[<class 'decimal.Overflow'>]")

    monkeypatch.setattr(SimulatedMarket, "run", overflowing)
    code, summary, err = run_cli(["run", "--headless", "--duration", "30", "--json"], capsys)
    assert code == EXIT_ENGINE_FAILED == 1
    assert summary["exit"]["code"] == 1
    assert summary["exit"]["reason"].startswith("the engine failed: Overflow")
    assert summary["failure"].startswith("Overflow")
    assert "exit 1: the engine failed" in err


class DarkVenue(DelegatingVenue):
    """Forwards market data; takes orders and status queries and never answers (a venue gone dark)."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self._never = asyncio.Event()

    async def place_order(self, request: OrderRequest) -> OrderReport:
        await self._never.wait()
        raise AssertionError("unreachable")

    async def cancel_order(self, client_order_id: str) -> OrderReport:
        await self._never.wait()
        raise AssertionError("unreachable")

    async def order_status(self, client_order_id: str) -> OrderReport:
        await self._never.wait()
        raise AssertionError("unreachable")


def dark_kraken_engine(config: Config, clock: Clock, path: Path | None, options: Any = None) -> tuple[Engine, None]:
    """assembly.build_engine's wiring for simulated venues, with kraken gone dark."""
    market = SimulatedMarket(config, clock)
    assert path is not None
    journal = Journal(path)
    add_settler = getattr(clock, "add_settler", None)
    if add_settler is not None:
        add_settler(journal.wait_idle)
    venues: list[Any] = [DarkVenue(v) if v.name == "kraken" else v for v in market.venues]
    return Engine(config, clock, venues, journal, mode="sim", drivers=[("sim-market", market.run)]), None


def test_broken_exposure_left_at_the_end_exits_3_naming_the_pairs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import arbtui.headless

    assert arbtui.headless.build_engine is builder.build_engine
    monkeypatch.setattr(arbtui.headless, "build_engine", dark_kraken_engine)
    code, summary, err = run_cli(["run", "--headless", "--duration", "20", "--armed", "--json"], capsys)
    assert code == EXIT_BROKEN_EXPOSURE == 3
    assert summary["failure"] is None
    assert summary["pairs"]["by_state"].get("broken", 0) >= 1
    reason = summary["exit"]["reason"]
    assert "BROKEN pair(s) unresolved" in reason and "kraken BTC-USD" in reason
    assert summary["exposure"]  # what is held is in the summary too
    assert f"exit 3: {reason}" in err


async def test_exit_status_reads_failure_first_then_unresolved_broken_pairs(tmp_path: Path) -> None:
    from arbtui.config import default_config
    from arbtui.domain.clock import NS_PER_MS, ManualClock
    from arbtui.domain.execution import PairState

    clock = ManualClock(1_795_617_000_000_000_000)
    engine, _ = dark_kraken_engine(default_config(), clock, tmp_path / "j.sqlite")
    await engine.start()
    try:
        assert exit_status(engine) == (EXIT_OK, "every pair final, no BROKEN exposure")
        engine.set_armed(True)
        for _ in range(400):
            await clock.advance(100 * NS_PER_MS)
            if any(p.view().state is PairState.BROKEN for p in engine.executor.pairs.values()):
                break
        engine.set_armed(False)
        broken = [p.view() for p in engine.executor.pairs.values() if p.view().state is PairState.BROKEN]
        assert broken
        assert exit_status(engine)[0] == EXIT_BROKEN_EXPOSURE
        engine.failure = ArithmeticError("boom")
        assert exit_status(engine) == (EXIT_ENGINE_FAILED, "the engine failed: ArithmeticError: boom")
        engine.failure = None
        for view in broken:
            assert engine.resolve(view.pair_id, "flattened by hand")
        code, _ = exit_status(engine)
        assert code != EXIT_BROKEN_EXPOSURE
    finally:
        await engine.stop()
