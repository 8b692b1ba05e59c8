"""Command palette entries: every console action, plus live ones built from the engine's state
("confirm O-12 ...", "abort pair P-17", "reset breaker kraken", "resolve BROKEN pair P-9").

Each entry calls the same method as its key, so the palette passes the same guards: resume and
the kill switch ask first, an abort says what it can really do, and Quit (Textual's system command,
see ``ArbApp.get_system_commands``) asks while pairs are in flight."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from arbtui.domain.execution import PairState

if TYPE_CHECKING:
    from arbtui.ui.app import ArbApp
    from arbtui.ui.screens.main_screen import MainScreen


class ArbCommands(Provider):
    def _entries(self) -> list[tuple[str, str, Callable[[], object]]]:
        app: ArbApp = self.app  # type: ignore[assignment]
        main: MainScreen = app.main_screen
        engine = app.engine
        ex = engine.executor
        entries: list[tuple[str, str, Callable[[], object]]] = [
            ("confirm selected opportunity", "asks first, then sends both legs", main.action_confirm),
            ("simulate selected spread", "what a confirm would do now; sends nothing", main.action_simulate),
            ("abort selected pair", "cancel what rests, unwind what filled", main.action_abort),
            ("kill switch", "halt, cancel everything, unwind (asks first)", main.action_kill),
            ("resume", "release the kill switch (asks first)", main.action_resume),
            ("toggle ARMED", "the engine confirms by itself (asks first)", main.action_toggle_armed),
            ("pause / resume detection", "stop or restart pricing spreads", main.action_toggle_pause),
            ("filter markets", "show only matching spreads", main.action_filter),
            ("help", "every key binding", main.action_help),
            # Quitting is Textual's own "Quit" system command, made the guarded one (ArbApp.get_system_commands).
        ]
        for spread in engine.spreads():
            if spread.opportunity_id is not None:
                entries.append(
                    (
                        f"simulate {spread.opportunity_id} {spread.key}",
                        "sends nothing",
                        partial(app.simulate_opportunity, spread.opportunity_id),
                    )
                )
        for pair in ex.pairs.values():
            if not pair.state.is_terminal:
                entries.append((f"abort pair {pair.pair_id}", pair.spread.key, partial(main.abort_pair, pair.pair_id)))
            elif pair.state is PairState.BROKEN and not pair.resolved:
                entries.append(
                    (
                        f"resolve BROKEN pair {pair.pair_id}",
                        "exposure handled by hand: unblock the market",
                        partial(engine.resolve, pair.pair_id, "resolved from the command palette"),
                    )
                )
        for venue, breaker in ex.breakers.items():
            if breaker.tripped:
                entries.append((f"reset breaker {venue}", breaker.reason, partial(engine.reset_breaker, venue)))
        return entries

    async def discover(self) -> Hits:
        for name, help_text, callback in self._entries():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._entries():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
