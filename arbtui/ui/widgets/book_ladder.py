"""One venue's order book for one market: asks above, bids below, with cumulative size.

The best bid and ask across every venue quoting the market are highlighted, so the operator sees
at a glance which venue to buy on and which to sell on.

Drawn line by line (Textual's line API): each refresh compares the new lines with those on screen
and repaints only the lines that changed, each rendered exactly as the whole ladder used to be
rendered as one ``Text``, through its shape (:mod:`arbtui.ui.shapes`). Under a busy feed most of a
ladder is unchanged between two refreshes, and the lines that change keep their shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget

from arbtui.domain.instruments import Listing
from arbtui.domain.money import ZERO
from arbtui.engine.engine import BookLadder
from arbtui.ui.formatting import fixed
from arbtui.ui.framed_lines import FramedLines
from arbtui.ui.shapes import shape_of, swap_in

SIZE_PLACES_MAX = 4
MIN_WIDTH = 12
WAITING = "waiting for the first snapshot"

# One line of the ladder: (text, Rich style) chunks, drawn left to right.
Line = tuple[tuple[str, str], ...]


def _changed(y: int, new: Line, was: Line, width: int) -> Region:
    """The columns of line ``y`` from the first chunk that differs to the last one that does (the
    whole line when the chunks moved)."""
    if len(new) != len(was) or any(len(a) != len(b) for (a, _), (b, _) in zip(new, was, strict=True)):
        return Region(0, y, width, 1)
    starts = [0]
    for text, _ in new:
        starts.append(starts[-1] + len(text))
    differ = [i for i, (a, b) in enumerate(zip(new, was, strict=True)) if a != b]
    return Region(starts[differ[0]], y, starts[differ[-1] + 1] - starts[differ[0]], 1)


class BookLadderView(Widget):
    """Renders a :class:`~arbtui.engine.engine.BookLadder` snapshot."""

    def __init__(self, listing: Listing, title: str, depth: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._styles_cache: FramedLines = FramedLines()  # Widget's own, with a short cut for content lines
        self.listing = listing
        self.title = title
        self.depth = depth
        self.border_title = title
        self._shown: tuple[BookLadder | None, Decimal | None, Decimal | None] | None = None
        self._lines: list[Line] = []
        self._width = 0  # the width self._lines were laid out for
        self._strips: dict[int, Strip] = {}  # rendered lines by y, dropped when the line changes
        # (y, width, line shape) -> the shape rendered: segments and cell length
        self._shapes: dict[tuple[object, ...], tuple[list[Segment], int]] = {}
        self._prices: dict[Decimal, str] = {}
        self.lines_repainted = 0  # lines re-rendered since mount (tests check that unchanged lines are kept)

    def show(self, ladder: BookLadder | None, best_bid: Decimal | None, best_ask: Decimal | None) -> None:
        shown = (ladder, best_bid, best_ask)
        if shown == self._shown:
            return  # nothing visible changed: keep what is drawn
        self._shown = shown
        self.set_class(ladder is not None and ladder.stale, "-stale")
        self.set_class(ladder is not None and ladder.crossed, "-crossed")
        self._relayout()

    def content_text(self) -> Text:
        """The ladder as one Text (what the operator reads): its lines are drawn as Textual draws this."""
        if self._waiting:
            return Text(WAITING, style="dim")  # wraps when the ladder is narrow
        text = Text(no_wrap=True, overflow="crop")
        for y, line in enumerate(self._lines):
            if y:
                text.append("\n")
            for chunk, style in line:
                text.append(chunk, style=style)
        return text

    # --- layout -------------------------------------------------------------------------------
    def _relayout(self) -> None:
        """Lay the lines out at the current width and repaint only those that changed."""
        width = max(self.size.width, MIN_WIDTH)
        lines = self._layout(width)
        old = self._lines
        self._lines = lines
        if width != self._width or len(lines) != len(old) or not self.is_mounted:
            self._width = width
            self._strips.clear()
            self.refresh()
            return
        # Only the cells that changed are sent to the terminal (a size and its cumulative size,
        # usually): the line is drawn again whole, the region marked dirty is the changed columns.
        pairs = enumerate(zip(lines, old, strict=True))
        regions = [_changed(y, new, was, width) for y, (new, was) in pairs if new != was]
        for region in regions:
            self._strips.pop(region.y, None)
        if regions:
            self.refresh(*regions)

    def _layout(self, width: int) -> list[Line]:
        ladder, best_bid, best_ask = self._shown if self._shown is not None else (None, None, None)
        if ladder is None:
            return []  # drawn from content_text() by render_line: the message wraps when narrow
        return self._ladder_lines(ladder, best_bid, best_ask, width)

    def _ladder_lines(
        self, ladder: BookLadder, best_bid: Decimal | None, best_ask: Decimal | None, width: int
    ) -> list[Line]:
        """The ladder as fixed-width lines: far cheaper to lay out than a Rich Table."""
        pp = self.listing.price_precision
        qp = min(self.listing.qty_precision, SIZE_PLACES_MAX)
        show_cum = width >= 27  # narrow ladders drop the cumulative column rather than wrap
        col = width // 3 if show_cum else width // 2
        size_w = col if show_cum else width - col
        cum_w = width - 2 * col
        lines: list[Line] = []

        def line(
            price: str, size: str, cum: str, price_style: str = "", size_style: str = "", cum_style: str = "dim"
        ) -> Line:
            chunks = ((price.rjust(col), price_style), (size.rjust(size_w), size_style))
            return (*chunks, (cum.rjust(cum_w), cum_style)) if show_cum else chunks

        lines.append(line("Price", "Size", "Cum.", "bold", "bold", "bold"))
        asks = ladder.asks[: self.depth]
        cum = ZERO
        rows: list[Line] = []
        for price, qty in asks:
            cum += qty
            style = "bold black on red" if price == best_ask else "red"
            rows.append(line(self._price_text(price), fixed(qty, qp), fixed(cum, qp), style))
        lines.extend(() for _ in range(self.depth - len(rows)))
        lines.extend(reversed(rows))
        spread = (ladder.asks[0][0] - ladder.bids[0][0]) if ladder.asks and ladder.bids else None
        lines.append(
            line(
                "spread",
                fixed(spread, pp) if spread is not None else "-",
                "STALE" if ladder.stale else "",
                "dim",
                "dim",
                "bold yellow",
            )
        )
        cum = ZERO
        for price, qty in ladder.bids[: self.depth]:
            cum += qty
            style = "bold black on green" if price == best_bid else "green"
            lines.append(line(self._price_text(price), fixed(qty, qp), fixed(cum, qp), style))
        # Trailing whitespace at the end of the ladder is not drawn (the Text used to be rstripped).
        while lines and not "".join(text for text, _ in lines[-1]).rstrip():
            lines.pop()
        if lines:
            last = list(lines[-1])
            while last and not last[-1][0].rstrip():
                last.pop()
            text, style = last[-1]
            last[-1] = (text.rstrip(), style)
            lines[-1] = tuple(last)
        return lines

    def _price_text(self, price: Decimal) -> str:
        """A level's price at the listing's precision (the levels on screen keep their prices from
        one refresh to the next: formatted once)."""
        text = self._prices.get(price)
        if text is None:
            if len(self._prices) >= 1024:
                self._prices.clear()
            text = self._prices[price] = fixed(price, self.listing.price_precision)
        return text

    @staticmethod
    def _line_text(line: Sequence[tuple[str | None, str]]) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        for chunk, style in line:
            text.append(chunk or "", style=style)
        return text

    # --- Textual hooks ------------------------------------------------------------------------
    @property
    def _waiting(self) -> bool:
        return self._shown is None or self._shown[0] is None

    def render_line(self, y: int) -> Strip:
        strip = self._strips.get(y)
        if strip is None and self._waiting:
            width, height = self.size
            visual = visualize(self, self.content_text(), markup=False)
            self._strips = dict(enumerate(Visual.to_strips(self, visual, width, height, self.visual_style)))
            strip = self._strips.get(y)
            if strip is None:
                return Strip.blank(width, self.visual_style.rich_style)
        if strip is None:
            width = self._width  # the content width the lines were laid out at
            if y >= len(self._lines):
                return Strip.blank(width, self.visual_style.rich_style)
            line = self._lines[y]
            shapes = tuple((shape_of(text), style) for text, style in line)
            key = (y, width, shapes)
            probe = self._shapes.get(key)
            if probe is None:
                if any(shape is None for shape, _ in shapes):
                    strip = self._render_text_line(self._line_text(line), width, y)
                    self._strips[y] = strip
                    self.lines_repainted += 1
                    return strip
                if len(self._shapes) >= 512:  # bounded: a resize or a new precision makes new shapes
                    self._shapes.clear()
                rendered = self._render_text_line(self._line_text(shapes), width, y)
                probe = self._shapes[key] = (list(rendered), rendered.cell_length)
            segments, cell_length = probe
            strip = Strip(swap_in(segments, 0, "".join(text for text, _ in line)), cell_length)
            self._strips[y] = strip
            self.lines_repainted += 1
        return strip

    def _render_text_line(self, text: Text, width: int, y: int) -> Strip:
        """One line rendered as Textual renders a Text, as line ``y`` of the widget."""
        visual = visualize(self, text, markup=False)
        # Rendered as line 0 of a one-line visual: stamp the offsets it has as line y of the ladder.
        return Visual.to_strips(self, visual, width, 1, self.visual_style)[0].apply_offsets(0, y)

    def on_resize(self, event: events.Resize) -> None:
        self._width = 0  # lay out again at the new width
        self._relayout()

    def notify_style_update(self) -> None:
        """A theme or class change: the rendered lines carry the old styles."""
        super().notify_style_update()
        self._strips.clear()
        self._shapes.clear()
        self._styles_cache.forget_frames()
