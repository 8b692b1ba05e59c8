"""The help screen: every key binding of the console."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_ROWS: tuple[tuple[str, str], ...] = (
    ("up / down", "move through spreads; the books pane follows the selected market"),
    ("?", "this help"),
    ("q", "stop the engine and quit"),
    ("ctrl+p", "command palette"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss_help", "Close", id="close-help", tooltip="Back to the console"),
        Binding("question_mark", "dismiss_help", "Close", show=False),
        Binding("q", "dismiss_help", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        table.add_column("Key", style="bold cyan", no_wrap=True)
        table.add_column("Action")
        for key, action in HELP_ROWS:
            table.add_row(key, action)
        with Vertical(id="help-box"):
            yield Static("arbtui: key bindings", id="help-title")
            yield Static(table)
            yield Static(
                "Spreads are priced after both venues' taker fees and a slippage buffer, at the size that "
                "maximises expected profit. Dimmed rows do not pay; their figures are those of the touch.",
                id="help-note",
            )
            yield Static("esc closes", id="help-footer")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
