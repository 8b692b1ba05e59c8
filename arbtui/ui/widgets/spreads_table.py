"""The spreads pane: every market and venue pair, best net edge first.

Rows that pay after fees and slippage stand out; rows that do not are dimmed, so the operator
always sees the whole market and how far each spread is from paying. Rows have stable keys and are
updated in place; re-sorting keeps the cursor on the row it was on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from rich.text import Text
from textual.widgets import DataTable

from arbtui.domain.events import Spread, SpreadKind
from arbtui.domain.instruments import Instruments
from arbtui.ui.formatting import age, fixed, signed

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
        self._instruments = instruments
        self._order: list[str] = []
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self.spreads: dict[str, Spread] = {}
        self.refusals: dict[str, str] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

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
            else:
                for (col, _, _), cell, old in zip(COLUMNS, cells, shown, strict=True):
                    if cell != old:  # only what changed: an unchanged cell costs nothing to keep
                        self.update_cell(key, col, cell)
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
