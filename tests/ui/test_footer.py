"""The footer dims and undims keys in place (no recompose), and draws what a recompose draws;
bindings are refreshed only when what can be done has changed."""

from __future__ import annotations

from typing import Any

from textual.widgets._footer import FooterKey

from arbtui.ui.screens.main_screen import MainScreen
from arbtui.ui.widgets.binding_footer import BindingFooter
from tests.harness import make_app, warm_up


def _disabled(footer: BindingFooter) -> dict[str, bool]:
    return {key.action: key.has_class("-disabled") for key in footer.query(FooterKey)}


async def test_availability_changes_dim_keys_in_place() -> None:
    app, clock = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await warm_up(app, clock, 16)
        await pilot.pause()
        screen = app.main_screen
        footer = screen.query_one(BindingFooter)
        assert _disabled(footer)["kill"] is False and _disabled(footer)["resume"] is True
        recomposes = footer.recomposes
        await pilot.press("K", "y")  # kill: kill and confirm become unavailable, resume available
        await pilot.pause()
        await app.flush()
        await pilot.pause()
        assert app.engine.executor.halted
        shown = _disabled(footer)
        assert shown["kill"] is True and shown["resume"] is False and shown["confirm"] is True
        assert footer.recomposes == recomposes  # dimmed in place
        drawn = app.export_screenshot()
        footer.refresh(recompose=True)  # what Textual's footer would have done
        await pilot.pause()
        await pilot.pause()
        assert footer.recomposes == recomposes + 1
        assert _disabled(footer) == shown
        assert app.export_screenshot() == drawn
        await app.engine.stop("test over")


async def test_bindings_are_refreshed_only_when_availability_changes(monkeypatch: Any) -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 5)
        await pilot.pause()
        screen = app.main_screen
        refreshes: list[MainScreen] = []
        original = MainScreen.refresh_bindings

        def counted(self: MainScreen) -> None:
            refreshes.append(self)
            original(self)

        monkeypatch.setattr(MainScreen, "refresh_bindings", counted)
        for _ in range(5):
            await app.flush()  # nothing that decides a binding changed
        assert refreshes == []
        app.engine.kill()
        await app.flush()
        assert refreshes == [screen]
        await app.engine.stop("test over")
