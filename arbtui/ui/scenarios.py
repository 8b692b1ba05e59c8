"""Deterministic console states, for the snapshot tests and for ``arbtui screenshots``.

Each scenario takes a running :class:`~arbtui.ui.app.ArbApp` built with a
:class:`~arbtui.domain.clock.ManualClock` (seed 7, the demo config) and its pilot, and drives the
simulated market and the engine to one state the operator should recognise. Faults are injected
through the simulated venues' knobs; nothing is mocked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from textual.pilot import Pilot

from arbtui.config import default_config
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, ManualClock
from arbtui.domain.execution import PairState, PairStateChanged
from arbtui.ui.app import ArbApp
from arbtui.venues.simulated import SimulatedVenue

START_NS = 1_795_617_000 * NS_PER_S  # 2026-11-25 14:30:00 UTC
STEP_NS = 10 * NS_PER_MS

Scenario = Callable[[Pilot[None], ArbApp, ManualClock], Awaitable[None]]


def make_app(journal_dir: Path | None = None, *, auto_refresh: bool = False) -> tuple[ArbApp, ManualClock]:
    """The demo on a manual clock, flushed only when a scenario says so (unless ``auto_refresh``)."""
    directory = journal_dir if journal_dir is not None else Path(tempfile.mkdtemp(prefix="arbtui-ui-"))
    clock = ManualClock(START_NS)
    app = ArbApp(default_config(), clock=clock, auto_refresh=auto_refresh, journal_path=directory / "journal.sqlite")
    return app, clock


async def warm_up(app: ArbApp, clock: ManualClock, seconds: float) -> None:
    """Start the engine, run the market for ``seconds`` of engine time, flush the panes."""
    await app.engine_started.wait()
    await clock.advance(int(seconds * NS_PER_S))
    await app.flush()


async def _settle(pilot: Pilot[None], app: ArbApp) -> None:
    await app.flush()
    await pilot.pause()
    await app.flush()
    await pilot.pause()


def _sim(app: ArbApp, venue: str) -> SimulatedVenue:
    v = app.engine.venues[venue]
    inner = getattr(v, "inner", v)  # the session recorder's wrapper
    assert isinstance(inner, SimulatedVenue)
    return inner


async def _select_paying(pilot: Pilot[None], app: ArbApp) -> None:
    """Put the spreads cursor on the first paying row (rows are sorted by net edge)."""
    await app.flush()
    table = app.main_screen.query_one("#spreads")
    table.focus()
    await pilot.pause()


async def _run_until(clock: ManualClock, app: ArbApp, done: Callable[[], bool], limit_s: float = 20) -> None:
    waited = 0
    while not done() and waited < limit_s * NS_PER_S:
        await clock.advance(STEP_NS)
        waited += STEP_NS


async def startup(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """16 s in: an ETH-USD spread pays and leads the table."""
    await warm_up(app, clock, 16)
    await _settle(pilot, app)


async def spread_selected(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """The cursor on the last row (the FEDCUT YES+NO complement): the books pane shows both tokens."""
    await warm_up(app, clock, 23)
    await pilot.press("down", "down", "down", "down")
    await _settle(pilot, app)


async def confirm_modal(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """enter on the paying ETH-USD spread: the modal shows both legs, fees, PnL and the worst case."""
    await warm_up(app, clock, 16)
    await _select_paying(pilot, app)
    await pilot.press("enter")
    await _settle(pilot, app)


async def simulation(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """s on the paying spread: what a confirm would do, nothing sent."""
    await warm_up(app, clock, 16)
    await _select_paying(pilot, app)
    await pilot.press("s")
    await _settle(pilot, app)


async def _confirm_now(pilot: Pilot[None], app: ArbApp) -> str:
    await _select_paying(pilot, app)
    before = set(app.engine.executor.pairs)
    await pilot.press("enter")
    await pilot.pause()
    await pilot.press("y")
    await pilot.pause()
    (pair_id,) = set(app.engine.executor.pairs) - before
    return pair_id


async def pair_in_flight(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """Confirmed with y: both legs sent, answers pending (kraken answers slowly)."""
    await warm_up(app, clock, 16)
    _sim(app, "kraken").configure_faults(ack_latency_ms=400)
    pair_id = await _confirm_now(pilot, app)
    pair = app.engine.executor.pairs[pair_id]
    await _run_until(clock, app, lambda: any(leg.state.value == "filled" for leg in pair.legs), 2)
    await _settle(pilot, app)


def _on_unwinding(app: ArbApp, action: Callable[[], None]) -> None:
    """Run ``action`` the moment a pair enters UNWINDING (before its first unwind order is sent)."""

    def listener(event: object) -> None:
        if isinstance(event, PairStateChanged) and event.pair.state is PairState.UNWINDING:
            action()

    app.engine.subscribe(listener)


def _reliable(app: ArbApp) -> None:
    for name in ("kraken", "coinbase"):
        _sim(app, name).configure_faults(reject_rate=Decimal(0), timeout_rate=Decimal(0), partial_fill_rate=Decimal(0))


async def pair_unwinding(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """The kraken leg is rejected, the coinbase leg filled: the unwind sell on coinbase is on its way."""
    await warm_up(app, clock, 16)
    _reliable(app)
    _sim(app, "kraken").configure_faults(reject_rate=Decimal(1))
    _on_unwinding(app, lambda: _sim(app, "coinbase").configure_faults(ack_latency_ms=3000))
    pair_id = await _confirm_now(pilot, app)
    pair = app.engine.executor.pairs[pair_id]
    await _run_until(clock, app, lambda: pair.state is PairState.UNWINDING and len(pair.legs) > 2, 5)
    await _settle(pilot, app)


async def pair_broken(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """The kraken leg is rejected and every unwind on coinbase is rejected too: BROKEN, exposure shown."""
    await warm_up(app, clock, 16)
    _reliable(app)
    _sim(app, "kraken").configure_faults(reject_rate=Decimal(1))
    _on_unwinding(app, lambda: _sim(app, "coinbase").configure_faults(reject_rate=Decimal(1)))
    pair_id = await _confirm_now(pilot, app)
    pair = app.engine.executor.pairs[pair_id]
    await _run_until(clock, app, lambda: pair.state.is_terminal, 20)
    await _settle(pilot, app)


async def kill_switch(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """K then y: halted, the header says KILLED, confirm is dimmed."""
    await warm_up(app, clock, 16)
    await pilot.press("K")
    await pilot.pause()
    await pilot.press("y")
    await pilot.pause()
    await clock.advance(200 * NS_PER_MS)
    await _settle(pilot, app)


async def help_screen(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    await warm_up(app, clock, 2)
    await pilot.press("question_mark")
    await _settle(pilot, app)


REPLAY_PAUSE_S = 8


def make_replay_app(session: Path, journal_dir: Path | None = None) -> tuple[ArbApp, ManualClock]:
    """The console replaying ``session`` as fast as possible, pausing itself after REPLAY_PAUSE_S."""
    from arbtui.replay.player import ReplayPlayer

    directory = journal_dir if journal_dir is not None else Path(tempfile.mkdtemp(prefix="arbtui-ui-"))
    player = ReplayPlayer(session, actions=True, speed=None, journal_path=directory / "journal.sqlite")
    player.pause_at(player.header.start_ns + REPLAY_PAUSE_S * NS_PER_S)
    app = ArbApp(player.config, engine=player.engine, clock=player.clock, replay=player, auto_refresh=False)
    return app, player.clock


async def replay_paused(pilot: Pilot[None], app: ArbApp, clock: ManualClock) -> None:
    """A recorded session replayed with its actions, paused 8 s in: REPLAY bar, pairs as they were."""
    player = app.replay
    assert player is not None
    await app.engine_started.wait()
    while player.paused.is_set() and not player.finished.is_set():
        await pilot.pause(0.01)
    await _settle(pilot, app)
    await _select_paying(pilot, app)
    await _settle(pilot, app)


async def record_demo_session(path: Path, seconds: int = 15) -> Path:
    """The session ``tests/data/sim-session-15s.jsonl.gz`` was recorded with (seed 7, ARMED)."""
    from arbtui.assembly import RunOptions, build_engine

    clock = ManualClock(START_NS)
    engine, _ = build_engine(default_config(), clock, path.parent / "record.sqlite", RunOptions(record=path))
    await engine.start()
    engine.set_armed(True)
    for _ in range(seconds * 10):
        await clock.advance(100 * NS_PER_MS)
    engine.set_armed(False)
    while engine.executor.in_flight():
        await clock.advance(100 * NS_PER_MS)
    await engine.stop("recorded")
    return path


@dataclass(frozen=True)
class Shot:
    name: str
    scenario: Scenario
    size: tuple[int, int] = (120, 40)
    replay: bool = False  # the app replays a recorded session (make_replay_app)


SHOTS: tuple[Shot, ...] = (
    Shot("startup", startup),
    Shot("spread-selected", spread_selected),
    Shot("confirm-modal", confirm_modal),
    Shot("simulation", simulation),
    Shot("pair-in-flight", pair_in_flight),
    Shot("pair-unwinding", pair_unwinding),
    Shot("pair-broken", pair_broken),
    Shot("kill-switch", kill_switch),
    Shot("help", help_screen),
    Shot("small-80x24", startup, (80, 24)),
    Shot("replay-paused", replay_paused, replay=True),
)


async def save_screenshots(directory: Path) -> list[Path]:
    """Regenerate every screenshot into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for shot in SHOTS:
        with tempfile.TemporaryDirectory(prefix="arbtui-shot-") as tmp:
            if shot.replay:
                session = await record_demo_session(Path(tmp) / "session.jsonl.gz")
                app, clock = make_replay_app(session, Path(tmp))
            else:
                app, clock = make_app(Path(tmp))
            async with app.run_test(size=shot.size) as pilot:
                await shot.scenario(pilot, app, clock)
                path = directory / f"{shot.name}.svg"
                app.save_screenshot(filename=path.name, path=str(directory))
                written.append(path)
                await app.engine.stop("screenshot taken")
    return written
