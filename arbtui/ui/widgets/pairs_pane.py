"""The in-flight pairs pane: pairs still in flight and BROKEN pairs (on top, in red, until resolved),
then a history of finished pairs.

Each row shows the pair (id, spread, leg skew), its state coloured, both legs (venue, side, filled /
quantity, average price, state, ack latency) and any unwind legs, and expected vs realized PnL.
Rows have stable keys (the pair id) and are updated in place.
"""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.execution import LegRole, LegState, LegView, PairState, PairView
from arbtui.ui.formatting import signed

HISTORY_ROWS = 200
DETAIL_WIDTH = 40  # fits the side column at 120 columns; longer lines are cut with an ellipsis

_STATE_STYLE = {
    PairState.PROPOSED: "cyan",
    PairState.CONFIRMED: "cyan",
    PairState.DISPATCHING: "bold cyan",
    PairState.COMPLETING: "bold yellow",
    PairState.RECONCILING: "bold yellow",
    PairState.UNWINDING: "bold yellow",
    PairState.COMPLETED: "bold green",
    PairState.UNWOUND: "yellow",
    PairState.ABORTED: "dim",
    PairState.BROKEN: "bold white on red",
}
_LEG_STYLE = {
    LegState.FILLED: "green",
    LegState.REJECTED: "red",
    LegState.UNKNOWN: "bold yellow",
    LegState.NOT_FOUND: "bold yellow",
    LegState.EXPIRED: "yellow",
    LegState.CANCELLED: "yellow",
}
# States whose enum value does not read well in the pane.
_LEG_LABEL = {LegState.NOT_FOUND: "not found, watched"}


def _qty(value: Decimal) -> str:
    """A size in at most 4 decimals, trailing zeros dropped (the pane is narrow)."""
    q = value.quantize(Decimal("0.0001"))
    text = f"{q:f}".rstrip("0").rstrip(".") if "." in f"{q:f}" else f"{q:f}"
    return text or "0"


def _leg_line(leg: LegView) -> Text:
    text = Text()
    text.append(f"{leg.side.value} {leg.venue} {_qty(leg.filled)}/{_qty(leg.quantity)}")
    if leg.average_price is not None:
        text.append(f" @{_qty(leg.average_price)}")
    text.append(f" {_LEG_LABEL.get(leg.state, leg.state.value)}", style=_LEG_STYLE.get(leg.state, "cyan"))
    if leg.ack_latency_ns is not None:
        text.append(f" {leg.ack_latency_ns // NS_PER_MS}ms", style="dim")
    return text


def _extra_lines(legs: list[LegView], role: LegRole) -> list[Text]:
    """Unwind (or completion) legs summed up in one line: tries, filled / asked, last state."""
    mine = [leg for leg in legs if leg.role is role]
    if not mine:
        return []
    filled = sum((leg.filled for leg in mine), Decimal(0))
    asked = mine[0].quantity
    last = mine[-1]
    text = Text(f"{role.value} {last.side.value} {last.venue}: {len(mine)} order(s), {_qty(filled)}/{_qty(asked)}")
    text.append(f" {_LEG_LABEL.get(last.state, last.state.value)}", style=_LEG_STYLE.get(last.state, "cyan"))
    return [text]


def pair_cells(p: PairView) -> tuple[Text, Text]:
    head = Text(f"{p.pair_id} {p.key}", style="bold")
    money = Text(f"exp {signed(p.expected_pnl, 2)}")
    if p.realized_pnl is not None:
        money.append(f"  real {signed(p.realized_pnl, 2)}", style="green" if p.realized_pnl >= 0 else "red")
    if p.leg_skew_ns is not None:
        money.append(f"  skew {p.leg_skew_ns // 1000}us", style="dim")
    legs = list(p.legs)
    lines = [head]
    if p.state is PairState.BROKEN:  # what the operator must deal with comes first
        for e in p.exposure:
            lines.append(Text(f"EXPOSURE {e.side.value} {_qty(e.quantity)} {e.market} on {e.venue}", style="bold red"))
        if p.resolved:
            lines.append(Text("resolved by the operator", style="dim"))
    lines += [money] + [_leg_line(leg) for leg in legs if leg.role is LegRole.ENTRY]
    lines += _extra_lines(legs, LegRole.COMPLETE) + _extra_lines(legs, LegRole.UNWIND)
    for line in lines:
        line.truncate(DETAIL_WIDTH, overflow="ellipsis")
    state = Text(p.state.value.upper(), style=_STATE_STYLE[p.state])
    return state, Text("\n").join(lines)


def _height(p: PairView) -> int:
    return len(pair_cells(p)[1].plain.split("\n"))


def is_live(p: PairView) -> bool:
    """In the live table: not final yet, or BROKEN and not resolved."""
    return not p.state.is_terminal or (p.state is PairState.BROKEN and not p.resolved)


class PairsPane(Vertical):
    """Two tables: live pairs (BROKEN first), and the history of finished ones."""

    can_focus = False

    def compose(self) -> ComposeResult:
        live: DataTable[Text] = DataTable(id="pairs-live", cursor_type="row", zebra_stripes=False, show_header=False)
        live.border_title = "In flight"
        history: DataTable[Text] = DataTable(
            id="pairs-history", cursor_type="row", zebra_stripes=False, show_header=False
        )
        history.border_title = "History"
        yield live
        yield history

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            table.add_column("State", key="state", width=11)
            table.add_column("Pair, PnL and legs", key="detail", width=DETAIL_WIDTH)
        self._shown: dict[str, tuple[str, PairView]] = {}  # pair id -> (table id, last view shown)

    @property
    def live(self) -> DataTable[Text]:
        return self.query_one("#pairs-live", DataTable)

    @property
    def history(self) -> DataTable[Text]:
        return self.query_one("#pairs-history", DataTable)

    def selected_pair_id(self) -> str | None:
        table = self.live
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return str(key) if key is not None else None

    def update_pairs(self, views: list[PairView]) -> None:
        """Place and refresh the given pairs (only those that changed are passed)."""
        for p in views:
            target = "pairs-live" if is_live(p) else "pairs-history"
            shown = self._shown.get(p.pair_id)
            if shown is not None and shown[1] == p:
                continue
            if shown is not None and shown[0] != target:
                self.query_one(f"#{shown[0]}", DataTable).remove_row(p.pair_id)
                shown = None
            table = self.query_one(f"#{target}", DataTable)
            cells = pair_cells(p)
            if shown is None:
                table.add_row(*cells, key=p.pair_id, height=_height(p))
            elif _height(shown[1]) != _height(p):
                table.remove_row(p.pair_id)  # row height changed (an unwind leg appeared): re-add
                table.add_row(*cells, key=p.pair_id, height=_height(p))
            else:
                for col, cell in zip(("state", "detail"), cells, strict=True):
                    table.update_cell(p.pair_id, col, cell)
            self._shown[p.pair_id] = (target, p)
        self._order()

    def _order(self) -> None:
        """Live: BROKEN first, then newest first. History: newest first, bounded."""

        def seq(detail: Text) -> int:
            head = detail.plain.split(" ", 1)[0]  # "P-12"
            tail = head.rsplit("-", 1)[-1]
            return int(tail) if tail.isdigit() else 0

        live = self.live
        if live.row_count > 1:
            selected = self.selected_pair_id()

            def live_key(row: tuple[Text, Text]) -> tuple[bool, int]:
                return (row[0].plain != "BROKEN", -seq(row[1]))

            rows = [
                (live_key((live.get_cell(r.key, "state"), live.get_cell(r.key, "detail"))), r.key)
                for r in live.ordered_rows
            ]
            if [k for _, k in rows] != [k for _, k in sorted(rows, key=lambda x: x[0])]:
                live.sort("state", "detail", key=live_key)
                if selected is not None:  # keep the cursor on the pair the operator was on
                    live.move_cursor(row=live.get_row_index(selected), animate=False)
        history = self.history
        if history.row_count > 1:
            history.sort("detail", key=lambda detail: -seq(detail))  # one column: the key gets the cell
        while history.row_count > HISTORY_ROWS:
            last = history.ordered_rows[-1].key
            history.remove_row(last)
            self._shown.pop(str(last.value), None)
