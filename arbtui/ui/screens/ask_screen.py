"""A yes/no question that blocks until answered (kill switch, ARMED, quitting with pairs in flight)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class AskScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="ask-yes", tooltip="Do it"),
        Binding("n", "answer(False)", "No", id="ask-no", tooltip="Do nothing"),
        Binding("escape", "answer(False)", "Cancel", id="ask-cancel", tooltip="Do nothing"),
    ]

    def __init__(self, title: str, body: str, *, danger: bool = False) -> None:
        super().__init__()
        self._title = title
        self._body = body
        self._danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-box", classes="modal-box -danger" if self._danger else "modal-box"):
            yield Static(self._title, classes="modal-title")
            yield Static(self._body)
            yield Static("y: yes    n / esc: no", classes="modal-help")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
