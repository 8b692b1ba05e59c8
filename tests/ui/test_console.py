"""UI behaviour tests: App.run_test + Pilot, asserting on engine and widget state."""

from __future__ import annotations

from typing import Any

from arbtui.domain.events import OpportunityDetected
from arbtui.ui.screens.ask_screen import AskScreen
from arbtui.ui.screens.confirm_screen import ConfirmScreen
from arbtui.ui.screens.error_screen import EngineErrorScreen
from arbtui.ui.screens.help_screen import HelpScreen
from arbtui.ui.screens.simulation_screen import SimulationScreen
from arbtui.ui.widgets.book_ladder import BookLadderView
from arbtui.ui.widgets.books_pane import BooksPane
from arbtui.ui.widgets.pairs_pane import PairsPane
from arbtui.ui.widgets.spreads_table import SpreadsTable
from arbtui.ui.widgets.status_header import StatusHeader
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


# --- issue 4: the operator console ------------------------------------------------------------


async def _paying_selected(pilot: Any, app: Any, clock: Any) -> None:
    await warm_up(app, clock, 16)
    app.main_screen.query_one(SpreadsTable).focus()
    await app.flush()
    await pilot.pause()
    spread = app.main_screen.selected_spread()
    assert spread is not None and spread.pays


async def test_cancelling_the_confirm_modal_sends_nothing() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _paying_selected(pilot, app, clock)
        sent = {name: v.orders_received for name, v in app.engine.venues.items()}
        for cancel in ("escape", "n"):
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press(cancel)
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)
        await clock.advance(500_000_000)
        assert app.engine.executor.pairs == {}
        assert {name: v.orders_received for name, v in app.engine.venues.items()} == sent


async def test_y_confirms_exactly_one_pair() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _paying_selected(pilot, app, clock)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert len(app.engine.executor.pairs) == 1
        (pair,) = app.engine.executor.pairs.values()
        await clock.advance(3_000_000_000)
        assert pair.state.is_terminal
        sent = sum(v.orders_received for v in app.engine.venues.values())
        assert sent == len(pair.legs)  # both entry legs (and any unwind), nothing more


async def test_simulate_shows_the_result_and_sends_nothing() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _paying_selected(pilot, app, clock)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SimulationScreen)
        assert app.screen.result.expected_pnl > 0
        assert sum(v.orders_received for v in app.engine.venues.values()) == 0


async def test_abort_reaches_the_engine() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _paying_selected(pilot, app, clock)
        app.engine.venues["kraken"].configure_faults(ack_latency_ms=1000)  # type: ignore[attr-defined]
        await pilot.press("enter", "y")
        await pilot.pause()
        await app.flush()
        await pilot.pause()
        (pair_id,) = app.engine.executor.pairs
        pairs = app.main_screen.query_one(PairsPane)
        assert pairs.selected_pair_id() == pair_id
        assert app.main_screen.check_action("abort", ()) is True
        await pilot.press("x")
        await pilot.pause()
        assert app.engine.executor.pairs[pair_id].abort_requested
        await clock.advance(5_000_000_000)
        assert app.engine.executor.pairs[pair_id].state.is_terminal
        rows = await app.engine.journal.query("SELECT action, target FROM actions WHERE action='abort'")
        assert rows == [("abort", pair_id)]


async def test_kill_asks_first_then_halts_and_resume_releases() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _paying_selected(pilot, app, clock)
        await pilot.press("K")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        await pilot.press("n")
        await pilot.pause()
        assert not app.engine.executor.halted
        await pilot.press("K", "y")
        await pilot.pause()
        assert app.engine.executor.halted
        assert app.main_screen.check_action("confirm", ()) is None  # dimmed while halted
        assert app.main_screen.check_action("kill", ()) is None
        await pilot.press("R")  # asks first (see tests/ui/test_guards.py for "n")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen) and app.engine.executor.halted
        await pilot.press("y")
        await pilot.pause()
        assert not app.engine.executor.halted


async def test_arming_asks_first_and_shows_a_badge() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 2)
        await pilot.press("A")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        await pilot.press("y")
        await pilot.pause()
        assert app.engine.executor.armed
        await app.flush()
        header = app.main_screen.query_one(StatusHeader)
        assert " ARMED " in header.render().plain  # type: ignore[union-attr]
        await pilot.press("A")  # disarming needs no question
        await pilot.pause()
        assert not app.engine.executor.armed


async def test_bindings_are_dimmed_with_nothing_selected() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.main_screen
        # Before any spread or pair exists nothing can be confirmed, simulated or aborted.
        assert screen.check_action("confirm", ()) is None
        assert screen.check_action("simulate", ()) is None
        assert screen.check_action("abort", ()) is None
        assert screen.check_action("resume", ()) is None
        assert screen.check_action("kill", ()) is True
        await warm_up(app, clock, 2)
        await pilot.pause()
        assert screen.check_action("simulate", ()) is True
        assert screen.check_action("abort", ()) is None  # still no pair


async def test_quitting_with_pairs_in_flight_asks_first() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _paying_selected(pilot, app, clock)
        app.engine.venues["kraken"].configure_faults(ack_latency_ms=5000)  # type: ignore[attr-defined]
        await pilot.press("enter", "y")
        await pilot.pause()
        assert app.engine.executor.in_flight()
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, AskScreen)


async def test_pause_stops_pricing_and_filter_narrows_the_table() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 5)
        await pilot.press("p")
        await pilot.pause()
        assert app.engine.detection_paused
        before = dict(app.bridge.spreads)
        await clock.advance(3_000_000_000)
        assert app.bridge.spreads == before  # books move, spreads are not re-priced
        await pilot.press("p")
        await pilot.pause()
        assert not app.engine.detection_paused
        await pilot.press("slash", "e", "t", "h", "enter")
        await pilot.pause()
        await app.flush()
        table = app.main_screen.query_one(SpreadsTable)
        assert table.row_count == 2 and all(s.group == "ETH-USD" for s in table.spreads.values())


async def test_tab_moves_between_panes_and_small_terminals_show_one_pane() -> None:
    app, clock = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await warm_up(app, clock, 2)
        screen = app.main_screen
        assert screen.has_class("-narrow")
        shown = [
            p
            for p in ("spreads", "books", "pairs", "analytics")
            if screen.query_one(f"#{p}").display and screen.query_one(f"#{p}").has_class("-current")
        ]
        assert shown == ["spreads"]
        await pilot.press("tab")
        await pilot.pause()
        assert screen.query_one("#books").has_class("-current")
        assert screen.query_one("#books").region.height > 5  # the one pane gets the room
        await pilot.press("tab", "tab")
        await pilot.pause()
        assert screen.query_one("#analytics").has_class("-current")
        await pilot.press("shift+tab")
        await pilot.pause()
        assert screen.query_one("#pairs").has_class("-current")


async def test_command_palette_has_live_entries() -> None:
    from arbtui.ui.commands import ArbCommands

    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _paying_selected(pilot, app, clock)
        app.engine.venues["kraken"].configure_faults(ack_latency_ms=3000)  # type: ignore[attr-defined]
        await pilot.press("enter", "y")
        await pilot.pause()
        (pair_id,) = app.engine.executor.pairs
        provider = ArbCommands(app.screen)
        names = [name for name, _, _ in provider._entries()]
        assert f"abort pair {pair_id}" in names
        assert "kill switch" in names and "toggle ARMED" in names


async def test_only_a_console_on_a_terminal_freezes_startup_objects() -> None:
    import gc

    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 1)
        await pilot.pause()
        assert gc.get_freeze_count() == 0  # headless (tests): nothing frozen, every cycle collected
        app._freeze_startup_objects()  # what a console on a terminal does once started
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        await app.engine.stop("test over")
