"""UI behaviour tests: App.run_test + Pilot, asserting on engine and widget state."""

from __future__ import annotations

from arbtui.domain.events import OpportunityDetected
from arbtui.ui.screens.error_screen import EngineErrorScreen
from arbtui.ui.screens.help_screen import HelpScreen
from arbtui.ui.widgets.book_ladder import BookLadderView
from arbtui.ui.widgets.books_pane import BooksPane
from arbtui.ui.widgets.spreads_table import SpreadsTable
from tests.harness import make_app, warm_up


async def test_cursor_moves_books_pane_follows() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 10)
        await pilot.pause()
        table = app.screen.query_one(SpreadsTable)
        books = app.screen.query_one(BooksPane)
        assert table.row_count == 5  # 2 directions x 2 spot markets + 1 complement
        groups_seen = []
        for _ in range(table.row_count):
            selected = table.selected_spread()
            assert selected is not None
            await pilot.pause()
            assert books.group == selected.group
            groups_seen.append(books.group)
            ladders = list(books.query(BookLadderView))
            expected = {(lst.venue, lst.market) for lst in books.listings_for(selected.group)}
            assert {(lg.listing.venue, lg.listing.market) for lg in ladders} == expected
            await pilot.press("down")
        assert {"BTC-USD", "ETH-USD", "FEDCUT"} <= set(groups_seen)


async def test_spreads_sorted_by_net_edge_and_cursor_keeps_its_row() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 5)
        table = app.screen.query_one(SpreadsTable)
        await pilot.press("down", "down")
        chosen = table.selected_spread()
        assert chosen is not None
        for _ in range(5):
            await warm_up(app, clock, 3)
            nets = [table.spreads[str(row.key.value)].net_bps for row in table.ordered_rows]
            assert nets == sorted(nets, reverse=True)
            current = table.selected_spread()
            assert current is not None and current.key == chosen.key


async def test_paying_spreads_appear_within_a_minute_of_engine_time() -> None:
    app, clock = make_app()
    detected: list[OpportunityDetected] = []
    app.engine.subscribe(lambda e: detected.append(e) if isinstance(e, OpportunityDetected) else None)
    async with app.run_test(size=(120, 40)):
        await warm_up(app, clock, 60)
        assert detected, "the demo market should open at least one paying spread per minute"
        assert all(e.spread.expected_pnl > 0 and e.spread.net_bps >= 0 for e in detected)


async def test_timer_refreshes_panes_without_manual_flush() -> None:
    app, clock = make_app(auto_refresh=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_started.wait()
        await clock.advance(3_000_000_000)
        table = app.screen.query_one(SpreadsTable)
        # Nothing here calls flush(): the refresh timer must. Waits by rounds, not by a deadline.
        for _ in range(200):
            if table.row_count == 5 and app.flushes >= 2:
                break
            await pilot.pause(0.05)
        assert table.row_count == 5
        assert app.flushes >= 2


async def test_help_opens_and_closes() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 1)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_quit_stops_engine_and_closes_venues() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 1)
        await pilot.press("q")
        await pilot.pause()
    assert all(v.status.value == "closed" for v in app.engine.venues.values())
    assert app.engine_error is None


async def test_engine_failure_shows_error_screen() -> None:
    app, clock = make_app()

    def explode(event: object) -> None:
        raise RuntimeError("feed handler blew up")

    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_started.wait()
        app.engine.subscribe(explode)
        await clock.advance(500_000_000)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, EngineErrorScreen)
        assert "feed handler blew up" in str(app.engine_error)
