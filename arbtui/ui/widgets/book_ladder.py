"""One venue's order book for one market: asks above, bids below, with cumulative size.

The best bid and ask across every venue quoting the market are highlighted, so the operator sees
at a glance which venue to buy on and which to sell on.
"""

from __future__ import annotations

from decimal import Decimal

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from arbtui.domain.instruments import Listing
from arbtui.domain.money import ZERO
from arbtui.engine.engine import BookLadder
from arbtui.ui.formatting import fixed

SIZE_PLACES_MAX = 4


class BookLadderView(Static):
    """Renders a :class:`~arbtui.engine.engine.BookLadder` snapshot."""

    def __init__(self, listing: Listing, title: str, depth: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.listing = listing
        self.title = title
        self.depth = depth
        self.border_title = title
        self._shown: tuple[BookLadder | None, Decimal | None, Decimal | None] | None = None

    def show(self, ladder: BookLadder | None, best_bid: Decimal | None, best_ask: Decimal | None) -> None:
        shown = (ladder, best_bid, best_ask)
        if shown == self._shown:
            return  # nothing visible changed: keep the rendered table
        self._shown = shown
        self.set_class(ladder is not None and ladder.stale, "-stale")
        self.set_class(ladder is not None and ladder.crossed, "-crossed")
        if ladder is None:
            self.update(Text("waiting for the first snapshot", style="dim"))
            return
        pp = self.listing.price_precision
        qp = min(self.listing.qty_precision, SIZE_PLACES_MAX)
        table = Table(box=None, padding=(0, 1), expand=True, show_edge=False)
        table.add_column("Price", justify="right", ratio=3)
        table.add_column("Size", justify="right", ratio=3)
        table.add_column("Cum.", justify="right", ratio=3)
        asks = list(ladder.asks[: self.depth])
        cum = ZERO
        ask_rows: list[tuple[Text, Text, Text]] = []
        for price, qty in asks:
            cum += qty
            style = "bold black on red" if price == best_ask else "red"
            ask_rows.append(
                (Text(fixed(price, pp), style=style), Text(fixed(qty, qp)), Text(fixed(cum, qp), style="dim"))
            )
        for _ in range(self.depth - len(ask_rows)):
            table.add_row("", "", "")
        for row in reversed(ask_rows):
            table.add_row(*row)
        spread = (ladder.asks[0][0] - ladder.bids[0][0]) if ladder.asks and ladder.bids else None
        table.add_row(
            Text("spread", style="dim"),
            Text(fixed(spread, pp) if spread is not None else "-", style="dim"),
            Text("STALE" if ladder.stale else "", style="bold yellow"),
        )
        cum = ZERO
        for price, qty in ladder.bids[: self.depth]:
            cum += qty
            style = "bold black on green" if price == best_bid else "green"
            table.add_row(Text(fixed(price, pp), style=style), Text(fixed(qty, qp)), Text(fixed(cum, qp), style="dim"))
        self.update(table)
