"""The help screen: every key binding of the console, read from the bindings themselves."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

EXTRA_ROWS: tuple[tuple[str, str], ...] = (
    ("up / down", "move in the focused pane; the books pane follows the selected spread"),
    ("ctrl+p", "command palette: every action, and live entries (abort pair P-17, reset breaker kraken)"),
    ("y / n / esc", "in a question or the confirm modal: y does it, n or esc does nothing"),
)


def _keys(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "plus": "+", "minus": "-", "full_stop": "."}
    return " / ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss_help", "Close", id="close-help", tooltip="Back to the console"),
        Binding("question_mark", "dismiss_help", "Close", show=False),
        Binding("q", "dismiss_help", "Close", show=False),
    ]

    def __init__(self, bindings: Sequence[BindingType] = ()) -> None:
        super().__init__()
        self._listed = [b for b in bindings if isinstance(b, Binding)]

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        table.add_column("Key", style="bold cyan", no_wrap=True)
        table.add_column("Action")
        for b in self._listed:
            table.add_row(_keys(b.key), b.tooltip or b.description)
        for key, action in EXTRA_ROWS:
            table.add_row(key, action)
        with Vertical(id="help-box", classes="modal-box"):
            yield Static("arbtui: key bindings", classes="modal-title")
            yield Static(table)
            yield Static(
                "Spreads are priced after both venues' taker fees and a slippage buffer, at the size that "
                "maximises expected profit. Dimmed rows do not pay (figures at the touch); yellow rows with "
                "a ⊘ pay but a risk check would refuse them (reason in the line under the table).",
                classes="modal-help",
            )
            yield Static("esc closes", classes="modal-help")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
