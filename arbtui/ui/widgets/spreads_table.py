"""The spreads pane: every market and venue pair, best net edge first.

Rows that pay after fees and slippage stand out; rows that do not are dimmed, so the operator
always sees the whole market and how far each spread is from paying. While detection is paused
the whole table is dimmed (``-paused``). Rows have stable keys and are
updated in place; re-sorting keeps the cursor on the row it was on.

Under a busy feed every row changes on every refresh, and a DataTable re-renders every cell of the
table through Rich whenever any cell changes (its caches are keyed by an update counter). This
table keeps the DataTable (cursor, keys, mouse, messages, sorting) but renders a line only once
per *shape* (:mod:`arbtui.ui.shapes`: every cell's text with its characters replaced, its style,
the widths, the cursor and hover on the row) and then swaps the characters in; cells likewise.
The segments are the DataTable's own (``tests/ui/test_render_shapes.py`` compares them, on the
demo's rows and on random ones), at a small fraction of the cost. It also remembers the widget's
style, which the DataTable asks for on every line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._types import SegmentLines
from textual.color import Color
from textual.renderables.styled import Styled
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from arbtui.domain.events import Spread, SpreadKind
from arbtui.domain.instruments import Instruments
from arbtui.ui.formatting import age, fixed, signed
from arbtui.ui.framed_lines import FramedLines
from arbtui.ui.shapes import shape_of, swap_in

COLUMNS: tuple[tuple[str, str, int], ...] = (
    # What decides comes first, so a narrow terminal still shows it without scrolling.
    ("market", "Market", 11),
    ("net", "Net bp", 9),
    ("pnl", "Exp. PnL", 10),
    ("size", "Size", 9),
    ("buy", "Buy on @ limit", 21),
    ("sell", "Sell on (or buy NO) @ limit", 24),
    ("gross", "Gross bp", 9),
    ("age", "Age", 6),
)


# A row rendered with its cells' shapes: the segments, their cell length, where each cell's text starts.
RowShape = tuple[list[Segment], int, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Cell:
    """A cell that renders as styled text and sorts by an exact value."""

    text: str
    style: str = ""
    sort_key: Decimal = Decimal(0)
    justify: str = "right"

    def __rich__(self) -> Text:
        return Text(self.text, style=self.style, justify=self.justify)  # type: ignore[arg-type]


class SpreadsTable(DataTable[Cell]):
    """A DataTable of :class:`~arbtui.domain.events.Spread` rows keyed by ``Spread.key``."""

    def __init__(self, instruments: Instruments, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._styles_cache: FramedLines = FramedLines()  # Widget's own, with a short cut for content lines
        self._instruments = instruments
        self._order: list[str] = []
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self.spreads: dict[str, Spread] = {}
        self.refusals: dict[str, str] = {}
        # Rendered header cells and cell shapes (with where the text starts), keyed by everything
        # their segments depend on.
        self._labels: dict[tuple[object, ...], SegmentLines] = {}
        self._shapes: dict[tuple[object, ...], tuple[list[Segment], int]] = {}
        # Rendered lines: the header by look, rows by look and shape (segments, cell length and
        # where each cell's text starts, or None when a cell's text cannot be found: cropped).
        self._header_lines: dict[tuple[object, ...], Strip] = {}
        self._row_shapes: dict[tuple[object, ...], RowShape | None] = {}
        self._style: Style | None = None  # rich_style, until the next style update
        self._backgrounds: tuple[Color, Color] | None = None  # background_colors, likewise

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show_paused(self, paused: bool) -> None:
        """Detection paused: every figure is frozen where it was. ``-paused`` dims them (app.tcss)
        and the border says why, so frozen figures cannot pass for live ones."""
        self.set_class(paused, "-paused")
        self.border_subtitle = "detection PAUSED: figures frozen, p resumes" if paused else ""

    def selected_spread(self) -> Spread | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self.spreads.get(self._order[self.cursor_row])

    def refresh_spreads(
        self,
        spreads: dict[str, Spread],
        now_ns: int,
        refusals: Mapping[str, str] | None = None,
        market_filter: str = "",
    ) -> None:
        """Add new rows, update changed cells, re-sort by net edge, keep the cursor's row.

        ``refusals`` maps a spread key to the reason code a confirm would be refused with now: such
        a paying row is greyed. ``market_filter`` keeps only rows whose market or event contains it.
        """
        refusals = refusals or {}
        needle = market_filter.strip().lower()
        selected = self._order[self.cursor_row] if 0 <= self.cursor_row < len(self._order) else None
        for key, spread in spreads.items():
            if needle and needle not in spread.group.lower() and needle not in key.lower():
                if key in self._shown:
                    self.remove_row(key)
                    del self._shown[key]
                    self.spreads.pop(key, None)
                continue
            cells = self._cells(spread, now_ns, refusals.get(key))
            shown = self._shown.get(key)
            if shown is None:
                self.add_row(*cells, key=key)
            elif cells != shown:
                # update_cell's effect, once per row rather than once per cell (each call refreshes
                # the whole table); unchanged cells cost nothing to keep.
                row = self._data[RowKey(key)]
                for (col, _, _), cell, old in zip(COLUMNS, cells, shown, strict=True):
                    if cell != old:
                        row[ColumnKey(col)] = cell
                self._update_count += 1
                self.refresh()
            self._shown[key] = cells
            self.spreads[key] = spread
        self.refusals = {k: v for k, v in refusals.items() if k in self.spreads}
        order = sorted(self.spreads, key=lambda k: (-self.spreads[k].net_bps, k))
        current = [str(row.key.value) for row in self.ordered_rows]
        if order != current:
            self.sort("net", "market", key=lambda row: (-row[0].sort_key, row[1].text))  # columns in this order
        self._order = [str(row.key.value) for row in self.ordered_rows]
        if selected is not None and selected in self._order and self._order.index(selected) != self.cursor_row:
            self.move_cursor(row=self._order.index(selected), animate=False)

    def _cells(self, s: Spread, now_ns: int, refusal: str | None = None) -> tuple[Cell, ...]:
        first, second = s.legs
        live = s.pays and refusal is None
        dim = "" if live else "dim"
        strong = "bold green" if live else ("yellow" if s.pays else "dim")
        if s.kind is SpreadKind.CROSS_VENUE:
            market = s.group
            buy = f"{first.venue} @ {self._price(first.venue, first.market, first.limit_price)}"
            sell = f"{second.venue} @ {self._price(second.venue, second.market, second.limit_price)}"
        else:
            market = f"{s.group} Y+N"
            buy = f"{first.venue} YES @ {self._price(first.venue, first.market, first.limit_price)}"
            sell = f"{second.venue} NO @ {self._price(second.venue, second.market, second.limit_price)}"
        if s.pays and refusal is not None:
            market = f"⊘ {market}"  # pays, but a risk check would refuse it (reason in the detail line)
        lst = self._instruments.listing(first.venue, first.market)
        size_places = min(lst.qty_precision, 4)
        return (
            Cell(market, style="bold" if live else ("yellow" if s.pays else "dim"), justify="left"),
            Cell(signed(s.net_bps, 2), style=strong, sort_key=s.net_bps),
            Cell(signed(s.expected_pnl, 2), style=strong, sort_key=s.expected_pnl),
            Cell(fixed(s.quantity, size_places), style=dim),
            Cell(buy, style=dim, justify="left"),
            Cell(sell, style=dim, justify="left"),
            Cell(signed(s.gross_bps, 2), style=dim, sort_key=s.gross_bps),
            Cell(age(now_ns - s.since_ns), style=dim),
        )

    def _price(self, venue: str, market: str, price: Decimal) -> str:
        return fixed(price, self._instruments.listing(venue, market).price_precision)

    # --- rendering ----------------------------------------------------------------------------
    # The DataTable asks for these on every line it draws; each walks the ancestors. They change
    # only with a style update (theme, classes, focus), which Textual announces to the widget.
    @property
    def rich_style(self) -> Style:
        if self._style is None:
            self._style = super().rich_style
        return self._style

    @property
    def background_colors(self) -> tuple[Color, Color]:
        if self._backgrounds is None:
            self._backgrounds = super().background_colors
        return self._backgrounds

    def notify_style_update(self) -> None:
        self._style = None
        self._backgrounds = None
        self._labels.clear()
        self._shapes.clear()
        self._header_lines.clear()
        self._row_shapes.clear()
        super().notify_style_update()
        self._styles_cache.forget_frames()

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """The DataTable's line, rendered once per shape of the row (every cell's shape, style and
        width, the cursor and hover on it): a row whose figures changed only has its characters
        swapped into the kept segments."""
        try:
            row_key, line_no = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        if self.cursor_type != "row" or x1 != 0 or line_no != 0 or self._should_render_row_labels or self.fixed_columns:
            return super()._render_line(y, x1, x2, base_style)
        row_index = -1 if row_key is self._header_row_key else self._row_locations.get(row_key)
        look = (
            y,
            x2,
            self.size.width,
            base_style,
            row_index,
            self.cursor_coordinate.row == row_index,
            self.hover_coordinate.row == row_index,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        if row_index == -1:  # the header: constant for a look
            header = self._header_lines.get(look)
            if header is None:
                header = self._header_lines[look] = super()._render_line(y, x1, x2, base_style)
            return header
        if row_index is None or self.rows[row_key].height != 1:
            return super()._render_line(y, x1, x2, base_style)
        columns = self.ordered_columns
        data = self._data[row_key]
        cells = [data[column.key] for column in columns]
        widths = tuple(column.get_render_width(self) for column in columns)
        shapes = tuple(shape_of(cell.text) for cell in cells)
        if any(shape is None or cell.text != cell.text.strip() for shape, cell in zip(shapes, cells, strict=True)):
            return super()._render_line(y, x1, x2, base_style)
        styles = tuple((cell.style, cell.justify) for cell in cells)
        key = (*look, widths, shapes, styles)
        if key in self._row_shapes:
            known = self._row_shapes[key]
        else:
            known = self._row_shapes[key] = self._render_row_shape(y, x1, x2, base_style, row_key, shapes, widths)
        if known is None:
            return super()._render_line(y, x1, x2, base_style)
        segments, cell_length, starts = known
        line = "".join(segment.text for segment in segments)
        for start, cell in zip(starts, cells, strict=True):
            line = line[:start] + cell.text + line[start + len(cell.text) :]
        return Strip(swap_in(segments, 0, line), cell_length)

    def _render_row_shape(
        self,
        y: int,
        x1: int,
        x2: int,
        base_style: Style,
        row_key: RowKey,
        shapes: tuple[str | None, ...],
        widths: tuple[int, ...],
    ) -> RowShape | None:
        """The row rendered by the DataTable with every cell's text replaced by its shape, and where
        each shape starts in the line (None if one cannot be found: the line is cropped)."""
        if len(self._row_shapes) >= 1024:  # bounded (a few hundred in use: rows x places x cursor x digits)
            self._row_shapes.clear()
        if len(self._header_lines) >= 64:
            self._header_lines.clear()
        real = self._data[row_key]
        probe: dict[ColumnKey, Cell] = {}
        for column, shape in zip(self.ordered_columns, shapes, strict=True):
            cell = real[column.key]
            probe[column.key] = Cell(shape or "", cell.style, cell.sort_key, cell.justify)
        self._data[row_key] = probe
        self._update_count += 1  # the DataTable's own caches must not keep (or give) the probe
        try:
            strip = super()._render_line(y, x1, x2, base_style)
        finally:
            self._data[row_key] = real
            self._update_count += 1
        segments = list(strip)
        plain = "".join(segment.text for segment in segments)
        starts: list[int] = []
        at = 0
        for shape, width in zip(shapes, widths, strict=True):
            found = plain.find(shape or "", at, at + width)
            if found < 0 or not shape:
                return None
            starts.append(found)
            at += width
        return segments, strip.cell_length, tuple(starts)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        """The DataTable's cell rendering, without re-rendering through Rich what only changed
        characters: a cell is rendered once per shape, then the shape's characters are swapped."""
        look = (base_style, width, cursor, hover, self._show_hover_cursor, self._pseudo_class_state, self.show_cursor)
        if row_index < 0 or column_index < 0:  # the header (and labels): constant, rendered once per look
            key: tuple[object, ...] = (row_index, column_index, *look)
            lines = self._labels.get(key)
            if lines is None:
                lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
                self._labels[key] = lines
            return lines
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell = self._data[row_key][column_key]
        text = cell.text
        shape = shape_of(text)
        room = width - 2 * self.cell_padding
        if shape is None or text != text.strip() or len(text) > room or self.rows[row_key].height != 1:
            # It would wrap, be cropped or move: drawn by the DataTable itself.
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (row_index, column_index, shape, cell.style, cell.justify, *look)
        known = self._shapes.get(key)
        if known is None:
            probe = Cell(shape, cell.style, justify=cell.justify)
            line = self._render_through_rich(probe, row_index, column_index, base_style, width, cursor, hover)[0]
            if len(self._shapes) >= 1024:  # bounded: every size, theme or focus change makes new keys
                self._shapes.clear()
            known = self._shapes[key] = (line, "".join(segment.text for segment in line).index(shape))
        line, at = known
        return [swap_in(line, at, text)]

    def _render_through_rich(
        self, cell: Cell, row_index: int, column_index: int, base_style: Style, width: int, cursor: bool, hover: bool
    ) -> SegmentLines:
        """What ``DataTable._render_cell`` renders for ``cell`` at this place (a one-line row)."""
        base_style += Style.from_meta({"row": row_index, "column": column_index})
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        options = self.app.console_options.update_dimensions(width, 1).update(no_wrap=True)
        padded = Padding(cell, (0, self.cell_padding))
        return self.app.console.render_lines(
            Styled(padded, pre_style=base_style + component_style, post_style=post_style), options
        )
