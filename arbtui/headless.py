"""Headless runs: the engine without the UI, for scripts, tests and CI.

``arbtui run --headless --duration S [--armed] [--seed N] --json`` runs the simulated demo for S
seconds of *simulated* time on a manual clock (as fast as the machine allows), optionally ARMED so
the engine confirms opportunities by itself, then stops confirming and lets every pair in flight
reach a final state before printing one JSON summary. The same seed prints the same summary, apart
from the wall-clock figures under ``"wall"``.

Exit codes (``arbtui run --headless`` and ``arbtui replay --headless``; the summary's ``"exit"`` says
which and why):

- ``0`` (:data:`EXIT_OK`): the run ended with every pair final and no BROKEN exposure;
- ``1`` (:data:`EXIT_ENGINE_FAILED`): the engine failed (a driver or engine task raised, e.g. an
  arithmetic overflow in the market driver); checked first;
- ``2``: bad input (configuration, options, session file), before anything ran (the CLI's);
- ``3`` (:data:`EXIT_BROKEN_EXPOSURE`): BROKEN pairs the operator has not resolved remain, with
  exposure the operator must deal with;
- ``4`` (:data:`EXIT_NOT_FINAL`): pairs were still not final when the settle window ran out.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbtui.assembly import RunOptions, build_engine
from arbtui.config import Config
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, Clock, LiveClock, ManualClock
from arbtui.domain.execution import PairState
from arbtui.engine.engine import Engine
from arbtui.engine.journal import prepare_journal
from arbtui.replay.recorder import check_record_path

START_NS = 1_795_617_000 * NS_PER_S  # 2026-11-25 14:30:00 UTC: a fixed start keeps runs identical
STEP_NS = 100 * NS_PER_MS
SETTLE_LIMIT_NS = 120 * NS_PER_S

EXIT_OK = 0
EXIT_ENGINE_FAILED = 1
EXIT_BAD_INPUT = 2  # the CLI's: refused before anything ran
EXIT_BROKEN_EXPOSURE = 3
EXIT_NOT_FINAL = 4


async def run_headless(
    config: Config,
    duration_s: int,
    *,
    armed: bool,
    journal_path: Path | None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Simulated venues only: simulated time on a manual clock. With any real venue (or a
    remote-sim one) the run is on the live clock for ``duration_s`` wall seconds.

    A journal or record path that cannot be used raises (``JournalError``, ``RecordPathError``, naming
    the path) before anything starts."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be greater than 0, got {duration_s}")
    if options is not None and options.record is not None:
        check_record_path(options.record)
    if journal_path is not None:
        prepare_journal(journal_path)
    realtime = any(vc.kind not in ("simulated",) for vc in config.venues)
    with tempfile.TemporaryDirectory(prefix="arbtui-headless-") as tmp:
        path = journal_path if journal_path is not None else Path(tmp) / "journal.sqlite"
        clock: Clock = LiveClock() if realtime else ManualClock(START_NS)
        engine, _ = build_engine(config, clock, path, options)

        async def advance(step_ns: int) -> None:
            if isinstance(clock, ManualClock):
                await clock.advance(step_ns)
            else:
                await asyncio.sleep(step_ns / NS_PER_S)

        wall0 = time.perf_counter()
        try:
            await engine.start()
        except Exception as exc:  # a venue that cannot connect, a journal that fails: the run failed
            engine.failure = exc
        try:
            if armed and engine.failure is None:
                engine.set_armed(True)
            for _ in range(duration_s * NS_PER_S // STEP_NS):
                if engine.failure is not None:
                    break  # a failed engine trades no further; the summary says why
                await advance(STEP_NS)
            if armed:
                engine.set_armed(False)
            settled = 0
            while engine.failure is None and engine.executor.in_flight() and settled < SETTLE_LIMIT_NS:
                await advance(STEP_NS)
                settled += STEP_NS
            summary = summarize(engine, duration_s, armed)
        finally:
            await engine.stop("headless run finished" if engine.failure is None else f"failed: {engine.failure}")
        summary["wall"]["elapsed_s"] = round(time.perf_counter() - wall0, 3)
        return summary


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / NS_PER_MS, 3)  # float ok: a report figure


def exit_status(engine: Engine) -> tuple[int, str]:
    """The headless exit code for the engine's state now, and why (see the module docstring)."""
    if engine.failure is not None:
        failure = engine.failure
        return EXIT_ENGINE_FAILED, f"the engine failed: {type(failure).__name__}: {failure}"
    pairs = [p.view() for p in engine.executor.pairs.values()]
    broken = [p for p in pairs if p.state is PairState.BROKEN and not p.resolved]
    if broken:
        held = (
            "; ".join(f"{e.venue} {e.market} {e.side.value} {e.quantity}" for p in broken for e in p.exposure)
            or "exposure unknown"
        )
        ids = ", ".join(p.pair_id for p in broken)
        return EXIT_BROKEN_EXPOSURE, f"{len(broken)} BROKEN pair(s) unresolved ({ids}): {held}"
    not_final = [p.pair_id for p in pairs if not p.state.is_terminal]
    if not_final:
        return EXIT_NOT_FINAL, f"{len(not_final)} pair(s) not final at the end: {', '.join(not_final)}"
    return EXIT_OK, "every pair final, no BROKEN exposure"


def account_summary(engine: Engine) -> dict[str, Any]:
    """Stale balances and position alarms still raised (both block new pairs)."""
    return {
        "stale_balances": {v: since for v, since in engine.stale_balances().items()},
        "position_drifts": [
            {
                "venue": d.venue,
                "asset": d.asset,
                "expected": str(d.expected),
                "actual": str(d.actual),
                "difference": str(d.difference),
            }
            for d in engine.position_drifts()
        ],
        "reconciled_refreshes": engine.reconciler.observations,
    }


def summarize(engine: Engine, duration_s: int, armed: bool) -> dict[str, Any]:
    ex = engine.executor
    a = ex.analytics
    pairs = [p.view() for p in ex.pairs.values()]
    by_state = Counter(p.state.value for p in pairs)
    exposure = [
        {"pair": p.pair_id, "venue": e.venue, "market": e.market, "side": e.side.value, "quantity": str(e.quantity)}
        for p in pairs
        for e in p.exposure
    ]
    expected = sum((p.expected_pnl for p in pairs), Decimal(0))
    realized = sum((p.realized_pnl for p in pairs if p.realized_pnl is not None), Decimal(0))
    code, why = exit_status(engine)
    return {
        "exit": {"code": code, "reason": why},
        "failure": None if engine.failure is None else f"{type(engine.failure).__name__}: {engine.failure}",
        "mode": engine.mode,
        "seed": engine.config.seed,
        "duration_s": duration_s,
        "armed": armed,
        "opportunities": a.opportunities_detected,
        "pairs": {"total": len(pairs), "by_state": dict(sorted(by_state.items()))},
        "not_final": [p.pair_id for p in pairs if not p.state.is_terminal],
        "expected_pnl": str(expected.quantize(Decimal("0.01"))),
        "realized_pnl": str(realized.quantize(Decimal("0.01"))),
        "exposure": exposure,
        "refusals": dict(sorted(a.refusals.items())),
        "capture_rate": str(a.capture_rate),
        "slippage_bps": {
            "n": len(a.slippage_bps),
            "mean": str((sum(a.slippage_bps, Decimal(0)) / len(a.slippage_bps)).quantize(Decimal("0.01")))
            if a.slippage_bps
            else None,
        },
        "ack_latency_ms": {
            v: {"p50": _ms(s.p(50)), "p99": _ms(s.p(99)), "n": len(s.samples)} for v, s in sorted(a.ack_latency.items())
        },
        "ack_skew_ms": {"p50": _ms(a.ack_skew.p(50)), "p99": _ms(a.ack_skew.p(99))},
        "breakers": {v: {"tripped": b.tripped, "trips": b.trips} for v, b in sorted(ex.breakers.items())},
        "venues": {name: dict(engine.venue_counters(name)) for name in sorted(engine.venues)},
        "account": account_summary(engine),
        "wall": {
            "confirm_to_both_sent_us": _us_summary(a.confirm_to_sent.p(50), a.confirm_to_sent.p(99)),
            "leg_skew_us": _us_summary(a.send_skew.p(50), a.send_skew.p(99)),
        },
    }


def _us_summary(p50: int | None, p99: int | None) -> dict[str, float | None]:
    return {"p50": None if p50 is None else round(p50 / 1000, 1), "p99": None if p99 is None else round(p99 / 1000, 1)}
