"""The confirm modal shows a quote and ``y`` sends that quote (issue 11, item 1): App.run_test +
Pilot on the seeded demo (STYLE.md layer b), asserting on what the modal holds and what the engine
sent."""

from __future__ import annotations

from typing import Any

from textual.geometry import Region
from textual.widgets import Static

from arbtui.domain.execution import Quote
from arbtui.ui.app import ArbApp
from arbtui.ui.screens.confirm_screen import ConfirmScreen
from arbtui.ui.widgets.spreads_table import SpreadsTable
from tests.harness import make_app, warm_up


async def _open_modal(pilot: Any, app: ArbApp, clock: Any) -> ConfirmScreen:
    await warm_up(app, clock, 16)
    app.main_screen.query_one(SpreadsTable).focus()
    await app.flush()
    await pilot.pause()
    spread = app.main_screen.selected_spread()
    assert spread is not None and spread.pays
    await pilot.press("enter")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, ConfirmScreen)
    return screen


def _text(screen: ConfirmScreen, widget_id: str) -> str:
    """The widget's lines as the terminal shows them."""
    widget = screen.query_one(widget_id, Static)
    size = widget.content_region.size
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, size.width, size.height)))


def _legs_sent(app: ArbApp, pair_id: str) -> list[tuple[str, str, Any, Any, Any]]:
    pair = app.engine.executor.pairs[pair_id]
    return [(r.venue, r.market, r.side, r.quantity, r.limit_price) for r in (leg.request for leg in pair.entries)]


def _legs_shown(quote: Quote) -> list[tuple[str, str, Any, Any, Any]]:
    return [(leg.venue, leg.market, leg.side, leg.quantity, leg.limit_price) for leg in quote.legs]


async def test_y_sends_the_legs_the_modal_shows() -> None:
    app, clock = make_app()
    async with app.run_test(size=(140, 44)) as pilot:
        screen = await _open_modal(pilot, app, clock)
        quote = screen.quote
        assert quote.quote_id in _text(screen, "#confirm-title")
        table = _text(screen, "#confirm-legs")
        for leg in quote.legs:
            assert leg.venue in table and leg.side.value.upper() in table
            # Every digit that is sent is on screen: the size and the limit, never rounded.
            assert f"{leg.quantity:,f}" in table and f"{leg.limit_price:,f}".rstrip("0").rstrip(".") in table
        await clock.advance(30_000_000)  # the books move while the operator reads (three market steps)
        await pilot.press("y")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen), _text(screen, "#confirm-refusal")
        (pair_id,) = app.engine.executor.pairs
        assert app.engine.executor.pairs[pair_id].quote == quote
        sent = _legs_sent(app, pair_id)
        for (venue, market, side, qty, limit), shown in zip(sent, _legs_shown(quote), strict=True):
            assert (venue, market, side, limit) == (shown[0], shown[1], shown[2], shown[4])
            assert qty <= shown[3]  # never more than shown


async def test_r_requotes_and_y_then_sends_the_new_quote_exactly() -> None:
    app, clock = make_app()
    async with app.run_test(size=(140, 44)) as pilot:
        screen = await _open_modal(pilot, app, clock)
        first = screen.quote
        await pilot.press("r")
        await pilot.pause()
        fresh = screen.quote
        assert fresh.quote_id != first.quote_id and fresh.sendable
        assert fresh.quote_id in _text(screen, "#confirm-title")
        await pilot.press("y")
        await pilot.pause()
        (pair_id,) = app.engine.executor.pairs
        assert app.engine.executor.pairs[pair_id].quote == fresh
        assert _legs_sent(app, pair_id) == _legs_shown(fresh)  # the same instant: exactly the quote


async def test_a_refused_quote_stays_in_the_modal_with_the_reason_and_r_requotes() -> None:
    app, clock = make_app()
    async with app.run_test(size=(140, 44)) as pilot:
        screen = await _open_modal(pilot, app, clock)
        first = screen.quote
        assert not screen.query_one("#confirm-refusal", Static).display
        await clock.advance(first.expires_ns - clock.now_ns() + 1)  # the operator waited too long
        await pilot.press("y")
        await pilot.pause()
        assert app.screen is screen and app.engine.executor.pairs == {}  # nothing sent
        refusal = _text(screen, "#confirm-refusal")
        assert screen.query_one("#confirm-refusal", Static).display
        assert "QUOTE_EXPIRED" in refusal and "nothing sent" in refusal
        await pilot.press("y")  # a refused quote is not sent again by a second y
        await pilot.pause()
        assert app.engine.executor.pairs == {}

        await pilot.press("r")
        await pilot.pause()
        fresh = screen.quote
        assert fresh.quote_id != first.quote_id and fresh.quote_id in _text(screen, "#confirm-title")
        # Two seconds on, this spread no longer pays (seed 7): the fresh quote says so, y sends nothing.
        assert fresh.refusal == "EDGE_GONE" and not fresh.sendable
        assert "EDGE_GONE" in _text(screen, "#confirm-refusal") and "does not pay" in _text(screen, "#confirm-title")
        await pilot.press("y")
        await pilot.pause()
        assert app.screen is screen and app.engine.executor.pairs == {}
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        rows = await app.engine.journal.query("SELECT action, target FROM actions ORDER BY id")
        assert ("quote", first.quote_id) in rows and ("quote", fresh.quote_id) in rows
        assert ("confirm", first.quote_id) in rows  # the refused confirm, journaled
        assert rows[-1] == ("confirm_cancel", fresh.quote_id)


async def test_at_80x24_the_modal_cuts_no_figure() -> None:
    app, clock = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_modal(pilot, app, clock)
        table = _text(screen, "#confirm-legs")
        assert "…" not in table
        for leg in screen.quote.legs:
            assert f"{leg.quantity:,f}" in table
