"""The header line: mode badge, SAFE/ARMED, kill switch, engine clock, and per venue its status
(connected / stale / tripped), feed rate and ack latency p50."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget

from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.events import VenueStatus
from arbtui.ui.bridge import UIBridge
from arbtui.ui.formatting import clock_text
from arbtui.ui.shapes import shape_of, swap_in

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


class StatusHeader(Widget):
    """One line; redrawn by the flush when its text changes.

    The clock and the feed rates change it on every refresh, always in the same places: the line
    is rendered once per shape (:mod:`arbtui.ui.shapes`) and the new characters swapped in.
    """

    def render(self) -> Text:
        return self._last_text if self._last_text is not None else Text()

    _last_plain = ""
    _last_spans: list[object] = []
    _last_text: Text | None = None
    _shapes: dict[tuple[object, ...], tuple[list[Segment], int]] | None = None

    def render_line(self, y: int) -> Strip:
        text = self._last_text
        width = self.size.width
        shape = shape_of(text.plain) if text is not None and y == 0 else None
        if text is None or shape is None or text.cell_len > width:  # would wrap: Textual draws it
            return super().render_line(y)
        if self._shapes is None or len(self._shapes) >= 256:
            self._shapes = {}
        key = (shape, tuple(text.spans), text.style, width)
        known = self._shapes.get(key)
        if known is None:
            probe = Text(shape, style=text.style, spans=list(text.spans))
            rendered = Visual.to_strips(self, visualize(self, probe, markup=False), width, 1, self.visual_style)[0]
            known = self._shapes[key] = (list(rendered), rendered.cell_length)
        segments, cell_length = known
        return Strip(swap_in(segments, 0, text.plain), cell_length)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._shapes = None

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
            self._last_text = text
            self.refresh()  # one line, always: no re-layout of the screen
