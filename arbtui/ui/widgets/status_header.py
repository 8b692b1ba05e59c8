"""The header line: mode badge, SAFE/ARMED, kill switch, engine clock, and per venue its status
(connected / stale / tripped), feed rate and ack latency p50."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.events import VenueStatus
from arbtui.ui.bridge import UIBridge
from arbtui.ui.formatting import clock_text

if TYPE_CHECKING:
    from arbtui.engine.engine import Engine

_STATUS_STYLE = {
    VenueStatus.CONNECTED: "bold green",
    VenueStatus.CONNECTING: "yellow",
    VenueStatus.STALE: "bold yellow",
    VenueStatus.ERROR: "bold red",
    VenueStatus.CLOSED: "dim",
}
_MODE_STYLE = {
    "sim": "bold black on cyan",
    "paper": "bold black on yellow",
    "live": "bold white on red",
    "replay": "bold black on magenta",
}


class StatusHeader(Static):
    """One line; redrawn by the flush when its text changes."""

    _last_plain = ""
    _last_spans: list[object] = []

    def show(self, engine: Engine, now_ns: int, bridge: UIBridge) -> None:
        ex = engine.executor
        text = Text()
        text.append(f" {engine.mode.upper()} ", style=_MODE_STYLE.get(engine.mode, "bold"))
        text.append(" ")
        if ex.halted:
            text.append(" KILLED ", style="bold white on red")
        elif ex.armed:
            text.append(" ARMED ", style="bold black on yellow")
        else:
            text.append(" SAFE ", style="bold black on green")
        if engine.detection_paused:
            text.append(" PAUSED ", style="bold black on white")
        if engine.recorder is not None and engine.recorder.active:
            text.append(" ● REC ", style="bold white on red")
        text.append(f" {clock_text(now_ns)}", style="")
        for name, view in bridge.venues.items():
            tripped = ex.breakers[name].tripped if name in ex.breakers else False
            text.append("  ")
            if tripped:
                text.append("● ", style="bold red")
                text.append(name, style="bold")
                text.append(" tripped", style="bold red")
            else:
                text.append("● ", style=_STATUS_STYLE[view.status])
                text.append(name, style="bold")
                if view.status is not VenueStatus.CONNECTED:  # the green dot says connected
                    text.append(f" {view.status.value}", style=_STATUS_STYLE[view.status])
            text.append(f" {view.rate(now_ns):.0f}/s", style="dim")
            series = ex.analytics.ack_latency.get(name)
            p50 = series.p(50) if series is not None else None
            if p50 is not None:
                text.append(f" ack {p50 // NS_PER_MS}ms", style="dim")
        if bridge.stopped_reason is not None:
            text.append(f"  engine stopped: {bridge.stopped_reason}", style="bold red")
        if text.plain != self._last_plain or text.spans != self._last_spans:
            self._last_plain, self._last_spans = text.plain, list(text.spans)
            self.update(text, layout=False)  # one line, always: no re-layout of the screen
