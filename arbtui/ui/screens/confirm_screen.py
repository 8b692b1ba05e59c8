"""The confirm modal: both legs, fees, expected PnL and the worst case. Only an explicit ``y`` fires;
``n`` or ``esc`` sends nothing."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from arbtui.domain.execution import SimulationResult
from arbtui.domain.instruments import Instruments
from arbtui.ui.screens.simulation_view import simulation_summary, simulation_table


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes, send both legs", id="confirm-yes", tooltip="Send both legs now"),
        Binding("n", "answer(False)", "No", id="confirm-no", tooltip="Send nothing"),
        Binding("escape", "answer(False)", "Cancel", id="confirm-cancel", tooltip="Send nothing"),
    ]

    def __init__(self, result: SimulationResult, instruments: Instruments) -> None:
        super().__init__()
        self.result = result
        self._instruments = instruments

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(id="confirm-box", classes="modal-box"):
            yield Static(f"Confirm {r.opportunity_id}: {r.spread.key}", classes="modal-title")
            yield Static(simulation_table(r, self._instruments))
            yield Static(simulation_summary(r))
            yield Static(
                "Both legs are sent at once as IOC limit orders. y sends, n or esc sends nothing.", classes="modal-help"
            )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
