"""The header line: mode badge, engine clock, and each venue's status and feed rate."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from arbtui.domain.events import VenueStatus
from arbtui.ui.bridge import UIBridge
from arbtui.ui.formatting import clock_text

_STATUS_STYLE = {
    VenueStatus.CONNECTED: "bold green",
    VenueStatus.CONNECTING: "yellow",
    VenueStatus.STALE: "bold yellow",
    VenueStatus.ERROR: "bold red",
    VenueStatus.CLOSED: "dim",
}


class StatusHeader(Static):
    """One line; redrawn by the app's flush when its text changes."""

    _last_plain = ""
    _last_spans: list[object] = []

    def show(self, mode: str, now_ns: int, bridge: UIBridge) -> None:
        text = Text()
        text.append(f" {mode.upper()} ", style="bold black on cyan")
        text.append(" arbtui ", style="bold")
        text.append(clock_text(now_ns), style="")
        text.append(" UTC ", style="dim")
        for name, view in bridge.venues.items():
            text.append("  ")
            text.append("● ", style=_STATUS_STYLE[view.status])
            text.append(name, style="bold")
            text.append(f" {view.status.value}", style=_STATUS_STYLE[view.status])
            text.append(f" {view.rate(now_ns):.1f}/s", style="dim")
        if bridge.stopped_reason is not None:
            text.append(f"  engine stopped: {bridge.stopped_reason}", style="bold red")
        if text.plain != self._last_plain or text.spans != self._last_spans:
            self._last_plain, self._last_spans = text.plain, list(text.spans)
            self.update(text)
