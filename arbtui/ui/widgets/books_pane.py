"""The order books pane: one ladder per venue for the selected market (or both outcome tokens of
the selected event), side by side."""

from __future__ import annotations

from decimal import Decimal

from textual.containers import Horizontal

from arbtui.domain.instruments import Instruments, Listing
from arbtui.engine.engine import Engine
from arbtui.ui.widgets.book_ladder import BookLadderView


class BooksPane(Horizontal):
    """Shows the books of one group: a market id, or a binary event id."""

    can_focus = True

    def __init__(self, engine: Engine, depth: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._engine = engine
        self._depth = depth
        self.group: str | None = None
        self._ladders: list[BookLadderView] = []

    def listings_for(self, group: str) -> list[Listing]:
        inst: Instruments = self._engine.instruments
        if group in inst.markets:
            return [inst.listing(v, group) for v in inst.venues_for_market(group)]
        outcomes = inst.events().get(group, {})
        return [
            inst.listing(v, m.id)
            for key in ("YES", "NO")
            if (m := outcomes.get(key))
            for v in inst.venues_for_market(m.id)
        ]

    async def select(self, group: str) -> None:
        """Show ``group``'s books (remounts ladders only when the group changes)."""
        if group == self.group:
            return
        self.group = group
        self.border_title = f"Order books: {group}"
        await self.remove_children()
        inst = self._engine.instruments
        self._ladders = []
        for lst in self.listings_for(group):
            market = inst.markets[lst.market]
            title = f"{lst.venue} {lst.symbol if len(lst.symbol) <= 12 else market.outcome or lst.market}"
            self._ladders.append(BookLadderView(lst, title, self._depth, classes="ladder"))
        await self.mount_all(self._ladders)
        self.redraw()

    def redraw(self, dirty: set[tuple[str, str]] | None = None) -> None:
        """Redraw the ladders (all of them: the cross-venue best prices can move with any book)."""
        if not self._ladders:
            return
        if dirty is not None and not any((lg.listing.venue, lg.listing.market) in dirty for lg in self._ladders):
            return
        ladders = {
            (lg.listing.venue, lg.listing.market): self._engine.ladder(lg.listing.venue, lg.listing.market, self._depth)
            for lg in self._ladders
        }
        best_bid: dict[str, Decimal] = {}
        best_ask: dict[str, Decimal] = {}
        for (_, market), ladder in ladders.items():
            if ladder is None or ladder.stale:
                continue
            if ladder.bids and (market not in best_bid or ladder.bids[0][0] > best_bid[market]):
                best_bid[market] = ladder.bids[0][0]
            if ladder.asks and (market not in best_ask or ladder.asks[0][0] < best_ask[market]):
                best_ask[market] = ladder.asks[0][0]
        for view in self._ladders:
            key = (view.listing.venue, view.listing.market)
            view.show(ladders[key], best_bid.get(view.listing.market), best_ask.get(view.listing.market))
