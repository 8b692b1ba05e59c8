"""The Textual application: one engine, run as one named worker, and the panes that show it.

The app owns no trading state. It subscribes a :class:`~arbtui.ui.bridge.UIBridge` to the engine's
events and flushes the panes from it ``ui.refresh_hz`` times a second inside ``batch_update``. If
the engine fails, the error is shown on an error screen and the terminal is left intact.

Every way out the operator has (``q``, Textual's ``ctrl+q``, the palette's Quit, ``q`` on the
error screen) goes through :meth:`ArbApp.request_quit`, which asks first while pairs are in flight.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from arbtui.assembly import RunOptions, build_engine
from arbtui.config import Config
from arbtui.domain.clock import Clock, LiveClock
from arbtui.engine.engine import Engine
from arbtui.replay.player import ReplayPlayer
from arbtui.ui.bridge import UIBridge
from arbtui.ui.commands import ArbCommands
from arbtui.ui.screens.ask_screen import AskScreen
from arbtui.ui.screens.error_screen import EngineErrorScreen
from arbtui.ui.screens.main_screen import MainScreen

ENGINE_WORKER = "engine"
SHUTDOWN_WORKER = "shutdown"


class ArbApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "arbtui"
    COMMANDS = App.COMMANDS | {ArbCommands}

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        auto_refresh: bool = True,
        journal_path: Path | None = None,
        options: RunOptions | None = None,
        replay: ReplayPlayer | None = None,
    ) -> None:
        """``auto_refresh=False`` leaves flushing to the caller (snapshot tests flush at a chosen time)."""
        super().__init__()
        self._auto_refresh = auto_refresh
        self.config = config
        self.clock: Clock = clock if clock is not None else LiveClock()
        if engine is None:
            engine, _ = build_engine(config, self.clock, journal_path, options)
        self.engine = engine
        self.replay = replay
        self.bridge = UIBridge(list(engine.venues))
        self._unsubscribe = engine.subscribe(self.bridge.on_event)
        self.engine_error: BaseException | None = None
        self.engine_started = asyncio.Event()
        self.flushes = 0
        self._flush_requested = False
        self._main = MainScreen(self)
        self._quit_asked = False  # the "quit anyway?" question is on screen
        self._leaving = False  # the operator said quit: the engine is stopping

    def on_mount(self) -> None:
        self.push_screen(self._main)
        self.run_worker(self._run_engine(), name=ENGINE_WORKER, group=ENGINE_WORKER, exit_on_error=False)
        if self._auto_refresh:
            self.set_interval(1 / self.config.ui.refresh_hz, self.flush, name="ui-flush")

    async def _run_engine(self) -> None:
        if self.replay is not None:
            started = asyncio.create_task(self.replay.started.wait(), name="replay-started")
            started.add_done_callback(lambda _: self.engine_started.set())
            await self.replay.run(stop_at_end=False)
            self.notify("Replay finished: the final state stays on screen (q quits)")
            await self.engine.run_until_stopped()
            return
        await self.engine.start()
        self.engine_started.set()
        if not self.is_headless:
            self.call_after_refresh(self._freeze_startup_objects)
        await self.engine.run_until_stopped()

    def _freeze_startup_objects(self) -> None:
        """Keep what start-up built (modules, widgets, styles, the engine: ~100,000 objects) out of
        the garbage collector's full collections.

        Textual's rendering leaves reference cycles behind (a strip that is not cut caches itself),
        so full collections run every few seconds under a busy feed; each one walked every object in
        the process and stopped the event loop, engine included, for 100-250 ms on this machine
        (30-60 ms once frozen). Frozen objects are still freed by reference counting; only cycles
        among them stay: what start-up had drawn (the first frame's strips, the first ladders once
        another market is selected), a one-off of a few MB at most. Tests run headless: no freeze.
        """
        gc.collect()
        gc.freeze()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != ENGINE_WORKER or event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        assert error is not None
        self.engine_error = error
        self.push_screen(EngineErrorScreen(error))

    def request_flush(self) -> None:
        """Flush as soon as the current message is handled: an operator's key shows at once instead
        of waiting up to one refresh period (coalesced: many requests, one flush)."""
        if not self._flush_requested:
            self._flush_requested = True
            self.call_later(self._requested_flush)

    async def _requested_flush(self) -> None:
        self._flush_requested = False
        await self.flush()

    async def flush(self) -> None:
        """Redraw what changed since the last flush, in one batch."""
        self.flushes += 1
        if not self._main.is_mounted:
            return
        with self.batch_update():
            await self._main.flush(self.clock.now_ns())

    @property
    def main_screen(self) -> MainScreen:
        return self._main

    def simulate_opportunity(self, opportunity_id: str) -> None:
        from arbtui.ui.screens.simulation_screen import SimulationScreen

        result = self.engine.simulate(opportunity_id)
        if result is not None:
            self.push_screen(SimulationScreen(result, self.engine.instruments))

    # --- the way out -----------------------------------------------------------------------------
    def request_quit(self, return_code: int = 0) -> None:
        """The one guarded way out: leave at once with nothing in flight, otherwise ask first.

        A question already on screen, or a quit already under way, makes a repeated request a no-op
        (a second ``ctrl+q`` must not stack a second question, nor a second shutdown).
        """
        if self._quit_asked or self._leaving:
            return
        in_flight = self.engine.executor.in_flight()
        if not in_flight:
            self._leave(return_code)
            return

        def answered(yes: bool | None) -> None:
            self._quit_asked = False
            if yes:
                self._leave(return_code)

        ids = ", ".join(p.pair_id for p in in_flight)
        self._quit_asked = True
        self.push_screen(
            AskScreen(
                f"{len(in_flight)} pair(s) in flight: quit anyway?",
                f"{ids} will stop where they are. The "
                "journal keeps them and the next start reconciles them with the venues.",
                danger=True,
            ),
            answered,
        )

    def _leave(self, return_code: int) -> None:
        self._leaving = True
        if self.engine_error is not None:
            # The engine already stopped with its error (shown on the error screen): nothing to stop.
            self.exit(return_code=return_code)
            return
        self.run_worker(self.shutdown(return_code), name=SHUTDOWN_WORKER, group=SHUTDOWN_WORKER, exit_on_error=False)

    async def shutdown(self, return_code: int = 0) -> None:
        """Stop the engine (closing every venue), then leave (also if stopping failed: the operator
        said quit, and a console that cannot be left is worse than a venue left to time out)."""
        try:
            await self.engine.stop("operator quit")
        finally:
            self.exit(return_code=return_code)

    async def action_quit(self) -> None:
        """Textual's quit action (its ``ctrl+q`` binding, ``app.quit``): guarded like ``q``."""
        self.request_quit()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's palette commands, with its Quit ("as soon as possible") made the guarded one."""
        for command in super().get_system_commands(screen):
            if command.callback == self.action_quit:
                yield SystemCommand(
                    "Quit", "Stop the engine and leave (asks first if pairs are in flight)", self.request_quit
                )
            else:
                yield command
