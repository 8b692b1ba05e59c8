"""The confirm modal: a quote (both legs as they are sent, fees, expected PnL, the worst case).

Only an explicit ``y`` sends, and it sends that quote: its legs, or less when the books thinned
within its limits, never more and never at a worse limit. When the engine refuses (the edge is
gone at the quote's limits, the quote expired, a risk check), nothing is sent and the modal shows
the refusal with the figures now; ``r`` re-quotes on the current books. ``n`` or ``esc`` sends
nothing (journaled as a cancelled confirm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from arbtui.domain.execution import Quote
from arbtui.domain.instruments import Instruments
from arbtui.ui.screens.simulation_view import quote_summary, quote_table


@dataclass(frozen=True, slots=True)
class ConfirmOutcome:
    """What ``y`` did: a pair id, or the refusal's code and detail (nothing sent)."""

    pair_id: str | None
    code: str = ""
    detail: str = ""


class ConfirmScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("y", "send", "Yes, send this quote", id="confirm-yes", tooltip="Send both legs of this quote now"),
        Binding("r", "requote", "Re-quote", id="confirm-requote", tooltip="A fresh quote on the current books"),
        Binding("n", "cancel", "No", id="confirm-no", tooltip="Send nothing"),
        Binding("escape", "cancel", "Cancel", id="confirm-cancel", tooltip="Send nothing"),
    ]

    def __init__(
        self,
        quote: Quote,
        instruments: Instruments,
        *,
        send: Callable[[str], ConfirmOutcome],
        requote: Callable[[Quote], Quote | None],
        cancel: Callable[[str], None],
        now_ns: Callable[[], int],
    ) -> None:
        super().__init__()
        self.quote = quote
        self.refusal: ConfirmOutcome | None = None
        self._instruments = instruments
        self._send = send
        self._requote = requote
        self._cancel = cancel
        self._now_ns = now_ns

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="modal-box"):
            yield Static(id="confirm-title", classes="modal-title")
            yield Static(id="confirm-legs")
            yield Static(id="confirm-summary")
            yield Static(id="confirm-refusal", classes="confirm-refusal")
            yield Static(id="confirm-help", classes="modal-help")

    def on_mount(self) -> None:
        self._show()
        self.set_interval(0.5, self._tick)  # the quote's time left (engine clock)

    def _tick(self) -> None:
        self.query_one("#confirm-summary", Static).update(quote_summary(self.quote, self._now_ns()))

    def _show(self) -> None:
        q = self.quote
        of = q.opportunity_id or "does not pay"
        self.query_one("#confirm-title", Static).update(f"Confirm {q.quote_id} ({of}): {q.spread.key}")
        self.query_one("#confirm-legs", Static).update(quote_table(q, self._instruments))
        self.query_one("#confirm-summary", Static).update(quote_summary(q, self._now_ns()))
        refusal = self.query_one("#confirm-refusal", Static)
        if self.refusal is not None:
            refusal.update(f"Refused, nothing sent: {self.refusal.code}: {self.refusal.detail}")
            refusal.display = True
        else:
            refusal.update("")
            refusal.display = False
        self.query_one("#confirm-help", Static).update(
            "r re-quotes on the current books; n or esc sends nothing."
            if self.refusal is not None
            else "y sends these two IOC limit orders at once (this size or less, never a worse limit); "
            "r re-quotes; n or esc sends nothing."
        )

    def action_send(self) -> None:
        if self.refusal is not None:
            self.notify("This quote was refused: r re-quotes first.", severity="warning")
            return
        outcome = self._send(self.quote.quote_id)
        if outcome.pair_id is not None:
            self.dismiss(outcome.pair_id)
            return
        self.refusal = outcome
        self._show()

    def action_requote(self) -> None:
        fresh = self._requote(self.quote)
        if fresh is None:
            self.refusal = ConfirmOutcome(None, "EDGE_GONE", "the opportunity no longer pays: nothing to quote")
            self._show()
            return
        self.quote = fresh
        # A fresh quote that would be refused already (it does not pay now, a risk check) shows why,
        # and y stays off until a quote that can be sent is on screen.
        self.refusal = ConfirmOutcome(None, fresh.refusal, fresh.refusal_detail) if fresh.refusal else None
        self._show()

    def action_cancel(self) -> None:
        self._cancel(self.quote.quote_id)
        self.dismiss(None)
