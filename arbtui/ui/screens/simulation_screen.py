"""The simulation modal: what a confirm would do now. Nothing is sent."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from arbtui.domain.execution import Quote
from arbtui.domain.instruments import Instruments
from arbtui.ui.screens.simulation_view import quote_summary, quote_table


class SimulationScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="simulation-close", tooltip="Back to the console"),
        Binding("s", "close", "Close", show=False),
    ]

    def __init__(self, result: Quote, instruments: Instruments) -> None:
        super().__init__()
        self.result = result
        self._instruments = instruments

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(id="simulation-box", classes="modal-box"):
            label = f"{r.opportunity_id}: {r.spread.key}" if r.opportunity_id else r.spread.key
            yield Static(f"Simulation {r.quote_id} of {label} (nothing sent)", classes="modal-title")
            yield Static(quote_table(r, self._instruments))
            yield Static(quote_summary(r))
            yield Static("Walks the current books for each leg. esc closes.", classes="modal-help")

    def action_close(self) -> None:
        self.dismiss(None)
