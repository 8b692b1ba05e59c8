"""Shown when the engine fails: the error, instead of a corrupted terminal."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class EngineErrorScreen(ModalScreen[None]):
    BINDINGS = [Binding("q", "quit_app", "Quit", id="quit-after-error", tooltip="Leave arbtui")]

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static("The engine stopped with an error", id="error-title")
            yield Static(f"{type(self.error).__name__}: {self.error}", id="error-text", markup=False)
            yield Static("No orders are sent while the engine is stopped. Press q to quit.", id="error-help")

    def action_quit_app(self) -> None:
        from arbtui.ui.app import ArbApp  # (app.py imports this module)

        if isinstance(self.app, ArbApp):
            self.app.request_quit(return_code=1)  # the one guarded way out: asks if pairs are in flight
        else:
            self.app.exit(return_code=1)
