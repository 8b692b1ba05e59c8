"""One venue's order book for one market: asks above, bids below, with cumulative size.

The best bid and ask across every venue quoting the market are highlighted, so the operator sees
at a glance which venue to buy on and which to sell on.
"""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.widget import Widget

from arbtui.domain.instruments import Listing
from arbtui.domain.money import ZERO
from arbtui.engine.engine import BookLadder
from arbtui.ui.formatting import fixed

SIZE_PLACES_MAX = 4


class BookLadderView(Widget):
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
            return  # nothing visible changed: keep what is drawn
        self._shown = shown
        self.set_class(ladder is not None and ladder.stale, "-stale")
        self.set_class(ladder is not None and ladder.crossed, "-crossed")
        self.refresh()

    def render(self) -> Text:
        """Drawn at the widget's current width (so a resize re-lays the columns)."""
        ladder, best_bid, best_ask = self._shown if self._shown is not None else (None, None, None)
        if ladder is None:
            return Text("waiting for the first snapshot", style="dim")
        return self._render_text(ladder, best_bid, best_ask)

    def _render_text(self, ladder: BookLadder, best_bid: Decimal | None, best_ask: Decimal | None) -> Text:
        """The ladder as one Text of fixed-width lines: far cheaper to lay out than a Rich Table,
        and redrawn up to ``refresh_hz`` times a second."""
        pp = self.listing.price_precision
        qp = min(self.listing.qty_precision, SIZE_PLACES_MAX)
        width = max(self.content_size.width, 12)
        show_cum = width >= 27  # narrow ladders drop the cumulative column rather than wrap
        col = width // 3 if show_cum else width // 2
        text = Text(no_wrap=True, overflow="crop")

        def line(
            price: str, size: str, cum: str, price_style: str = "", size_style: str = "", cum_style: str = "dim"
        ) -> None:
            text.append(price.rjust(col), style=price_style)
            text.append(size.rjust(col if show_cum else width - col), style=size_style)
            if show_cum:
                text.append(cum.rjust(width - 2 * col), style=cum_style)
            text.append("\n")

        line("Price", "Size", "Cum.", "bold", "bold", "bold")
        asks = ladder.asks[: self.depth]
        cum = ZERO
        rows: list[tuple[str, str, str, str]] = []
        for price, qty in asks:
            cum += qty
            rows.append(
                (fixed(price, pp), fixed(qty, qp), fixed(cum, qp), "bold black on red" if price == best_ask else "red")
            )
        for _ in range(self.depth - len(rows)):
            text.append("\n")
        for price_s, qty_s, cum_s, style in reversed(rows):
            line(price_s, qty_s, cum_s, style)
        spread = (ladder.asks[0][0] - ladder.bids[0][0]) if ladder.asks and ladder.bids else None
        line(
            "spread",
            fixed(spread, pp) if spread is not None else "-",
            "STALE" if ladder.stale else "",
            "dim",
            "dim",
            "bold yellow",
        )
        cum = ZERO
        for price, qty in ladder.bids[: self.depth]:
            cum += qty
            line(
                fixed(price, pp),
                fixed(qty, qp),
                fixed(cum, qp),
                "bold black on green" if price == best_bid else "green",
            )
        text.rstrip()
        return text
