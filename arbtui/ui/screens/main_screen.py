"""The main screen: header, spreads pane, order books pane, event strip, footer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from arbtui.ui.widgets.books_pane import BooksPane
from arbtui.ui.widgets.spreads_table import SpreadsTable
from arbtui.ui.widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from arbtui.ui.app import ArbApp


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="help", tooltip="List every key binding"),
        Binding("q", "quit_app", "Quit", id="quit", tooltip="Stop the engine and leave"),
    ]

    def __init__(self, arb_app: ArbApp) -> None:
        super().__init__()
        self._arb = arb_app

    def compose(self) -> ComposeResult:
        engine = self._arb.engine
        yield StatusHeader(id="status")
        table = SpreadsTable(engine.instruments, id="spreads")
        table.border_title = "Spreads (net of taker fees and slippage buffer)"
        yield table
        yield BooksPane(engine, self._arb.config.ui.book_depth, id="books")
        yield Static("", id="event-strip")
        yield Footer()

    def action_help(self) -> None:
        from arbtui.ui.screens.help_screen import HelpScreen

        self.app.push_screen(HelpScreen())

    async def action_quit_app(self) -> None:
        await self._arb.shutdown()

    async def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Read the cursor's row now rather than the event's: a re-sort may have moved rows since.
        spread = self.query_one(SpreadsTable).selected_spread()
        if spread is not None:
            await self.query_one(BooksPane).select(spread.group)
